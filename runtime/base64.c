/* Base64 encoding and strict decoding. */
#include "runtime/base64.h"

#include <stdint.h>

static const char ENC[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t rt_base64_encoded_size(size_t n)
{
    return (n + 2) / 3 * 4 + 1;
}

size_t rt_base64_encode(const void *data, size_t n, char *out)
{
    const unsigned char *in = data;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = ENC[v >> 18];
        out[o++] = ENC[(v >> 12) & 63];
        out[o++] = ENC[(v >> 6) & 63];
        out[o++] = ENC[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = ENC[v >> 18];
        out[o++] = ENC[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = ENC[v >> 18];
        out[o++] = ENC[(v >> 12) & 63];
        out[o++] = ENC[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

size_t rt_base64_decoded_max(size_t len)
{
    return len / 4 * 3 + 3;
}

static int dec(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long rt_base64_decode(const char *in, size_t len, void *out_)
{
    unsigned char *out = out_;
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int a = dec((unsigned char)in[i]), b = dec((unsigned char)in[i + 1]);
        if (a < 0 || b < 0)
            return -1;
        int last = i + 4 == len;
        if (last && in[i + 2] == '=') {
            if (in[i + 3] != '=' || (b & 15))
                return -1;
            out[o++] = (unsigned char)(a << 2 | b >> 4);
            break;
        }
        int c = dec((unsigned char)in[i + 2]);
        if (c < 0)
            return -1;
        if (last && in[i + 3] == '=') {
            if (c & 3)
                return -1;
            out[o++] = (unsigned char)(a << 2 | b >> 4);
            out[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
            break;
        }
        int d = dec((unsigned char)in[i + 3]);
        if (d < 0)
            return -1;
        out[o++] = (unsigned char)(a << 2 | b >> 4);
        out[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
        out[o++] = (unsigned char)((c & 3) << 6 | d);
    }
    return (long)o;
}
