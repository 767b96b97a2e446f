/* A cursor over a JSON request body, for the quick readers of big bodies
 * (api/task_batch_scan.h, api/wait_scan.h): they walk the envelope themselves and have
 * jansson parse only the members' values, one at a time. Each function answers false when
 * the text is not what it takes (the reader then leaves the body to the general path). */
#ifndef RAYD_API_JSON_SCAN_H
#define RAYD_API_JSON_SCAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct api_json_cursor {
    const char *at, *end;
} api_json_cursor;

/* Skips JSON whitespace; true when the cursor is at the end then. */
bool api_json_scan_end(api_json_cursor *c);

/* Consumes ch after whitespace. */
bool api_json_scan_take(api_json_cursor *c, char ch);

/* A string of printable ASCII without escapes, after whitespace: *s and *n are its
 * characters (in the body, not NUL-terminated). */
bool api_json_scan_plain_string(api_json_cursor *c, const char **s, size_t *n);

/* True when the n characters at s are key. */
bool api_json_scan_is(const char *s, size_t n, const char *key);

/* Longest value api_json_scan_value takes. jansson limits nesting to 2048 levels over a
 * whole body; a value this short cannot come near that limit where the general parser
 * meets it (a few levels deeper), so both accept the same values. */
#define API_JSON_SCAN_VALUE_MAX 4000

/* One JSON value of at most API_JSON_SCAN_VALUE_MAX bytes, after whitespace, parsed by
 * jansson as a whole body is (duplicate members refused): *out is a new reference, or
 * NULL for null. When it returns false, *out may hold a value to release. */
bool api_json_scan_value(api_json_cursor *c, json_t **out);

#endif
