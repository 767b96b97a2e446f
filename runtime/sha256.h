/* SHA-256 (FIPS 180-4): a one-shot digest, an incremental context, and a hex helper, used
 * by the sha256 built-in and anywhere the runtime needs a content hash.
 * Thread-safety: pure functions; a context belongs to one thread at a time. */
#ifndef RAYD_RUNTIME_SHA256_H
#define RAYD_RUNTIME_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define RT_SHA256_DIGEST_SIZE 32
#define RT_SHA256_HEX_SIZE 65 /* 64 hex digits and a NUL */

/* Incremental hashing state; fields are private. */
typedef struct rt_sha256_ctx {
    uint32_t state[8];
    uint64_t bytes;       /* total bytes hashed so far */
    unsigned char block[64];
    size_t used;          /* bytes waiting in block */
} rt_sha256_ctx;

/* ctx: borrowed, written. */
void rt_sha256_init(rt_sha256_ctx *ctx);
/* ctx: borrowed; data: borrowed (len bytes, may be NULL when len is 0). */
void rt_sha256_update(rt_sha256_ctx *ctx, const void *data, size_t len);
/* Writes the digest to out (borrowed, 32 bytes); ctx must be re-initialised to reuse it. */
void rt_sha256_final(rt_sha256_ctx *ctx, unsigned char out[RT_SHA256_DIGEST_SIZE]);

/* One-shot digest of len bytes of data (borrowed; may be NULL when len is 0) into out. */
void rt_sha256(const void *data, size_t len, unsigned char out[RT_SHA256_DIGEST_SIZE]);

/* Writes digest (borrowed) as 64 lowercase hex digits and a NUL into out (borrowed, 65
 * bytes). Returns out. */
char *rt_sha256_hex(const unsigned char digest[RT_SHA256_DIGEST_SIZE],
                    char out[RT_SHA256_HEX_SIZE]);

#endif
