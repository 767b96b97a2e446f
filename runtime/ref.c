/* Id generation (per-thread xoshiro256** seeded from the kernel) and validation. */
#include "runtime/ref.h"

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

void rt_ref_generate(char *out, char prefix)
{
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
