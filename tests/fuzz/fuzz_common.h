/* Helpers shared by the libFuzzer harnesses in tests/fuzz/: a checked abort that names the
 * broken invariant, a byte reader for structured inputs, and the check every handler's
 * answer must pass (a problem+json body that dumps and parses back). Header-only so each
 * harness stays one translation unit linked against the real rayd objects. */
#ifndef RAYD_FUZZ_COMMON_H
#define RAYD_FUZZ_COMMON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/problem.h"

/* An invariant that does not hold is a finding: abort so libFuzzer keeps the input. */
#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* A NUL-terminated copy of data in an exact-size allocation (so ASan sees any overrun). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Reads structured input front to back; reading past the end yields zeros/empty. */
typedef struct fuzz_reader {
    const uint8_t *p;
    size_t left;
} fuzz_reader;

static inline unsigned fuzz_u8(fuzz_reader *r)
{
    if (!r->left)
        return 0;
    r->left--;
    return *r->p++;
}

static inline unsigned fuzz_u16(fuzz_reader *r)
{
    unsigned hi = fuzz_u8(r);
    return hi << 8 | fuzz_u8(r);
}

/* Up to max bytes, length given by the next byte (or two when max > 255). */
static inline const uint8_t *fuzz_chunk(fuzz_reader *r, size_t max, size_t *len)
{
    size_t want = max > 255 ? fuzz_u16(r) : fuzz_u8(r);
    if (want > max)
        want = max;
    if (want > r->left)
        want = r->left;
    const uint8_t *at = r->p;
    r->p += want;
    r->left -= want;
    *len = want;
    return at;
}

/* 1 when s is valid UTF-8 as jansson accepts it (json_string succeeds). */
static inline int fuzz_utf8_ok(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* The dump of a problem must succeed and parse back to an equal object with the members
 * RFC 9457 and docs/api-notes.md promise. Returns the parsed copy (new reference) for more checks. */
static inline json_t *fuzz_check_problem_json(json_t *p, unsigned status)
{
    FUZZ_CHECK(json_is_object(p));
    char *text = json_dumps(p, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    json_error_t e;
    json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (!back)
        fprintf(stderr, "problem body does not parse back: %s (line %d col %d)\n", e.text,
                e.line, e.column);
    FUZZ_CHECK(back != NULL);
    FUZZ_CHECK(json_equal(back, p));
    free(text);
    json_t *st = json_object_get(back, "status");
    FUZZ_CHECK(json_is_integer(st) && json_integer_value(st) == (json_int_t)status);
    FUZZ_CHECK(json_is_string(json_object_get(back, "detail")));
    return back;
}

/* What a handler does with a decoder's reason: a 400 BadRequest problem. The reason must be
 * NUL-terminated within its buffer, non-empty, and yield a body that round-trips. */
static inline void fuzz_check_reason(const char *err, size_t err_size)
{
    FUZZ_CHECK(memchr(err, '\0', err_size) != NULL);
    FUZZ_CHECK(err[0] != '\0');
    json_t *p = api_problem_new(400, "BadRequest", err);
    json_t *back = fuzz_check_problem_json(p, 400);
    FUZZ_CHECK(json_is_string(json_object_get(back, "title")));
    FUZZ_CHECK(json_is_string(json_object_get(back, "type")));
    json_decref(back);
    json_decref(p);
}

#endif
