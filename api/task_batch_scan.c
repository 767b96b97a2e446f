/* The quick reader of task batches (see task_batch_scan.h). A small cursor over the body
 * reads the envelope and each task's members; the members' values are parsed by jansson,
 * one value at a time (JSON_DISABLE_EOF_CHECK: it stops at the value's end and says where
 * that is). Every surprise answers "not read" and the general path takes over. */
#include "api/task_batch_scan.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api/decode.h"

#define VALUE_MAX 4000 /* bytes of one member's value; longer ones take the general path */

typedef struct cursor {
    const char *at, *end;
} cursor;

static void skip_space(cursor *c)
{
    while (c->at < c->end &&
           (*c->at == ' ' || *c->at == '\n' || *c->at == '\r' || *c->at == '\t'))
        c->at++;
}

/* Consumes ch (after whitespace); false when the next character is another. */
static bool take(cursor *c, char ch)
{
    skip_space(c);
    if (c->at >= c->end || *c->at != ch)
        return false;
    c->at++;
    return true;
}

/* A string of printable ASCII without escapes (after whitespace): *s and *n are its
 * characters. false for anything else. */
static bool take_plain_string(cursor *c, const char **s, size_t *n)
{
    if (!take(c, '"'))
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

static bool is_key(const char *s, size_t n, const char *key)
{
    return strlen(key) == n && memcmp(s, key, n) == 0;
}

/* One JSON value (after whitespace) parsed by jansson, as the general parser would (no
 * duplicate keys); null gives *out NULL. false when it does not parse. */
static bool take_value(cursor *c, json_t **out)
{
    skip_space(c);
    *out = NULL;
    if ((size_t)(c->end - c->at) >= 4 && memcmp(c->at, "null", 4) == 0) {
        c->at += 4;
        return true;
    }
    if (c->at >= c->end || (*c->at != '[' && *c->at != '{'))
        return false; /* scalars: rare here, and wrong for every member but function */
    json_error_t error;
    *out = json_loadb(c->at, (size_t)(c->end - c->at),
                      JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &error);
    if (!*out)
        return false;
    c->at += error.position;
    /* jansson limits nesting to 2048 levels over the whole body; a value of fewer bytes
     * than this cannot come near that limit where the general parser meets it (4 levels
     * deeper), so both accept the same values */
    return error.position <= VALUE_MAX;
}

/* One task object into spec; *name and *name_len: its function's characters. Values it
 * took are left in spec (args, kwargs) and in *options for the caller to release. */
static bool take_task(cursor *c, rt_task_spec *spec, const char **name, size_t *name_len,
                      json_t **options)
{
    memset(spec, 0, sizeof(*spec));
    spec->num_returns = 1;
    spec->max_retries = -1; /* as api_decode_task: the function's default */
    spec->args_given = true;
    *name = NULL;
    *options = NULL;
    if (!take(c, '{'))
        return false;
    bool seen_args = false, seen_kwargs = false, seen_options = false;
    if (take(c, '}'))
        return false; /* no function */
    do {
        const char *key;
        size_t key_len;
        if (!take_plain_string(c, &key, &key_len) || !take(c, ':'))
            return false;
        if (is_key(key, key_len, "function")) {
            if (*name || !take_plain_string(c, name, name_len))
                return false;
        } else if (is_key(key, key_len, "args")) {
            if (seen_args || !take_value(c, &spec->args) ||
                (spec->args && !json_is_array(spec->args)))
                return false;
            seen_args = true;
        } else if (is_key(key, key_len, "kwargs")) {
            if (seen_kwargs || !take_value(c, &spec->kwargs) ||
                (spec->kwargs && !json_is_object(spec->kwargs)))
                return false;
            seen_kwargs = true;
        } else if (is_key(key, key_len, "options")) {
            if (seen_options || !take_value(c, options))
                return false;
            seen_options = true;
        } else {
            return false;
        }
    } while (take(c, ','));
    if (!take(c, '}') || !*name)
        return false;
    char why[200];
    return api_decode_task_options(*options, spec, why, sizeof(why)) == API_DECODE_OK;
}

void api_task_batch_release(api_task_batch *batch)
{
    free(batch->specs);
    free(batch->names);
    json_decref(batch->options);
    memset(batch, 0, sizeof(*batch));
}

/* Undoes a partial read: the values taken so far, and the rest. */
static int not_read(api_task_batch *b, size_t taken)
{
    for (size_t i = 0; i < taken; i++) {
        json_decref(b->specs[i].args);
        json_decref(b->specs[i].kwargs);
    }
    api_task_batch_release(b);
    return -1;
}

int api_task_batch_scan(const char *body, size_t len, api_task_batch *out)
{
    memset(out, 0, sizeof(*out));
    cursor c = {body, body + len};
    const char *key;
    size_t key_len;
    if (!take(&c, '{') || !take_plain_string(&c, &key, &key_len) ||
        !is_key(key, key_len, "tasks") || !take(&c, ':') || !take(&c, '['))
        return -1;
    /* At most one task per 15 bytes ({"function":""} at least): room for all at once. */
    size_t cap = len / 15 + 1;
    if (cap > API_TASKS_BATCH_MAX)
        cap = API_TASKS_BATCH_MAX;
    out->specs = malloc(cap * sizeof(*out->specs));
    out->names = malloc(len + 1); /* names are parts of the body, each with its NUL */
    if (!out->specs || !out->names)
        return not_read(out, 0);
    char *names_at = out->names;
    size_t n = 0;
    do {
        const char *name;
        size_t name_len;
        json_t *options = NULL;
        if (n == cap)
            return not_read(out, n);
        bool ok = take_task(&c, &out->specs[n], &name, &name_len, &options);
        if (options) { /* kept: the spec's name points into it */
            if (!out->options)
                out->options = json_array();
            if (!out->options || json_array_append_new(out->options, options) != 0)
                ok = false;
        }
        if (!ok) {
            json_decref(out->specs[n].args);
            json_decref(out->specs[n].kwargs);
            return not_read(out, n);
        }
        out->specs[n].function = memcpy(names_at, name, name_len);
        names_at[name_len] = '\0';
        names_at += name_len + 1;
        n++;
    } while (take(&c, ','));
    if (!take(&c, ']') || !take(&c, '}'))
        return not_read(out, n);
    skip_space(&c);
    if (c.at != c.end)
        return not_read(out, n);
    out->n = n;
    return 0;
}
