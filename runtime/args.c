/* Ref arguments: detection, submission checks, resolution to values. */
#include "runtime/args.h"

#include <stdio.h>
#include <stdlib.h>

#include "runtime/base64.h"

bool rt_args_is_ref(json_t *v)
{
    return json_is_object(v) && json_object_size(v) == 1 &&
           json_is_string(json_object_get(v, "$ref"));
}

size_t rt_args_count_refs(json_t *args, json_t *kwargs)
{
    size_t n = 0, i;
    const char *key;
    json_t *v;
    json_array_foreach(args, i, v) n += rt_args_is_ref(v);
    json_object_foreach(kwargs, key, v) n += rt_args_is_ref(v);
    return n;
}

void rt_args_collect_refs(json_t *args, json_t *kwargs, char (*refs)[RT_REF_SIZE])
{
    size_t d = 0, i;
    const char *key;
    json_t *v;
    json_array_foreach(args, i, v) if (rt_args_is_ref(v)) snprintf(
        refs[d++], RT_REF_SIZE, "%s", json_string_value(json_object_get(v, "$ref")));
    json_object_foreach(kwargs, key, v) if (rt_args_is_ref(v)) snprintf(
        refs[d++], RT_REF_SIZE, "%s", json_string_value(json_object_get(v, "$ref")));
}

/* One value that looks like a ref argument. The argument is named in messages as
 * args[index] or kwargs.key (key non-NULL). */
static rt_status check_one(rt_store *store, json_t *v, size_t index, const char *key,
                           char *err, size_t err_size)
{
    json_t *r = json_is_object(v) ? json_object_get(v, "$ref") : NULL;
    if (!r)
        return RT_OK;
    char label[96];
    if (key)
        snprintf(label, sizeof(label), "kwargs.%.64s", key);
    else
        snprintf(label, sizeof(label), "args[%zu]", index);
    if (json_object_size(v) != 1 || !json_is_string(r) || !rt_ref_valid(json_string_value(r))) {
        snprintf(err, err_size, "%s: a ref argument must be {\"$ref\": \"<ref>\"}", label);
        return RT_EINVAL;
    }
    rt_object_view view;
    rt_status st = rt_store_peek(store, json_string_value(r), &view);
    rt_object_view_release(&view);
    if (st == RT_ENOTFOUND) {
        snprintf(err, err_size, "%s: ref %s does not exist", label, json_string_value(r));
        return RT_EINVAL;
    }
    return RT_OK;
}

rt_status rt_args_check(rt_store *store, json_t *args, json_t *kwargs, char *err,
                        size_t err_size)
{
    size_t i;
    const char *key;
    json_t *v;
    json_array_foreach(args, i, v) if (check_one(store, v, i, NULL, err, err_size) != RT_OK)
        return RT_EINVAL;
    json_object_foreach(kwargs, key, v) if (check_one(store, v, 0, key, err, err_size) != RT_OK)
        return RT_EINVAL;
    return RT_OK;
}

json_t *rt_args_value_of(const rt_object_view *v)
{
    if (rt_content_type_is_json(v->content_type)) {
        json_t *parsed = json_loadb(v->buf->data, v->buf->size, JSON_DECODE_ANY, NULL);
        if (parsed)
            return parsed;
    }
    char *b64 = malloc(rt_base64_encoded_size(v->size));
    if (!b64)
        return NULL;
    size_t n = rt_base64_encode(v->buf->data, v->size, b64);
    json_t *out = json_pack("{s:s%,s:s}", "$bytes", b64, n, "content_type", v->content_type);
    free(b64);
    return out;
}

/* One argument: plain values are shared, ref arguments become their value. NULL with
 * *cause set when the ref holds an error or is gone. */
static json_t *resolve_one(rt_store *store, json_t *arg, rt_error **cause)
{
    if (!rt_args_is_ref(arg))
        return json_incref(arg);
    const char *ref = json_string_value(json_object_get(arg, "$ref"));
    rt_object_view v;
    rt_status st = rt_store_peek(store, ref, &v);
    json_t *out = NULL;
    if (st == RT_OK && v.state == RT_OBJ_READY) {
        out = rt_args_value_of(&v);
        if (!out)
            *cause = rt_error_newf(RT_ERR_TASK_ERROR, NULL, NULL,
                                   "out of memory reading argument %s", ref);
    } else if (st == RT_OK && v.state == RT_OBJ_ERROR) {
        *cause = rt_error_incref(v.error);
    } else {
        json_t *fields = json_pack("{s:s}", "ref", ref);
        *cause = rt_error_newf(RT_ERR_OBJECT_LOST, fields, NULL, "argument object %s was %s",
                               ref,
                               st == RT_ENOTFOUND ? "forgotten"
                               : v.lost_reason == RT_LOST_EVICTED ? "evicted"
                               : v.lost_reason == RT_LOST_EXPIRED ? "expired"
                                                                  : "freed");
        json_decref(fields);
    }
    rt_object_view_release(&v);
    return out;
}

rt_status rt_args_resolve(rt_store *store, json_t *args, json_t *kwargs, json_t **args_out,
                          json_t **kwargs_out, rt_error **cause)
{
    json_t *ra = json_array(), *rk = json_object();
    size_t i;
    const char *key;
    json_t *v;
    json_array_foreach(args, i, v)
    {
        json_t *r = resolve_one(store, v, cause);
        if (!r)
            goto fail;
        json_array_append_new(ra, r);
    }
    json_object_foreach(kwargs, key, v)
    {
        json_t *r = resolve_one(store, v, cause);
        if (!r)
            goto fail;
        json_object_set_new(rk, key, r);
    }
    *args_out = ra;
    *kwargs_out = rk;
    return RT_OK;
fail:
    json_decref(ra);
    json_decref(rk);
    *args_out = *kwargs_out = NULL;
    return RT_EINVAL;
}
