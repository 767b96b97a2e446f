/* Unit tests for runtime/buffer.c: reference-counted buffers and content-type interning. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/buffer.h"

static void test_new_sets_fields_and_nul(void **state)
{
    (void)state;
    rt_buf *b = rt_buf_new(10, "text/plain");
    assert_non_null(b);
    assert_int_equal(b->refs, 1);
    assert_int_equal(b->size, 10);
    assert_non_null(b->content_type);
    assert_string_equal(b->content_type, "text/plain");
    assert_ptr_equal(b->content_type, rt_content_type_intern("text/plain"));
    assert_int_equal(b->data[10], '\0');
    memset(b->data, 'x', 10); /* the whole size is writable (ASan checks) */
    assert_int_equal(b->data[10], '\0');
    rt_buf_decref(b);
}

static void test_new_zero_size_and_null_type(void **state)
{
    (void)state;
    rt_buf *b = rt_buf_new(0, NULL);
    assert_non_null(b);
    assert_int_equal(b->size, 0);
    assert_int_equal(b->data[0], '\0');
    assert_string_equal(b->content_type, "application/octet-stream");
    assert_ptr_equal(b->content_type, rt_content_type_intern("application/octet-stream"));
    rt_buf_decref(b);
}

static void test_from_copies_bytes(void **state)
{
    (void)state;
    char src[] = {'a', '\0', 'b', (char)0xff, 'c'};
    rt_buf *b = rt_buf_from(src, sizeof(src), "application/x-test");
    assert_non_null(b);
    assert_int_equal(b->size, sizeof(src));
    assert_memory_equal(b->data, src, sizeof(src));
    assert_int_equal(b->data[sizeof(src)], '\0');
    assert_string_equal(b->content_type, "application/x-test");
    src[0] = 'z'; /* a copy, not a view */
    assert_int_equal(b->data[0], 'a');
    rt_buf_decref(b);

    rt_buf *empty = rt_buf_from(NULL, 0, NULL);
    assert_non_null(empty);
    assert_int_equal(empty->size, 0);
    assert_int_equal(empty->data[0], '\0');
    rt_buf_decref(empty);
}

/* rt_buf_from_json: json_dumps's text (compact, any value), small values and values larger
 * than its stack buffer alike. */
static void test_from_json_is_dumps_text(void **state)
{
    (void)state;
    json_t *big = json_array();
    for (int i = 0; i < 200; i++)
        json_array_append_new(big, json_sprintf("item %d", i));
    json_t *values[] = {json_integer(1), json_integer(0), json_integer(-42),
                        json_integer(INT64_MAX), json_integer(INT64_MIN), json_real(2.5),
                        json_string("x\"y"), json_null(), json_pack("{s:[i,i]}", "a", 1, 2),
                        big};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char *want = json_dumps(values[i], JSON_COMPACT | JSON_ENCODE_ANY);
        rt_buf *buf = rt_buf_from_json(values[i]);
        assert_non_null(buf);
        assert_int_equal(buf->size, strlen(want));
        assert_memory_equal(buf->data, want, buf->size);
        assert_int_equal(buf->data[buf->size], '\0');
        assert_string_equal(buf->content_type, "application/json");
        rt_buf_decref(buf);
        free(want);
        json_decref(values[i]);
    }
}

static void test_resize_grow_and_shrink(void **state)
{
    (void)state;
    rt_buf *b = rt_buf_from("hello", 5, "text/plain");
    assert_non_null(b);
    b = rt_buf_resize(b, 4096);
    assert_non_null(b);
    assert_int_equal(b->size, 4096);
    assert_memory_equal(b->data, "hello", 5);
    assert_int_equal(b->data[4096], '\0');
    assert_string_equal(b->content_type, "text/plain");
    assert_int_equal(b->refs, 1);
    memset(b->data + 5, 'y', 4091);

    b = rt_buf_resize(b, 3);
    assert_non_null(b);
    assert_int_equal(b->size, 3);
    assert_memory_equal(b->data, "hel", 3);
    assert_int_equal(b->data[3], '\0');

    b = rt_buf_resize(b, 0);
    assert_non_null(b);
    assert_int_equal(b->size, 0);
    assert_int_equal(b->data[0], '\0');
    rt_buf_decref(b);
}

static void test_resize_overflow_keeps_buffer(void **state)
{
    (void)state;
    rt_buf *b = rt_buf_from("abc", 3, NULL);
    assert_non_null(b);
    assert_null(rt_buf_resize(b, SIZE_MAX));
    /* on failure the old buffer is unchanged and still valid */
    assert_int_equal(b->size, 3);
    assert_memory_equal(b->data, "abc", 3);
    rt_buf_decref(b);
    assert_null(rt_buf_new(SIZE_MAX, NULL));
}

static void test_incref_decref(void **state)
{
    (void)state;
    rt_buf *b = rt_buf_new(1, NULL);
    assert_non_null(b);
    assert_ptr_equal(rt_buf_incref(b), b);
    assert_int_equal(b->refs, 2);
    assert_ptr_equal(rt_buf_incref(b), b);
    assert_int_equal(b->refs, 3);
    rt_buf_decref(b);
    assert_int_equal(b->refs, 2);
    rt_buf_decref(b);
    assert_int_equal(b->refs, 1);
    rt_buf_decref(b); /* frees; ASan/LSan would flag a leak or double free */
    assert_null(rt_buf_incref(NULL));
    rt_buf_decref(NULL);
}

#define RC_THREADS 4
#define RC_ITERS 100000

static void *refcount_worker(void *arg)
{
    rt_buf *b = arg;
    for (int i = 0; i < RC_ITERS; i++) {
        rt_buf_incref(b);
        rt_buf_decref(b);
    }
    return NULL;
}

static void test_refcount_is_atomic(void **state)
{
    (void)state;
    rt_buf *b = rt_buf_new(8, NULL);
    assert_non_null(b);
    pthread_t th[RC_THREADS];
    for (int i = 0; i < RC_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, refcount_worker, b), 0);
    for (int i = 0; i < RC_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(__atomic_load_n(&b->refs, __ATOMIC_SEQ_CST), 1);
    rt_buf_decref(b);
}

static void test_intern_same_pointer_for_equal_strings(void **state)
{
    (void)state;
    char *a = strdup("application/x-intern-test");
    char *b = strdup("application/x-intern-test");
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    const char *ia = rt_content_type_intern(a);
    const char *ib = rt_content_type_intern(b);
    assert_non_null(ia);
    assert_ptr_equal(ia, ib);
    assert_string_equal(ia, "application/x-intern-test");
    /* the interned copy does not depend on the caller's storage */
    assert_ptr_not_equal(ia, a);
    free(a);
    free(b);
    assert_string_equal(ia, "application/x-intern-test");

    const char *other = rt_content_type_intern("application/x-intern-other");
    assert_non_null(other);
    assert_ptr_not_equal(other, ia);

    /* the common types too */
    assert_ptr_equal(rt_content_type_intern("application/json"),
                     rt_content_type_intern("application/json"));
    assert_ptr_equal(rt_content_type_intern("text/plain; charset=utf-8"),
                     rt_content_type_intern("text/plain; charset=utf-8"));
    /* buffers share the interned pointer */
    rt_buf *b1 = rt_buf_new(0, "text/csv");
    rt_buf *b2 = rt_buf_new(0, "text/csv");
    assert_non_null(b1);
    assert_non_null(b2);
    assert_ptr_equal(b1->content_type, b2->content_type);
    rt_buf_decref(b1);
    rt_buf_decref(b2);
}

static void test_intern_length_limit(void **state)
{
    (void)state;
    char type[RT_CONTENT_TYPE_MAX + 2];
    memset(type, 'a', sizeof(type));
    memcpy(type, "x/", 2);
    type[RT_CONTENT_TYPE_MAX] = '\0'; /* exactly the maximum */
    const char *ok = rt_content_type_intern(type);
    assert_non_null(ok);
    assert_int_equal(strlen(ok), RT_CONTENT_TYPE_MAX);
    rt_buf *b = rt_buf_new(1, type);
    assert_non_null(b);
    assert_ptr_equal(b->content_type, ok);
    rt_buf_decref(b);

    type[RT_CONTENT_TYPE_MAX] = 'a';
    type[RT_CONTENT_TYPE_MAX + 1] = '\0'; /* one too long */
    assert_null(rt_content_type_intern(type));
    assert_null(rt_buf_new(1, type));
    assert_null(rt_buf_from("z", 1, type));
}

#define INTERN_THREADS 4
#define INTERN_TYPES 64

static const char *intern_results[INTERN_THREADS][INTERN_TYPES];

static void *intern_worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    char name[64];
    for (int i = 0; i < INTERN_TYPES; i++) {
        int k = (i + t * 7) % INTERN_TYPES; /* different orders per thread */
        snprintf(name, sizeof(name), "application/x-race-%d", k);
        intern_results[t][k] = rt_content_type_intern(name);
    }
    return NULL;
}

static void test_intern_concurrent(void **state)
{
    (void)state;
    pthread_t th[INTERN_THREADS];
    for (int t = 0; t < INTERN_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, intern_worker, (void *)(intptr_t)t), 0);
    for (int t = 0; t < INTERN_THREADS; t++)
        pthread_join(th[t], NULL);
    char name[64];
    for (int k = 0; k < INTERN_TYPES; k++) {
        snprintf(name, sizeof(name), "application/x-race-%d", k);
        const char *expect = rt_content_type_intern(name);
        assert_non_null(expect);
        assert_string_equal(expect, name);
        for (int t = 0; t < INTERN_THREADS; t++)
            assert_ptr_equal(intern_results[t][k], expect);
    }
}

static void test_is_json(void **state)
{
    (void)state;
    assert_true(rt_content_type_is_json("application/json"));
    assert_true(rt_content_type_is_json("application/json; charset=utf-8"));
    assert_true(rt_content_type_is_json("application/json;charset=utf-8"));
    assert_true(rt_content_type_is_json("application/problem+json"));
    assert_true(rt_content_type_is_json("application/vnd.api+json; charset=utf-8"));
    assert_false(rt_content_type_is_json("text/plain"));
    assert_false(rt_content_type_is_json("text/plain; charset=utf-8"));
    assert_false(rt_content_type_is_json("application/octet-stream"));
    assert_false(rt_content_type_is_json("application/jsonx"));
    assert_false(rt_content_type_is_json("application/json-seq"));
    assert_false(rt_content_type_is_json("application/x-ndjson"));
    assert_false(rt_content_type_is_json("text/plain; note=+json"));
    assert_false(rt_content_type_is_json(""));
}

/* The VmFlags of the mapping that holds addr, from /proc/self/smaps ("" if not found). */
static void vma_flags_of(const void *addr, char *out, size_t size)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return;
    char line[512];
    int inside = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, size, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

static int has_flag(const char *flags, const char *flag)
{
    char padded[600];
    snprintf(padded, sizeof(padded), " %s ", flags);
    char *nl = strchr(padded, '\n');
    if (nl)
        *nl = ' ';
    char want[16];
    snprintf(want, sizeof(want), " %s ", flag);
    return strstr(padded, want) != NULL;
}

/* Buffers of 32 MiB and more ask for transparent huge pages (the "hg" VmFlag of
 * MADV_HUGEPAGE), also when grown to that size; a 1 MiB one does not. */
static void test_big_buffers_ask_for_huge_pages(void **state)
{
    (void)state;
    char flags[512];
    rt_buf *small = rt_buf_new((size_t)1 << 20, NULL);
    assert_non_null(small);
    memset(small->data, 1, small->size);
    vma_flags_of(small->data + small->size / 2, flags, sizeof(flags));
    if (!flags[0])
        skip(); /* no /proc/self/smaps here */
    assert_false(has_flag(flags, "hg"));
    rt_buf_decref(small);

    rt_buf *big = rt_buf_new((size_t)64 << 20, NULL);
    assert_non_null(big);
    vma_flags_of(big->data + big->size / 2, flags, sizeof(flags));
    if (!has_flag(flags, "hg"))
        fail_msg("a 64 MiB buffer's mapping has VmFlags %s, without hg", flags);
    rt_buf_decref(big);

    rt_buf *grown = rt_buf_new(1024, NULL);
    assert_non_null(grown);
    grown = rt_buf_resize(grown, (size_t)48 << 20);
    assert_non_null(grown);
    vma_flags_of(grown->data + grown->size / 2, flags, sizeof(flags));
    if (!has_flag(flags, "hg"))
        fail_msg("a buffer grown to 48 MiB has VmFlags %s, without hg", flags);
    rt_buf_decref(grown);
}

static void test_content_type_valid(void **state)
{
    (void)state;
    static const char *const good[] = {"text/plain", "application/json; charset=utf-8",
                                       "text/plain;\tname=\"caf\xc3\xa9\"", "x/\xf0\x9f\x98\x80",
                                       "a", NULL};
    for (int i = 0; good[i]; i++)
        if (!rt_content_type_valid(good[i]))
            fail_msg("refused: %s", good[i]);
    static const char *const bad[] = {"",
                                      "text/\xff\xfe",
                                      "text/\xc3",
                                      "text/\xc3(",
                                      "text/\xc0\xaf",         /* overlong */
                                      "text/\xed\xa0\x80",     /* a surrogate */
                                      "text/\xf4\x90\x80\x80", /* past U+10FFFF */
                                      "text/\x01",
                                      "text/plain\r\nX: y",
                                      "text/\x7f",
                                      NULL};
    for (int i = 0; bad[i]; i++) {
        if (rt_content_type_valid(bad[i]))
            fail_msg("accepted bad type %d", i);
        assert_null(rt_buf_new(1, bad[i]));
        assert_null(rt_content_type_intern(bad[i]));
    }
}

/* Past the intern table's bound (4,096 types) a buffer keeps its own copy of its type; it
 * lives as long as the buffer (through resizes) and is freed with it (ASan checks that).
 * Runs last: the table is process-wide and stays full. */
#define MANY_TYPES 4300

static void test_types_kept_past_intern_table(void **state)
{
    (void)state;
    static rt_buf *bufs[MANY_TYPES];
    char name[64];
    size_t owned = 0;
    for (int i = 0; i < MANY_TYPES; i++) {
        snprintf(name, sizeof(name), "application/x-many-%d", i);
        bufs[i] = rt_buf_new(8, name);
        assert_non_null(bufs[i]);
        owned += bufs[i]->owns_content_type;
    }
    assert_true(owned >= MANY_TYPES - 4096);
    for (int i = 0; i < MANY_TYPES; i++) {
        bufs[i] = rt_buf_resize(bufs[i], 100000);
        assert_non_null(bufs[i]);
        snprintf(name, sizeof(name), "application/x-many-%d", i);
        assert_string_equal(bufs[i]->content_type, name);
    }
    /* an owned type is not shared: each buffer frees its own */
    rt_buf *x = rt_buf_new(1, "application/x-many-4299");
    assert_non_null(x);
    assert_true(x->owns_content_type);
    assert_ptr_not_equal(x->content_type, bufs[4299]->content_type);
    assert_null(rt_content_type_intern("application/x-many-4299"));
    rt_buf_decref(x);
    /* interned types are still shared */
    rt_buf *j = rt_buf_new(1, "application/json");
    assert_false(j->owns_content_type);
    assert_ptr_equal(j->content_type, rt_content_type_intern("application/json"));
    rt_buf_decref(j);
    for (int i = 0; i < MANY_TYPES; i++)
        rt_buf_decref(bufs[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_sets_fields_and_nul),
        cmocka_unit_test(test_new_zero_size_and_null_type),
        cmocka_unit_test(test_from_copies_bytes),
        cmocka_unit_test(test_from_json_is_dumps_text),
        cmocka_unit_test(test_resize_grow_and_shrink),
        cmocka_unit_test(test_resize_overflow_keeps_buffer),
        cmocka_unit_test(test_incref_decref),
        cmocka_unit_test(test_refcount_is_atomic),
        cmocka_unit_test(test_intern_same_pointer_for_equal_strings),
        cmocka_unit_test(test_intern_length_limit),
        cmocka_unit_test(test_intern_concurrent),
        cmocka_unit_test(test_is_json),
        cmocka_unit_test(test_big_buffers_ask_for_huge_pages),
        cmocka_unit_test(test_content_type_valid),
        cmocka_unit_test(test_types_kept_past_intern_table), /* last: fills the table */
    };
    return cmocka_run_group_tests_name("runtime/buffer", tests, NULL, NULL);
}
