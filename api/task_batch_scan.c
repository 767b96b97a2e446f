/* The quick reader of task batches (see task_batch_scan.h): a cursor (api/json_scan.h)
 * reads the envelope and each task's members; jansson parses the members' values. Every
 * surprise answers "not read" and the general path takes over. */
#include "api/task_batch_scan.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api/decode.h"
#include "api/json_scan.h"

/* One task object into spec; *name and *name_len: its function's characters. Values it
 * took are left in spec (args, kwargs) and in *options for the caller to release. */
static bool take_task(api_json_cursor *c, rt_task_spec *spec, const char **name, size_t *name_len,
                      json_t **options)
{
    memset(spec, 0, sizeof(*spec));
    spec->num_returns = 1;
    spec->max_retries = -1; /* as api_decode_task: the function's default */
    spec->args_given = true;
    *name = NULL;
    *options = NULL;
    if (!api_json_scan_take(c, '{'))
        return false;
    bool seen_args = false, seen_kwargs = false, seen_options = false;
    if (api_json_scan_take(c, '}'))
        return false; /* no function */
    do {
        const char *key;
        size_t key_len;
        if (!api_json_scan_plain_string(c, &key, &key_len) || !api_json_scan_take(c, ':'))
            return false;
        if (api_json_scan_is(key, key_len, "function")) {
            if (*name || !api_json_scan_plain_string(c, name, name_len))
                return false;
        } else if (api_json_scan_is(key, key_len, "args")) {
            if (seen_args || !api_json_scan_value(c, &spec->args) ||
                (spec->args && !json_is_array(spec->args)))
                return false;
            seen_args = true;
        } else if (api_json_scan_is(key, key_len, "kwargs")) {
            if (seen_kwargs || !api_json_scan_value(c, &spec->kwargs) ||
                (spec->kwargs && !json_is_object(spec->kwargs)))
                return false;
            seen_kwargs = true;
        } else if (api_json_scan_is(key, key_len, "options")) {
            if (seen_options || !api_json_scan_value(c, options))
                return false;
            seen_options = true;
        } else {
            return false;
        }
    } while (api_json_scan_take(c, ','));
    if (!api_json_scan_take(c, '}') || !*name)
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
    api_json_cursor c = {body, body + len};
    const char *key;
    size_t key_len;
    if (!api_json_scan_take(&c, '{') || !api_json_scan_plain_string(&c, &key, &key_len) ||
        !api_json_scan_is(key, key_len, "tasks") || !api_json_scan_take(&c, ':') ||
        !api_json_scan_take(&c, '['))
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
    } while (api_json_scan_take(&c, ','));
    if (!api_json_scan_take(&c, ']') || !api_json_scan_take(&c, '}'))
        return not_read(out, n);
    if (!api_json_scan_end(&c))
        return not_read(out, n);
    out->n = n;
    return 0;
}
