/* The string hash every table in rayd uses (FNV-1a, 32 bits): refs, task and actor ids,
 * actor names, Idempotency-Key scopes. Ids are random, so a simple, fast hash spreads them
 * well. Thread-safe: pure. */
#ifndef RAYD_RUNTIME_HASH_H
#define RAYD_RUNTIME_HASH_H

#include <stdint.h>

/* Hashes a NUL-terminated string (borrowed). */
static inline uint32_t rt_hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

#endif
