/* The cursor of the quick body readers (see json_scan.h). */
#include "api/json_scan.h"

#include <string.h>

static void skip_space(api_json_cursor *c)
{
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\n' || *c->at == '\r' || *c->at == '\t'))
        c->at++;
}

bool api_json_scan_end(api_json_cursor *c)
{
    skip_space(c);
    return c->at == c->end;
}

bool api_json_scan_take(api_json_cursor *c, char ch)
{
    skip_space(c);
    if (c->at >= c->end || *c->at != ch)
        return false;
    c->at++;
    return true;
}

bool api_json_scan_plain_string(api_json_cursor *c, const char **s, size_t *n)
{
    if (!api_json_scan_take(c, '"'))
        return false;
    const char *start = c->at;
    while (c->at < c->end && *c->at != '"') {
        unsigned char ch = (unsigned char)*c->at;
        if (ch < 0x20 || ch >= 0x7f || ch == '\\')
            return false;
        c->at++;
    }
    if (c->at >= c->end)
        return false;
    *s = start;
    *n = (size_t)(c->at - start);
    c->at++;
    return true;
}

bool api_json_scan_is(const char *s, size_t n, const char *key)
{
    return strlen(key) == n && memcmp(s, key, n) == 0;
}

bool api_json_scan_value(api_json_cursor *c, json_t **out)
{
    skip_space(c);
    json_error_t error;
    *out = json_loadb(c->at, (size_t)(c->end - c->at),
                      JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &error);
    if (!*out)
        return false;
    if (json_is_null(*out)) {
        json_decref(*out);
        *out = NULL;
    }
    c->at += error.position;
    return error.position <= API_JSON_SCAN_VALUE_MAX;
}
