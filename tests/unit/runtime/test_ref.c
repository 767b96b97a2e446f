/* Unit tests for runtime/ref.c: id generation (length, alphabet, uniqueness), validation,
 * and cluster ids (the owner's tag in the id, read back by rt_ref_owner). */
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

/* ---- cluster ids ------------------------------------------------------------------------ */

static int is_base62_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int reset_tag(void **state)
{
    (void)state;
    rt_ref_set_node_tag(NULL);
    return 0;
}

static void test_tag_from_number(void **state)
{
    (void)state;
    char tag[RT_NODE_TAG_SIZE];
    assert_int_equal(rt_ref_tag_from_number(0, tag), 1);
    assert_string_equal(tag, "0");
    assert_int_equal(rt_ref_tag_from_number(1, tag), 1);
    assert_string_equal(tag, "1");
    rt_ref_tag_from_number(10, tag);
    assert_string_equal(tag, "A");
    rt_ref_tag_from_number(61, tag);
    assert_string_equal(tag, "z");
    rt_ref_tag_from_number(62, tag);
    assert_string_equal(tag, "10");
    rt_ref_tag_from_number(62 * 62 - 1, tag);
    assert_string_equal(tag, "zz");
    /* The largest number still fits the tag limit. */
    assert_int_equal(rt_ref_tag_from_number(~0ULL, tag), RT_NODE_TAG_MAX);
    assert_int_equal(strlen(tag), RT_NODE_TAG_MAX);
}

static void test_set_node_tag_checks(void **state)
{
    (void)state;
    assert_int_equal(rt_ref_set_node_tag(""), -1);
    assert_int_equal(rt_ref_set_node_tag("a-b"), -1);
    assert_int_equal(rt_ref_set_node_tag("a_b"), -1);
    assert_int_equal(rt_ref_set_node_tag("123456789012"), -1); /* 12 characters */
    assert_null(rt_ref_node_tag());
    assert_int_equal(rt_ref_set_node_tag("12345678901"), 0);
    assert_string_equal(rt_ref_node_tag(), "12345678901");
    assert_int_equal(rt_ref_set_node_tag(NULL), 0);
    assert_null(rt_ref_node_tag());
}

/* Once a tag is set, every id is <prefix><tag>-<22 base62>, valid, and names the tag. */
static void test_cluster_ids_carry_the_tag(void **state)
{
    (void)state;
    const char *tags[] = {"1", "3Fz", "zzzzzzzzzzz"};
    for (size_t t = 0; t < 3; t++) {
        assert_int_equal(rt_ref_set_node_tag(tags[t]), 0);
        size_t want = 1 + strlen(tags[t]) + 1 + RT_REF_RANDOM_LEN;
        const char prefixes[] = {'o', 't', 'a', 'r'};
        for (size_t p = 0; p < sizeof(prefixes); p++) {
            for (int i = 0; i < 200; i++) {
                char ref[RT_REF_SIZE];
                memset(ref, '#', sizeof(ref));
                rt_ref_generate(ref, prefixes[p]);
                assert_int_equal(strlen(ref), want);
                assert_true(want <= RT_REF_MADE_MAX);
                assert_true(rt_ref_valid(ref));
                assert_int_equal(ref[0], prefixes[p]);
                assert_memory_equal(ref + 1, tags[t], strlen(tags[t]));
                assert_int_equal(ref[1 + strlen(tags[t])], '-');
                for (size_t k = 2 + strlen(tags[t]); k < want; k++)
                    assert_true(is_base62_char(ref[k]));
                char tag[RT_NODE_TAG_SIZE];
                assert_int_equal(rt_ref_owner(ref, tag), strlen(tags[t]));
                assert_string_equal(tag, tags[t]);
            }
        }
    }
    /* Back to a node alone: 22 characters, no owner. */
    rt_ref_set_node_tag(NULL);
    char ref[RT_REF_SIZE], tag[RT_NODE_TAG_SIZE];
    rt_ref_generate(ref, 'o');
    assert_int_equal(strlen(ref), RT_REF_LEN);
    assert_int_equal(rt_ref_owner(ref, tag), 0);
}

/* Single-node ids (22 characters, '-' and '_' allowed anywhere) never read as cluster ids,
 * and malformed cluster-looking strings have no owner. */
static void test_owner_of_other_ids(void **state)
{
    (void)state;
    char tag[RT_NODE_TAG_SIZE];
    for (int i = 0; i < 20000; i++) {
        char ref[RT_REF_SIZE];
        rt_ref_generate(ref, 'o');
        assert_int_equal(rt_ref_owner(ref, tag), 0);
    }
    const char *none[] = {
        "",
        "o",
        "o3-",
        "o3-aaaaaaaaaaaaaaaaaaaaa",    /* 21 random characters */
        "o3-aaaaaaaaaaaaaaaaaaaaaaa",  /* 23: the '-' is not where the tag ends */
        "o3_aaaaaaaaaaaaaaaaaaaaaa",   /* '_' is no separator */
        "o-3aaaaaaaaaaaaaaaaaaaaaa",   /* empty tag */
        "o3-aaaaaaaaaaaaaaaaaaaa-a",   /* '-' in the random part */
        "-3-aaaaaaaaaaaaaaaaaaaaaa",   /* no prefix letter */
        "o123456789012-aaaaaaaaaaaaaaaaaaaaaa", /* a 12-character tag */
    };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        assert_int_equal(rt_ref_owner(none[i], tag), 0);
    assert_int_equal(rt_ref_owner(NULL, tag), 0);
    assert_int_equal(rt_ref_owner("o3-aaaaaaaaaaaaaaaaaaaaaa", tag), 1);
    assert_string_equal(tag, "3");
    assert_int_equal(rt_ref_owner("t12345678901-0123456789ABCDEFGHIJKL", tag), 11);
    assert_string_equal(tag, "12345678901");
}

/* The random part is base62 from the CSPRNG: every one of the 62 characters shows up and
 * ids do not repeat. */
static void test_cluster_ids_random_part(void **state)
{
    (void)state;
    rt_ref_set_node_tag("7");
    enum { N = 20000 };
    char(*refs)[RT_REF_SIZE] = malloc(N * sizeof(*refs));
    assert_non_null(refs);
    int seen[256] = {0};
    for (int i = 0; i < N; i++) {
        rt_ref_generate(refs[i], 'o');
        for (size_t k = 3; refs[i][k]; k++)
            seen[(unsigned char)refs[i][k]] = 1;
    }
    int distinct = 0;
    for (int c = 0; c < 256; c++)
        distinct += seen[c];
    assert_int_equal(distinct, 62);
    qsort(refs, N, sizeof(*refs), cmp_ref);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(refs[i - 1], refs[i]);
    free(refs);
    rt_ref_set_node_tag(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tag_from_number, reset_tag),
        cmocka_unit_test_teardown(test_set_node_tag_checks, reset_tag),
        cmocka_unit_test_teardown(test_cluster_ids_carry_the_tag, reset_tag),
        cmocka_unit_test_teardown(test_owner_of_other_ids, reset_tag),
        cmocka_unit_test_teardown(test_cluster_ids_random_part, reset_tag),
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
