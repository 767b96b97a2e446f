/* libFuzzer harness for the text cluster mode parses: the RAYD_CLUSTER URL
 * (rt_redis_url_parse, runtime/cluster_redis.c) and the owner tag of an id a client sends
 * (rt_ref_owner, runtime/ref.c).
 *
 * Input: one C string (bytes after a NUL are dropped). Invariants checked:
 *   url    success: a non-empty host without NUL past its buffer, port 1..65535, and the
 *          text starts with "redis://"; failure: a non-empty one-line reason.
 *   owner  a tag is found only in an id of 25..35 characters of [A-Za-z0-9-], whose tag
 *          (1..11 base62) is followed by '-' and exactly 22 base62 characters; and every
 *          id made with a tag set reads back that tag. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "runtime/cluster_redis.h"
#include "runtime/ref.h"

static int is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static void check_url(const char *text)
{
    rt_redis_url u;
    char err[256];
    err[0] = '\0';
    if (rt_redis_url_parse(text, &u, err, sizeof(err)) != 0) {
        FUZZ_CHECK(err[0] != '\0' && !strchr(err, '\n'));
        return;
    }
    FUZZ_CHECK(strncmp(text, "redis://", 8) == 0);
    FUZZ_CHECK(u.host[0] != '\0' && memchr(u.host, '\0', sizeof(u.host)));
    FUZZ_CHECK(memchr(u.user, '\0', sizeof(u.user)) && memchr(u.password, '\0',
                                                               sizeof(u.password)));
    FUZZ_CHECK(u.port >= 1 && u.port <= 65535);
}

static void check_owner(const char *text)
{
    char tag[RT_NODE_TAG_SIZE];
    size_t n = rt_ref_owner(text, tag);
    if (n == 0)
        return;
    size_t len = strlen(text);
    FUZZ_CHECK(n <= RT_NODE_TAG_MAX && strlen(tag) == n);
    FUZZ_CHECK(len == 1 + n + 1 + RT_REF_RANDOM_LEN && len <= RT_REF_MADE_MAX);
    FUZZ_CHECK(rt_ref_valid(text));
    FUZZ_CHECK(memcmp(text + 1, tag, n) == 0 && text[1 + n] == '-');
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(is_base62(tag[i]));
    for (size_t i = 2 + n; i < len; i++)
        FUZZ_CHECK(is_base62(text[i]));
}

/* A tag made of the input's base62 characters: ids made with it name it. */
static void check_round_trip(const char *text)
{
    char tag[RT_NODE_TAG_SIZE];
    size_t n = 0;
    for (const char *p = text; *p && n < RT_NODE_TAG_MAX; p++)
        if (is_base62(*p))
            tag[n++] = *p;
    tag[n] = '\0';
    if (n == 0)
        return;
    FUZZ_CHECK(rt_ref_set_node_tag(tag) == 0);
    char id[RT_REF_SIZE], back[RT_NODE_TAG_SIZE];
    rt_ref_generate(id, 'o');
    FUZZ_CHECK(rt_ref_owner(id, back) == n && strcmp(back, tag) == 0);
    rt_ref_set_node_tag(NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size);
    check_url(text);
    check_owner(text);
    check_round_trip(text);
    free(text);
    return 0;
}
