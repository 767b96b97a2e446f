/* The quick reader of get/wait bodies (see wait_scan.h): a cursor (api/json_scan.h) reads
 * the object and the refs list; jansson parses the other members' values into a small
 * object for api_decode_wait_parts. */
#include "api/wait_scan.h"

#include <stdlib.h>
#include <string.h>

#include "api/json_scan.h"

/* The refs list, after its key: each ref's characters copied into text with a NUL, and
 * pointed to from *refs (n of them). */
static bool take_refs(api_json_cursor *c, char *text, const char ***refs, size_t *n)
{
    /* At most one ref per 3 bytes ("",): room for all at once. */
    size_t cap = (size_t)(c->end - c->at) / 3 + 1;
    if (cap > API_REFS_MAX + 1)
        cap = API_REFS_MAX + 1; /* one more is already too many */
    *refs = malloc(cap * sizeof(**refs));
    if (!*refs || !api_json_scan_take(c, '['))
        return false;
    *n = 0;
    if (api_json_scan_take(c, ']'))
        return true;
    do {
        const char *s;
        size_t len;
        if (*n == cap || !api_json_scan_plain_string(c, &s, &len))
            return false;
        (*refs)[(*n)++] = memcpy(text, s, len);
        text[len] = '\0';
        text += len + 1;
    } while (api_json_scan_take(c, ','));
    return api_json_scan_take(c, ']');
}

int api_wait_scan(const char *body, size_t len, bool is_wait, api_wait_request *out)
{
    memset(out, 0, sizeof(*out));
    api_json_cursor c = {body, body + len};
    const char **refs = NULL;
    size_t n = 0;
    bool have_refs = false;
    char *text = malloc(len + 1); /* the refs are parts of the body, each with its NUL */
    json_t *members = json_object();
    if (!text || !members || !api_json_scan_take(&c, '{') || api_json_scan_take(&c, '}'))
        goto not_read;
    do {
        const char *key;
        size_t key_len;
        if (!api_json_scan_plain_string(&c, &key, &key_len) || !api_json_scan_take(&c, ':'))
            goto not_read;
        if (api_json_scan_is(key, key_len, "refs")) {
            if (have_refs || !take_refs(&c, text, &refs, &n))
                goto not_read;
            have_refs = true;
            continue;
        }
        json_t *value;
        bool ok = api_json_scan_value(&c, &value);
        if (ok) { /* a key of printable ASCII: no NUL in it */
            char name[64];
            ok = key_len < sizeof(name) && json_object_getn(members, key, key_len) == NULL;
            if (ok) {
                memcpy(name, key, key_len);
                name[key_len] = '\0';
                ok = json_object_set(members, name, value ? value : json_null()) == 0;
            }
        }
        json_decref(value);
        if (!ok)
            goto not_read;
    } while (api_json_scan_take(&c, ','));
    if (!api_json_scan_take(&c, '}') || !api_json_scan_end(&c) || !have_refs)
        goto not_read;
    char err[256];
    out->text = text;
    int d = api_decode_wait_parts(members, true, refs, n, is_wait, out, err, sizeof(err));
    json_decref(members);
    return d == API_DECODE_OK ? 0 : -1; /* refs and text are out's, or freed */
not_read:
    free(refs);
    free(text);
    json_decref(members);
    return -1;
}
