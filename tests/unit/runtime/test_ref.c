/* Unit tests for runtime/ref.c: id generation (length, alphabet, uniqueness) and validation. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/ref.h"

static int is_ref_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

static void test_generate_valid_and_length(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++) {
        char ref[RT_REF_SIZE];
        memset(ref, '#', sizeof(ref));
        rt_ref_generate(ref, 0);
        assert_int_equal(strlen(ref), RT_REF_LEN);
        for (int k = 0; k < RT_REF_LEN; k++)
            assert_true(is_ref_char(ref[k]));
        assert_true(rt_ref_valid(ref));
    }
}

static void test_generate_with_prefix(void **state)
{
    (void)state;
    const char prefixes[] = {'o', 't', 'a'};
    for (size_t p = 0; p < sizeof(prefixes); p++) {
        for (int i = 0; i < 200; i++) {
            char ref[RT_REF_SIZE];
            memset(ref, '#', sizeof(ref));
            rt_ref_generate(ref, prefixes[p]);
            assert_int_equal(ref[0], prefixes[p]);
            assert_int_equal(strlen(ref), RT_REF_LEN);
            assert_true(rt_ref_valid(ref));
        }
    }
}

static void test_generate_uses_whole_alphabet(void **state)
{
    (void)state;
    /* Every position varies and all 64 characters show up: a weak check that the
     * generator is not stuck or biased to a small subset. */
    int seen[256] = {0};
    char first[RT_REF_SIZE];
    rt_ref_generate(first, 0);
    int differs[RT_REF_LEN] = {0};
    for (int i = 0; i < 2000; i++) {
        char ref[RT_REF_SIZE];
        rt_ref_generate(ref, 0);
        for (int k = 0; k < RT_REF_LEN; k++) {
            seen[(unsigned char)ref[k]] = 1;
            if (ref[k] != first[k])
                differs[k] = 1;
        }
    }
    int distinct = 0;
    for (int c = 0; c < 256; c++)
        distinct += seen[c];
    assert_int_equal(distinct, 64);
    for (int k = 0; k < RT_REF_LEN; k++)
        assert_true(differs[k]);
}

static int cmp_ref(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void assert_all_unique(char (*refs)[RT_REF_SIZE], size_t n)
{
    qsort(refs, n, RT_REF_SIZE, cmp_ref);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(refs[i - 1], refs[i]) != 0);
}

#define UNIQUE_N 100000

static void test_generate_unique(void **state)
{
    (void)state;
    char (*refs)[RT_REF_SIZE] = calloc(UNIQUE_N, RT_REF_SIZE);
    assert_non_null(refs);
    for (size_t i = 0; i < UNIQUE_N; i++)
        rt_ref_generate(refs[i], i % 2 ? 'o' : 0);
    assert_all_unique(refs, UNIQUE_N);
    free(refs);
}

#define GEN_THREADS 4

typedef struct gen_job {
    char (*out)[RT_REF_SIZE];
    size_t n;
} gen_job;

static void *gen_worker(void *arg)
{
    gen_job *job = arg;
    for (size_t i = 0; i < job->n; i++)
        rt_ref_generate(job->out[i], 'o');
    return NULL;
}

static void test_generate_unique_across_threads(void **state)
{
    (void)state;
    /* each thread seeds its own generator: they must not produce the same sequence */
    char (*refs)[RT_REF_SIZE] = calloc(UNIQUE_N, RT_REF_SIZE);
    assert_non_null(refs);
    pthread_t th[GEN_THREADS];
    gen_job jobs[GEN_THREADS];
    size_t per = UNIQUE_N / GEN_THREADS;
    for (int t = 0; t < GEN_THREADS; t++) {
        jobs[t].out = refs + (size_t)t * per;
        jobs[t].n = per;
        assert_int_equal(pthread_create(&th[t], NULL, gen_worker, &jobs[t]), 0);
    }
    for (int t = 0; t < GEN_THREADS; t++)
        pthread_join(th[t], NULL);
    assert_all_unique(refs, per * GEN_THREADS);
    free(refs);
}

static void test_valid_edge_cases(void **state)
{
    (void)state;
    char s[RT_REF_MAX + 2];

    assert_false(rt_ref_valid(""));
    assert_true(rt_ref_valid("a"));
    assert_true(rt_ref_valid("-"));
    assert_true(rt_ref_valid("_"));
    assert_true(rt_ref_valid("AZaz09-_"));

    memset(s, 'x', RT_REF_MAX);
    s[RT_REF_MAX] = '\0';
    assert_true(rt_ref_valid(s)); /* 64 chars */
    s[RT_REF_MAX] = 'x';
    s[RT_REF_MAX + 1] = '\0';
    assert_false(rt_ref_valid(s)); /* 65 chars */
    s[RT_REF_MAX - 1] = '/';
    s[RT_REF_MAX] = '\0';
    assert_false(rt_ref_valid(s)); /* 64 chars, last one bad */

    assert_false(rt_ref_valid("a/b"));
    assert_false(rt_ref_valid("/"));
    assert_false(rt_ref_valid("a."));
    assert_false(rt_ref_valid("."));
    assert_false(rt_ref_valid(".."));
    assert_false(rt_ref_valid("a%2Fb"));
    assert_false(rt_ref_valid("%"));
    assert_false(rt_ref_valid("a b"));
    assert_false(rt_ref_valid(" a"));
    assert_false(rt_ref_valid("a "));
    assert_false(rt_ref_valid("a\tb"));
    assert_false(rt_ref_valid("a\nb"));
    assert_false(rt_ref_valid("a+b"));
    assert_false(rt_ref_valid("a=b"));
    assert_false(rt_ref_valid("a?b"));
    assert_false(rt_ref_valid("a#b"));
    assert_false(rt_ref_valid("a\\b"));
    assert_false(rt_ref_valid("caf\xc3\xa9"));   /* UTF-8 */
    assert_false(rt_ref_valid("\xc3\xa9"));
    assert_false(rt_ref_valid("ab\xff"));
    assert_false(rt_ref_valid("\x80"));
    assert_false(rt_ref_valid("a\x7f"));
}

static void test_valid_stops_at_nul(void **state)
{
    (void)state;
    const char s[] = "abc\0/../";
    assert_true(rt_ref_valid(s)); /* only the NUL-terminated prefix counts */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_valid_and_length),
        cmocka_unit_test(test_generate_with_prefix),
        cmocka_unit_test(test_generate_uses_whole_alphabet),
        cmocka_unit_test(test_generate_unique),
        cmocka_unit_test(test_generate_unique_across_threads),
        cmocka_unit_test(test_valid_edge_cases),
        cmocka_unit_test(test_valid_stops_at_nul),
    };
    return cmocka_run_group_tests_name("runtime/ref", tests, NULL, NULL);
}
