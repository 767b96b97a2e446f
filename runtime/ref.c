/* Id generation and validation. Single-node ids come from a per-thread xoshiro256**
 * seeded from the kernel; cluster ids (which name their owner) take their random part
 * from getrandom, read a block at a time per thread. */
#include "runtime/ref.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static __thread uint64_t rng_state[4];
static __thread int rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    if (!rng_seeded) {
        if (getrandom(rng_state, sizeof(rng_state), 0) != (ssize_t)sizeof(rng_state)) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            rng_state[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)(uintptr_t)&ts << 17);
            rng_state[1] = (uint64_t)ts.tv_sec * 0x9E3779B97F4A7C15ull;
            rng_state[2] = rng_state[0] ^ 0xD1B54A32D192ED03ull;
            rng_state[3] = rng_state[1] ^ 0x8CB92BA72F3D8DD7ull;
        }
        rng_seeded = 1;
    }
    uint64_t *s = rng_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* ---- cluster ids ----------------------------------------------------------------------- */

static const char BASE62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* The node's tag: written once into node_tag_text, then published through node_tag. */
static char node_tag_text[RT_NODE_TAG_SIZE];
static const char *node_tag; /* atomic */

/* getrandom output not yet used, per thread. */
static __thread unsigned char csprng_pool[256];
static __thread size_t csprng_left;

static unsigned char csprng_byte(void)
{
    if (csprng_left == 0) {
        size_t got = 0;
        while (got < sizeof(csprng_pool)) {
            ssize_t n = getrandom(csprng_pool + got, sizeof(csprng_pool) - got, 0);
            if (n > 0) {
                got += (size_t)n;
            } else if (errno != EINTR) {
                /* No getrandom (a kernel before 3.17): the seeded generator is all there
                 * is. */
                for (; got < sizeof(csprng_pool); got++)
                    csprng_pool[got] = (unsigned char)rng_next();
            }
        }
        csprng_left = sizeof(csprng_pool);
    }
    return csprng_pool[--csprng_left];
}

static int is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

size_t rt_ref_tag_from_number(unsigned long long n, char tag[RT_NODE_TAG_SIZE])
{
    char rev[RT_NODE_TAG_SIZE];
    size_t len = 0;
    do {
        rev[len++] = BASE62[n % 62];
        n /= 62;
    } while (n);
    for (size_t i = 0; i < len; i++)
        tag[i] = rev[len - 1 - i];
    tag[len] = '\0';
    return len;
}

int rt_ref_node_tag_valid(const char *tag)
{
    size_t len = tag ? strlen(tag) : 0;
    if (len == 0 || len > RT_NODE_TAG_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_base62(tag[i]))
            return 0;
    return 1;
}

int rt_ref_set_node_tag(const char *tag)
{
    if (!tag) {
        __atomic_store_n(&node_tag, NULL, __ATOMIC_RELEASE);
        return 0;
    }
    if (!rt_ref_node_tag_valid(tag))
        return -1;
    size_t len = strlen(tag);
    memcpy(node_tag_text, tag, len + 1);
    __atomic_store_n(&node_tag, node_tag_text, __ATOMIC_RELEASE);
    return 0;
}

const char *rt_ref_node_tag(void)
{
    return __atomic_load_n(&node_tag, __ATOMIC_ACQUIRE);
}

/* <prefix><tag>-<random>: base62 characters from the CSPRNG, by rejection sampling
 * (bytes of 248 and over are dropped, so each of the 62 characters is equally likely). */
static void generate_owned(char *out, char prefix, const char *tag)
{
    size_t i = 0;
    out[i++] = prefix ? prefix : 'x';
    for (const char *t = tag; *t; t++)
        out[i++] = *t;
    out[i++] = '-';
    for (size_t k = 0; k < RT_REF_RANDOM_LEN;) {
        unsigned char b = csprng_byte();
        if (b < 248)
            out[i + k++] = BASE62[b % 62];
    }
    out[i + RT_REF_RANDOM_LEN] = '\0';
}

size_t rt_ref_owner(const char *id, char tag[RT_NODE_TAG_SIZE])
{
    if (!id)
        return 0;
    size_t len = strnlen(id, RT_REF_MADE_MAX + 1);
    if (len < 1 + 1 + 1 + RT_REF_RANDOM_LEN || len > RT_REF_MADE_MAX || !is_base62(id[0]))
        return 0;
    size_t tag_len = len - 2 - RT_REF_RANDOM_LEN;
    if (id[1 + tag_len] != '-')
        return 0;
    for (size_t i = 1; i < len; i++)
        if (i != 1 + tag_len && !is_base62(id[i]))
            return 0;
    memcpy(tag, id + 1, tag_len);
    tag[tag_len] = '\0';
    return tag_len;
}

/* ---- generating and checking ------------------------------------------------------------ */

void rt_ref_generate(char *out, char prefix)
{
    const char *tag = __atomic_load_n(&node_tag, __ATOMIC_ACQUIRE);
    if (tag) {
        generate_owned(out, prefix, tag);
        return;
    }
    uint64_t a = rng_next(), b = rng_next();
    int i = 0;
    if (prefix)
        out[i++] = prefix;
    while (i < RT_REF_LEN) {
        out[i++] = ALPHABET[a & 63];
        a >>= 6;
        if (!a) {
            a = b | (1ull << 63);
            b = rng_next() | (1ull << 63);
        }
    }
    out[i] = '\0';
}

int rt_ref_valid(const char *s)
{
    if (!s)
        return 0;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= RT_REF_MAX)
            return 0;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return n > 0;
}
