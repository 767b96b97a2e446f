/* Standard base64 (RFC 4648 section 4, with padding), used for binary values inside JSON
 * ("$bytes"). Thread-safe: pure functions. */
#ifndef RAYD_RUNTIME_BASE64_H
#define RAYD_RUNTIME_BASE64_H

#include <stddef.h>

/* Bytes needed to encode n bytes, including the terminating NUL. */
size_t rt_base64_encoded_size(size_t n);

/* Encodes n bytes into out (rt_base64_encoded_size(n) bytes); returns the length written,
 * not counting the NUL. */
size_t rt_base64_encode(const void *data, size_t n, char *out);

/* Upper bound of decoded bytes for an encoded length. */
size_t rt_base64_decoded_max(size_t len);

/* Decodes len characters into out (rt_base64_decoded_max(len) bytes). Padding is required
 * when the length is not a multiple of 4; whitespace is not allowed. Returns the number
 * of bytes written, or -1 when the input is not valid base64. */
long rt_base64_decode(const char *in, size_t len, void *out);

#endif
