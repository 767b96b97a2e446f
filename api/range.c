/* Single byte-range parsing: "bytes=a-b", "bytes=a-", "bytes=-n". */
#include "api/range.h"

#include <string.h>
#include <strings.h>

/* Reads a decimal number; returns the position after it, or NULL when there is none or it
 * overflows. */
static const char *read_number(const char *p, size_t *out)
{
    if (*p < '0' || *p > '9')
        return NULL;
    size_t v = 0;
    while (*p >= '0' && *p <= '9') {
        size_t d = (size_t)(*p - '0');
        if (v > ((size_t)-1 - d) / 10)
            return NULL;
        v = v * 10 + d;
        p++;
    }
    *out = v;
    return p;
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

api_range_result api_range_parse(const char *header, size_t size, size_t *start, size_t *len)
{
    if (!header)
        return API_RANGE_NONE;
    const char *p = skip_spaces(header);
    if (strncasecmp(p, "bytes", 5) != 0)
        return API_RANGE_NONE;
    p = skip_spaces(p + 5);
    if (*p++ != '=')
        return API_RANGE_NONE;
    p = skip_spaces(p);
    if (strchr(p, ','))
        return API_RANGE_NONE; /* several ranges: serve the whole thing */

    size_t first = 0, last = 0;
    if (*p == '-') { /* suffix: the last n bytes */
        size_t n;
        p = read_number(p + 1, &n);
        if (!p || *skip_spaces(p))
            return API_RANGE_NONE;
        if (n == 0 || size == 0)
            return API_RANGE_UNSATISFIABLE;
        if (n > size)
            n = size;
        *start = size - n;
        *len = n;
        return API_RANGE_OK;
    }
    p = read_number(p, &first);
    if (!p || *p++ != '-')
        return API_RANGE_NONE;
    p = skip_spaces(p);
    if (*p == '\0') {
        last = size ? size - 1 : 0;
    } else {
        p = read_number(p, &last);
        if (!p || *skip_spaces(p) || last < first)
            return API_RANGE_NONE;
    }
    if (first >= size)
        return API_RANGE_UNSATISFIABLE;
    if (last >= size)
        last = size - 1;
    *start = first;
    *len = last - first + 1;
    return API_RANGE_OK;
}
