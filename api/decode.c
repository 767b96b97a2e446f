/* Request body decoders (see decode.h). */
#include "api/decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json_plain.h"
#include "api/values.h"
#include "runtime/hash.h"
#include "runtime/ref.h"

/* Tasks retry system failures as many times as their function says (Ray's 3 for built-ins);
 * function errors only with retry_exceptions. -1 asks for that default. */
#define DEFAULT_MAX_RETRIES -1

/* Bodies up to this size go to the quick parser first (api/json_plain.h): the small calls
 * whose parse was a large part of their cost. Larger ones (batches) stay with jansson: parsed
 * faster, batches of big arguments outran the workers, and the arguments of pending tasks,
 * bounded by no byte limit, took test_memory's RSS from 44 MiB to 44-95 MiB. */
#define PLAIN_BODY_MAX (64 * 1024)

json_t *api_decode_body(const char *data, size_t len, json_error_t *error)
{
    json_t *plain = len <= PLAIN_BODY_MAX ? api_json_plain_parse(data, len) : NULL;
    return plain ? plain : json_loadb(data, len, JSON_REJECT_DUPLICATES, error);
}

int api_decode_only_keys(json_t *obj, const char *const *allowed, const char *what, char *err,
                         size_t err_size)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            ok |= strcmp(*a, key) == 0;
        if (!ok) {
            snprintf(err, err_size, "%s has an unknown member '%.64s'", what, key);
            return API_DECODE_BAD;
        }
    }
    return API_DECODE_OK;
}

/* ---- get and wait ------------------------------------------------------------------- */

/* Whether a string appears twice in strs: 1 (*dup is the index of its second place), 0,
 * or -1 when out of memory. A hash set of indices, open addressing, at most half full:
 * linear in n (sorting a copy cost 8% of a 10,000-task batch round, callgrind). */
static int find_duplicate(const char *const *strs, size_t n, size_t *dup)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    size_t *slots = calloc(cap, sizeof(*slots)); /* index + 1; 0: empty */
    if (!slots)
        return -1;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) {
        size_t at = rt_hash_str(strs[i]) & (cap - 1);
        while (slots[at] && strcmp(strs[slots[at] - 1], strs[i]) != 0)
            at = (at + 1) & (cap - 1);
        if (slots[at]) {
            *dup = i;
            found = 1;
        }
        slots[at] = i + 1;
    }
    free(slots);
    return found;
}

void api_wait_request_release(api_wait_request *req)
{
    if (req) {
        free(req->refs);
        free(req->text);
        req->refs = NULL;
        req->text = NULL;
    }
}

int api_decode_wait(json_t *body, bool is_wait, api_wait_request *out, char *err,
                    size_t err_size)
{
    memset(out, 0, sizeof(*out));
    out->timeout = -1;
    if (!json_is_object(body)) {
        snprintf(err, err_size, "the body must be a JSON object");
        return API_DECODE_BAD;
    }
    json_t *refs = json_object_get(body, "refs");
    size_t n = json_array_size(refs);
    const char **strs = malloc((n + 1) * sizeof(*strs));
    if (!strs)
        return API_DECODE_NOMEM;
    for (size_t i = 0; i < n; i++) /* NULL for what is not a string */
        strs[i] = json_string_value(json_array_get(refs, i));
    return api_decode_wait_parts(body, json_is_array(refs), strs, n, is_wait, out, err,
                                 err_size);
}

int api_decode_wait_parts(json_t *members, bool refs_is_list, const char **refs, size_t n,
                          bool is_wait, api_wait_request *out, char *err, size_t err_size)
{
    static const char *const GET_KEYS[] = {"refs", "timeout", NULL};
    static const char *const WAIT_KEYS[] = {"refs", "timeout", "num_returns", "fetch_local",
                                            NULL};
    char *text = out->text;
    memset(out, 0, sizeof(*out));
    out->timeout = -1;
    out->refs = refs; /* released with out on every error */
    out->text = text;
    int bad = API_DECODE_BAD;
    if (api_decode_only_keys(members, is_wait ? WAIT_KEYS : GET_KEYS, "the body", err,
                             err_size))
        goto fail;
    if (!refs_is_list || n > API_REFS_MAX) {
        snprintf(err, err_size, "refs must be a list of at most %d refs", API_REFS_MAX);
        goto fail;
    }
    json_t *fl = json_object_get(members, "fetch_local");
    if (fl && !json_is_boolean(fl)) {
        snprintf(err, err_size, "fetch_local must be true or false");
        goto fail;
    }
    json_t *t = json_object_get(members, "timeout");
    if (t && !json_is_null(t)) {
        if (!json_is_number(t) || json_number_value(t) < 0) {
            snprintf(err, err_size, "timeout must be a number of seconds >= 0");
            goto fail;
        }
        out->timeout = json_number_value(t);
    }
    for (size_t i = 0; i < n; i++) {
        if (!refs[i] || !rt_ref_valid(refs[i])) {
            snprintf(err, err_size, "refs[%zu] is not a ref (1 to 64 characters of [A-Za-z0-9_-])",
                     i);
            goto fail;
        }
    }
    json_int_t num = 1;
    if (is_wait) {
        json_t *k = json_object_get(members, "num_returns");
        if (k && !json_is_integer(k)) {
            snprintf(err, err_size, "num_returns must be an integer");
            goto fail;
        }
        if (k)
            num = json_integer_value(k);
        if (n > 0 && (num <= 0 || (size_t)num > n)) {
            snprintf(err, err_size, "num_returns must be between 1 and the number of refs (%zu)",
                     n);
            goto fail;
        }
    }
    out->n = n;
    out->num_returns = n == 0 ? 1 : (size_t)num; /* ray.wait([]) answers at once */
    if (is_wait && n > 1) {
        /* ray.wait refuses duplicates */
        size_t dup = 0;
        int found = find_duplicate(refs, n, &dup);
        if (found > 0)
            snprintf(err, err_size, "ref %s appears more than once in refs", refs[dup]);
        if (found != 0) {
            bad = found < 0 ? API_DECODE_NOMEM : API_DECODE_BAD;
            goto fail;
        }
    }
    return API_DECODE_OK;
fail:
    api_wait_request_release(out);
    return bad;
}

/* ---- tasks -------------------------------------------------------------------------- */

/* options.result_ttl: seconds >= 0 (0: none, even when RAYD_RESULT_TTL sets a default).
 * Writes what rt_task_spec.result_ttl means (> 0 seconds, < 0 none). */
static int decode_result_ttl(json_t *v, double *out, char *err, size_t err_size)
{
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e9) {
        snprintf(err, err_size, "options.result_ttl must be a number of seconds >= 0 (0: none)");
        return API_DECODE_BAD;
    }
    *out = json_number_value(v) > 0 ? json_number_value(v) : -1;
    return API_DECODE_OK;
}

int api_decode_task(json_t *task, rt_task_spec *spec, char *err, size_t err_size)
{
    static const char *const KEYS[] = {"function", "args", "kwargs", "options", NULL};
    memset(spec, 0, sizeof(*spec));
    spec->num_returns = 1;
    spec->max_retries = DEFAULT_MAX_RETRIES;
    if (!json_is_object(task)) {
        snprintf(err, err_size, "a task must be an object {\"function\", \"args\", ...}");
        return API_DECODE_BAD;
    }
    const char *key;
    json_t *v;
    json_object_foreach(task, key, v)
    {
        int known = 0;
        for (const char *const *k = KEYS; *k; k++)
            known |= strcmp(*k, key) == 0;
        if (!known) {
            snprintf(err, err_size, "unknown member '%.64s'", key);
            return API_DECODE_BAD;
        }
    }
    json_t *fn = json_object_get(task, "function");
    if (!json_is_string(fn)) {
        snprintf(err, err_size, "function must be a string");
        return API_DECODE_BAD;
    }
    spec->function = json_string_value(fn);
    spec->args = json_object_get(task, "args");
    spec->kwargs = json_object_get(task, "kwargs");
    if (spec->args && json_is_null(spec->args))
        spec->args = NULL;
    if (spec->kwargs && json_is_null(spec->kwargs))
        spec->kwargs = NULL;
    if (spec->args && !json_is_array(spec->args)) {
        snprintf(err, err_size, "args must be a list");
        return API_DECODE_BAD;
    }
    if (spec->kwargs && !json_is_object(spec->kwargs)) {
        snprintf(err, err_size, "kwargs must be an object");
        return API_DECODE_BAD;
    }
    return api_decode_task_options(json_object_get(task, "options"), spec, err, err_size);
}

int api_decode_task_options(json_t *options, rt_task_spec *spec, char *err, size_t err_size)
{
    static const char *const OPTION_KEYS[] = {"max_retries", "retry_exceptions", "timeout",
                                              "num_returns", "name", "result_ttl", NULL};
    const char *key;
    json_t *v;
    if (!options || json_is_null(options))
        return API_DECODE_OK;
    if (!json_is_object(options)) {
        snprintf(err, err_size, "options must be an object");
        return API_DECODE_BAD;
    }
    json_object_foreach(options, key, v)
    {
        int known = 0;
        for (const char *const *k = OPTION_KEYS; *k; k++)
            known |= strcmp(*k, key) == 0;
        if (!known) {
            snprintf(err, err_size, "unknown option '%.64s'", key);
            return API_DECODE_BAD;
        }
    }
    if ((v = json_object_get(options, "num_returns"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > RT_TASK_NUM_RETURNS_MAX) {
            snprintf(err, err_size, "options.num_returns must be an integer from 1 to %d",
                     RT_TASK_NUM_RETURNS_MAX);
            return API_DECODE_BAD;
        }
        spec->num_returns = (unsigned)json_integer_value(v);
    }
    if ((v = json_object_get(options, "max_retries"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000) {
            snprintf(err, err_size, "options.max_retries must be an integer from 0 to 1000");
            return API_DECODE_BAD;
        }
        spec->max_retries = (int)json_integer_value(v);
    }
    if ((v = json_object_get(options, "retry_exceptions"))) {
        if (!json_is_boolean(v)) {
            snprintf(err, err_size, "options.retry_exceptions must be true or false");
            return API_DECODE_BAD;
        }
        spec->retry_exceptions = json_is_true(v);
    }
    if ((v = json_object_get(options, "timeout")) && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0) {
            snprintf(err, err_size, "options.timeout must be a number of seconds >= 0");
            return API_DECODE_BAD;
        }
        spec->timeout = json_number_value(v);
    }
    if ((v = json_object_get(options, "name")) && !json_is_null(v)) {
        if (!json_is_string(v)) {
            snprintf(err, err_size, "options.name must be a string");
            return API_DECODE_BAD;
        }
        spec->name = json_string_value(v);
    }
    if ((v = json_object_get(options, "result_ttl")) && !json_is_null(v) &&
        decode_result_ttl(v, &spec->result_ttl, err, err_size) != API_DECODE_OK)
        return API_DECODE_BAD;
    return API_DECODE_OK;
}

int api_decode_task_batch(json_t *body, rt_task_spec **specs, size_t *n, char *err,
                          size_t err_size)
{
    static const char *const KEYS[] = {"tasks", NULL};
    *specs = NULL;
    *n = 0;
    if (!json_is_object(body)) {
        snprintf(err, err_size, "the body must be {\"tasks\": [task, ...]}");
        return API_DECODE_BAD;
    }
    if (api_decode_only_keys(body, KEYS, "the body", err, err_size))
        return API_DECODE_BAD;
    json_t *list = json_object_get(body, "tasks");
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > API_TASKS_BATCH_MAX) {
        snprintf(err, err_size, "tasks must be a list of 1 to %d tasks", API_TASKS_BATCH_MAX);
        return API_DECODE_BAD;
    }
    size_t count = json_array_size(list);
    rt_task_spec *out = calloc(count, sizeof(*out));
    if (!out)
        return API_DECODE_NOMEM;
    for (size_t i = 0; i < count; i++) {
        char why[200];
        if (api_decode_task(json_array_get(list, i), &out[i], why, sizeof(why))) {
            snprintf(err, err_size, "tasks[%zu]: %s", i, why);
            free(out);
            return API_DECODE_BAD;
        }
    }
    *specs = out;
    *n = count;
    return API_DECODE_OK;
}

/* ---- actors ------------------------------------------------------------------------- */

int api_decode_actor(json_t *body, rt_actor_spec *spec, bool *detached, char *err,
                     size_t err_size)
{
    static const char *const KEYS[] = {"class", "args", "kwargs", "name", "get_if_exists",
                                       "options", NULL};
    static const char *const OPTION_KEYS[] = {"max_restarts", "max_pending_calls", "lifetime",
                                              "node", NULL};
    memset(spec, 0, sizeof(*spec));
    *detached = false;
    spec->max_pending_calls = -1;
    if (!json_is_object(body)) {
        snprintf(err, err_size, "the body must be {\"class\", \"args\", ...}");
        return API_DECODE_BAD;
    }
    if (api_decode_only_keys(body, KEYS, "the body", err, err_size))
        return API_DECODE_BAD;
    json_t *v = json_object_get(body, "class");
    if (!json_is_string(v)) {
        snprintf(err, err_size, "class must be a string");
        return API_DECODE_BAD;
    }
    spec->class_name = json_string_value(v);
    spec->args = json_object_get(body, "args");
    spec->kwargs = json_object_get(body, "kwargs");
    if (spec->args && json_is_null(spec->args))
        spec->args = NULL;
    if (spec->kwargs && json_is_null(spec->kwargs))
        spec->kwargs = NULL;
    if ((spec->args && !json_is_array(spec->args)) ||
        (spec->kwargs && !json_is_object(spec->kwargs))) {
        snprintf(err, err_size, "args must be a list and kwargs an object");
        return API_DECODE_BAD;
    }
    if ((v = json_object_get(body, "name")) && !json_is_null(v)) {
        if (!json_is_string(v)) {
            snprintf(err, err_size, "name must be a string");
            return API_DECODE_BAD;
        }
        spec->name = json_string_value(v);
    }
    if ((v = json_object_get(body, "get_if_exists"))) {
        if (!json_is_boolean(v)) {
            snprintf(err, err_size, "get_if_exists must be true or false");
            return API_DECODE_BAD;
        }
        spec->get_if_exists = json_is_true(v);
    }
    json_t *options = json_object_get(body, "options");
    if (!options || json_is_null(options))
        return API_DECODE_OK;
    if (!json_is_object(options)) {
        snprintf(err, err_size, "options must be an object");
        return API_DECODE_BAD;
    }
    if (api_decode_only_keys(options, OPTION_KEYS, "options", err, err_size))
        return API_DECODE_BAD;
    if ((v = json_object_get(options, "max_restarts"))) {
        if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > 1000000) {
            snprintf(err, err_size, "options.max_restarts must be an integer >= -1 (-1: no limit)");
            return API_DECODE_BAD;
        }
        spec->max_restarts = (int)json_integer_value(v);
    }
    if ((v = json_object_get(options, "max_pending_calls"))) {
        if (!json_is_integer(v) || json_integer_value(v) == 0 || json_integer_value(v) < -1 ||
            json_integer_value(v) > 100000000) {
            snprintf(err, err_size,
                     "options.max_pending_calls must be an integer >= 1, or -1 for no limit");
            return API_DECODE_BAD;
        }
        spec->max_pending_calls = (long)json_integer_value(v);
    }
    /* options.node is read by the handler (api/actors_cluster.c); only its type here. */
    if ((v = json_object_get(options, "node")) && !json_is_null(v) &&
        (!json_is_string(v) || !rt_ref_node_tag_valid(json_string_value(v)))) {
        snprintf(err, err_size, "options.node must be a node tag (as /v1/status lists them)");
        return API_DECODE_BAD;
    }
    if ((v = json_object_get(options, "lifetime")) && !json_is_null(v)) {
        const char *life = json_string_value(v);
        if (!life || (strcmp(life, "detached") != 0 && strcmp(life, "non_detached") != 0)) {
            snprintf(err, err_size, "options.lifetime must be \"detached\" or \"non_detached\"");
            return API_DECODE_BAD;
        }
        *detached = strcmp(life, "detached") == 0;
    }
    return API_DECODE_OK;
}

int api_decode_call(json_t *body, json_t **args, json_t **kwargs, double *result_ttl, char *err,
                    size_t err_size)
{
    static const char *const KEYS[] = {"args", "kwargs", "options", NULL};
    static const char *const OPTION_KEYS[] = {"result_ttl", NULL};
    *args = *kwargs = NULL;
    *result_ttl = 0;
    if (!body)
        return API_DECODE_OK;
    if (!json_is_object(body)) {
        snprintf(err, err_size, "the body must be {\"args\", \"kwargs\"}");
        return API_DECODE_BAD;
    }
    if (api_decode_only_keys(body, KEYS, "the body", err, err_size))
        return API_DECODE_BAD;
    *args = json_object_get(body, "args");
    *kwargs = json_object_get(body, "kwargs");
    if (*args && json_is_null(*args))
        *args = NULL;
    if (*kwargs && json_is_null(*kwargs))
        *kwargs = NULL;
    if ((*args && !json_is_array(*args)) || (*kwargs && !json_is_object(*kwargs))) {
        snprintf(err, err_size, "args must be a list and kwargs an object");
        return API_DECODE_BAD;
    }
    json_t *options = json_object_get(body, "options"), *v;
    if (!options || json_is_null(options))
        return API_DECODE_OK;
    if (!json_is_object(options)) {
        snprintf(err, err_size, "options must be an object");
        return API_DECODE_BAD;
    }
    if (api_decode_only_keys(options, OPTION_KEYS, "options", err, err_size))
        return API_DECODE_BAD;
    if ((v = json_object_get(options, "result_ttl")) && !json_is_null(v))
        return decode_result_ttl(v, result_ttl, err, err_size);
    return API_DECODE_OK;
}

/* ---- objects ------------------------------------------------------------------------ */

void api_free_bufs(rt_buf **bufs, size_t n)
{
    for (size_t i = 0; bufs && i < n; i++)
        rt_buf_decref(bufs[i]);
    free(bufs);
}

int api_decode_object_batch(json_t *body, rt_buf ***bufs, size_t *n, char *err,
                            size_t err_size)
{
    static const char *const KEYS[] = {"objects", NULL};
    *bufs = NULL;
    *n = 0;
    if (!json_is_object(body)) {
        snprintf(err, err_size, "the body must be {\"objects\": [value, ...]}");
        return API_DECODE_BAD;
    }
    if (api_decode_only_keys(body, KEYS, "the body", err, err_size))
        return API_DECODE_BAD;
    json_t *objects = json_object_get(body, "objects");
    if (!json_is_array(objects) || json_array_size(objects) == 0 ||
        json_array_size(objects) > API_OBJECTS_BATCH_MAX) {
        snprintf(err, err_size, "objects must be a list of 1 to %d values",
                 API_OBJECTS_BATCH_MAX);
        return API_DECODE_BAD;
    }
    size_t count = json_array_size(objects);
    rt_buf **out = calloc(count, sizeof(*out));
    if (!out)
        return API_DECODE_NOMEM;
    for (size_t i = 0; i < count; i++) {
        char why[200];
        out[i] = api_value_to_buf(json_array_get(objects, i), why, sizeof(why));
        if (!out[i]) {
            snprintf(err, err_size, "objects[%zu]: %s", i, why);
            api_free_bufs(out, i);
            return API_DECODE_BAD;
        }
    }
    *bufs = out;
    *n = count;
    return API_DECODE_OK;
}
