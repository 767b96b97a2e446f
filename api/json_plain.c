/* Plain JSON parsed without jansson's lexer, which reads a character at a time through
 * callbacks and was the largest part of rayd's own instructions for a small task or actor
 * call (6.7k of ~39k per request, callgrind, BENCHMARKS.md).
 *
 * Plain JSON here: an object or an array at the top, holding objects, arrays, strings of
 * printable ASCII without escapes, integers of at most 18 digits, true, false and null.
 * Everything else (escapes, other bytes, reals, longer integers, duplicate members,
 * nesting deeper than MAX_DEPTH) and every error returns NULL: the caller parses the body
 * again with jansson, so what is accepted, what is refused and the error messages are
 * jansson's. The tree built is the one json_loadb builds (members in their order). */
#include "api/json_plain.h"

#include <stdbool.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_DIGITS 18 /* always within json_int_t */

typedef struct cursor {
    const char *p, *end;
    int depth;
} cursor;

static void skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static bool at(const cursor *c, char ch)
{
    return c->p < c->end && *c->p == ch;
}

static json_t *value(cursor *c);

/* The string at c->p (its opening quote): its bytes and length, or NULL. */
static const char *string(cursor *c, size_t *len)
{
    const char *s = ++c->p;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p;
        if (ch < 0x20 || ch > 0x7e || ch == '\\')
            return NULL;
        c->p++;
    }
    if (c->p == c->end)
        return NULL;
    *len = (size_t)(c->p - s);
    c->p++;
    return s;
}

static json_t *integer(cursor *c)
{
    bool negative = at(c, '-');
    if (negative)
        c->p++;
    const char *digits = c->p;
    json_int_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && c->p - digits < MAX_DIGITS)
        v = v * 10 + (*c->p++ - '0');
    size_t n = (size_t)(c->p - digits);
    if (n == 0 || (n > 1 && digits[0] == '0'))
        return NULL;
    /* a real, or more digits than taken */
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E' ||
                          (*c->p >= '0' && *c->p <= '9')))
        return NULL;
    return json_integer(negative ? -v : v);
}

static json_t *literal(cursor *c, const char *word, size_t len, json_t *made)
{
    if ((size_t)(c->end - c->p) < len || memcmp(c->p, word, len) != 0)
        return NULL;
    c->p += len;
    return made;
}

/* At an opening '[' or '{': takes it; true when close follows at once (taken too). */
static bool open_empty(cursor *c, char close)
{
    c->p++;
    skip_space(c);
    if (!at(c, close))
        return false;
    c->p++;
    return true;
}

/* After an element or member: 1 when a comma follows (taken), 0 at close (taken), -1 for
 * anything else. */
static int after_item(cursor *c, char close)
{
    skip_space(c);
    if (at(c, ',')) {
        c->p++;
        skip_space(c);
        return 1;
    }
    if (at(c, close)) {
        c->p++;
        return 0;
    }
    return -1;
}

static json_t *array(cursor *c)
{
    json_t *arr = json_array();
    if (open_empty(c, ']'))
        return arr;
    int next;
    do {
        json_t *v = value(c);
        if (!v || json_array_append_new(arr, v) != 0)
            next = -1;
        else
            next = after_item(c, ']');
    } while (next == 1);
    if (next == 0)
        return arr;
    json_decref(arr);
    return NULL;
}

static json_t *object(cursor *c)
{
    json_t *obj = json_object();
    if (open_empty(c, '}'))
        return obj;
    int next = -1;
    do {
        size_t key_len;
        const char *key = at(c, '"') ? string(c, &key_len) : NULL;
        if (!key || json_object_getn(obj, key, key_len))
            break; /* not plain, or a duplicate member: jansson says which */
        skip_space(c);
        if (!at(c, ':'))
            break;
        c->p++;
        skip_space(c);
        json_t *v = value(c);
        if (!v || json_object_setn_new_nocheck(obj, key, key_len, v) != 0)
            break;
        next = after_item(c, '}');
    } while (next == 1);
    if (next == 0)
        return obj;
    json_decref(obj);
    return NULL;
}

static json_t *value(cursor *c)
{
    if (c->p == c->end)
        return NULL;
    switch (*c->p) {
    case '{':
    case '[': {
        if (c->depth == MAX_DEPTH)
            return NULL;
        c->depth++;
        json_t *v = *c->p == '{' ? object(c) : array(c);
        c->depth--;
        return v;
    }
    case '"': {
        size_t len;
        const char *s = string(c, &len);
        return s ? json_stringn_nocheck(s, len) : NULL;
    }
    case 't':
        return literal(c, "true", 4, json_true());
    case 'f':
        return literal(c, "false", 5, json_false());
    case 'n':
        return literal(c, "null", 4, json_null());
    default:
        return integer(c);
    }
}

json_t *api_json_plain_parse(const char *data, size_t len)
{
    cursor c = {data, data + len, 0};
    skip_space(&c);
    if (!at(&c, '{') && !at(&c, '['))
        return NULL; /* jansson takes only these at the top (no JSON_DECODE_ANY) */
    json_t *v = value(&c);
    skip_space(&c);
    if (v && c.p != c.end) {
        json_decref(v);
        return NULL;
    }
    return v;
}
