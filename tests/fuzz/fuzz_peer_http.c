/* libFuzzer harness for the lean peer client's answer parser (rt_http_parse,
 * runtime/peer_http.c), which reads what other nodes send.
 *
 * Input: byte 0 says whether the answer is to a HEAD and where to split the rest; the rest
 * is the bytes of the answer, parsed once whole and once in pieces of that size (as reads
 * from a socket would hand them over). Invariants checked:
 *   - both parses agree: same result, status, headers and body (splitting is invisible);
 *   - a parse uses no more bytes than it was given, and stops only at the answer's end;
 *   - the head ends at most once, before any body byte, with a status of 200..599;
 *   - a finished answer framed by Content-Length has exactly that many body bytes, and a
 *     HEAD, 204 or 304 none;
 *   - a refused answer says why. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "runtime/peer_http.h"

typedef struct seen {
    int status, heads;
    unsigned long long body;
    uint64_t hash; /* of the headers and the body, in order */
} seen;

static void mix(seen *s, const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s->hash = (s->hash ^ (uint8_t)d[i]) * 1099511628211ull;
}

static int on_header(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
    seen *s = arg;
    FUZZ_CHECK(s->heads == 0);
    mix(s, name, nl);
    mix(s, ":", 1);
    mix(s, value, vl);
    return 0;
}

static int on_head_end(void *arg, int status)
{
    seen *s = arg;
    FUZZ_CHECK(s->heads == 0 && status >= 200 && status <= 599);
    s->heads = 1;
    s->status = status;
    return 0;
}

static int on_body(void *arg, const char *data, size_t len)
{
    seen *s = arg;
    FUZZ_CHECK(s->heads == 1 && len > 0);
    s->body += len;
    mix(s, data, len);
    return 0;
}

static const rt_http_callbacks CB = {on_header, on_head_end, on_body};
static rt_http_parser whole, split;

/* Parses data in pieces of step bytes; returns -1 on refusal, else the bytes used. */
static long parse(rt_http_parser *p, seen *s, bool head, const char *data, size_t size, size_t step)
{
    rt_http_parser_init(p, head);
    memset(s, 0, sizeof(*s));
    size_t used = 0;
    for (size_t i = 0; i < size; i += step) {
        size_t n = size - i < step ? size - i : step;
        long r = rt_http_parse(p, data + i, n, &CB, s);
        if (r < 0) {
            FUZZ_CHECK(p->error[0] != '\0');
            return -1;
        }
        FUZZ_CHECK((size_t)r <= n);
        used += (size_t)r;
        if ((size_t)r < n) {
            FUZZ_CHECK(rt_http_parser_done(p));
            break;
        }
    }
    if (rt_http_parser_done(p)) {
        FUZZ_CHECK(s->heads == 1);
        if (head || s->status == 204 || s->status == 304)
            FUZZ_CHECK(s->body == 0);
        else if (p->has_length)
            FUZZ_CHECK(s->body == p->length);
    }
    return (long)used;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool head = data[0] & 1;
    size_t step = (size_t)(data[0] >> 1) + 1;
    char *text = malloc(size - 1 ? size - 1 : 1); /* exact: ASan sees reads past the end */
    if (!text)
        abort();
    memcpy(text, data + 1, size - 1);
    seen a, b;
    long ra = parse(&whole, &a, head, text, size - 1, size);
    long rb = parse(&split, &b, head, text, size - 1, step);
    FUZZ_CHECK(ra == rb);
    FUZZ_CHECK(rt_http_parser_done(&whole) == rt_http_parser_done(&split));
    if (ra >= 0) {
        FUZZ_CHECK(a.status == b.status && a.heads == b.heads && a.body == b.body &&
                   a.hash == b.hash);
        FUZZ_CHECK(rt_http_parse_eof(&whole) == rt_http_parse_eof(&split));
    }
    free(text);
    return 0;
}
