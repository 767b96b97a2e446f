/* JSON <-> stored value conversions and object metadata. */
#include "api/values.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base64.h"
#include "runtime/clock.h"

rt_buf *api_value_to_buf(json_t *value, char *err, size_t err_size)
{
    json_t *b64 = json_is_object(value) ? json_object_get(value, "$bytes") : NULL;
    if (!b64) {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text) {
            snprintf(err, err_size, "the value cannot be serialised");
            return NULL;
        }
        rt_buf *buf = rt_buf_from(text, strlen(text), "application/json");
        free(text);
        if (!buf)
            snprintf(err, err_size, "out of memory");
        return buf;
    }
    const char *key;
    json_t *member;
    json_object_foreach(value, key, member)
    {
        if (strcmp(key, "$bytes") != 0 && strcmp(key, "content_type") != 0) {
            snprintf(err, err_size, "a {\"$bytes\"} value may only have content_type beside it, "
                                    "not '%.64s'",
                     key);
            return NULL;
        }
    }
    if (!json_is_string(b64)) {
        snprintf(err, err_size, "$bytes must be a base64 string");
        return NULL;
    }
    json_t *ct = json_object_get(value, "content_type");
    if (ct && (!json_is_string(ct) || json_string_length(ct) == 0 ||
               json_string_length(ct) > RT_CONTENT_TYPE_MAX)) {
        snprintf(err, err_size, "content_type must be a non-empty string of at most %d bytes",
                 RT_CONTENT_TYPE_MAX);
        return NULL;
    }
    /* It becomes a header of the object's GET: header text, no control characters (and no
     * NUL inside, which would cut it short). */
    if (ct && (strlen(json_string_value(ct)) != json_string_length(ct) ||
               !rt_content_type_valid(json_string_value(ct)))) {
        snprintf(err, err_size, "content_type must be valid header text, without control "
                                "characters");
        return NULL;
    }
    size_t len = json_string_length(b64);
    rt_buf *buf = rt_buf_new(rt_base64_decoded_max(len), ct ? json_string_value(ct) : NULL);
    if (!buf) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    long n = rt_base64_decode(json_string_value(b64), len, buf->data);
    if (n < 0) {
        rt_buf_decref(buf);
        snprintf(err, err_size, "$bytes is not valid base64");
        return NULL;
    }
    rt_buf *fitted = rt_buf_resize(buf, (size_t)n);
    if (!fitted) {
        rt_buf_decref(buf);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    return fitted;
}

int api_value_put_in(json_t *entry, const rt_buf *buf)
{
    json_object_set_new(entry, "content_type", json_string(buf->content_type));
    if (rt_content_type_is_json(buf->content_type)) {
        json_t *v = json_loadb(buf->data, buf->size, JSON_DECODE_ANY, NULL);
        if (v) {
            json_object_set_new(entry, "value", v);
            return 0;
        }
    }
    char *text = malloc(rt_base64_encoded_size(buf->size));
    if (!text)
        return -1;
    size_t n = rt_base64_encode(buf->data, buf->size, text);
    json_t *s = json_stringn_nocheck(text, n);
    free(text);
    if (!s)
        return -1;
    json_object_set_new(entry, "$bytes", s);
    return 0;
}

const char *api_value_lost_reason(rt_lost_reason reason)
{
    switch (reason) {
    case RT_LOST_EVICTED: return "evicted";
    case RT_LOST_EXPIRED: return "expired";
    default: return "freed";
    }
}

json_t *api_value_meta(const rt_object_view *v)
{
    char created[40], expires[40];
    json_t *m = json_object();
    json_object_set_new(m, "ref", json_string(v->ref));
    json_object_set_new(m, "state", json_string(rt_object_state_name(v->state)));
    json_object_set_new(m, "size", json_integer((json_int_t)v->size));
    json_object_set_new(m, "content_type",
                        v->content_type ? json_string(v->content_type) : json_null());
    json_object_set_new(m, "created_at",
                        json_string(rt_clock_format(v->created_at, created, sizeof(created))));
    json_object_set_new(m, "pinned", json_boolean(v->pins > 0));
    json_object_set_new(m, "pins", json_integer(v->pins));
    json_object_set_new(m, "expires_at",
                        v->expires_at > 0
                            ? json_string(rt_clock_format(v->expires_at, expires, sizeof(expires)))
                            : json_null());
    if (v->state == RT_OBJ_LOST)
        json_object_set_new(m, "lost_reason", json_string(api_value_lost_reason(v->lost_reason)));
    if (v->state == RT_OBJ_READY)
        json_object_set_new(m, "spilled", json_boolean(v->spilled != NULL));
    return m;
}
