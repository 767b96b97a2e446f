/* Answering and reading requests: the helpers every handler uses. */
#include "api/request.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "api/decode.h"
#include "api/idempotency.h"
#include "api/problem.h"

/* Keeps an answer's body when the request carries an Idempotency-Key: part of buf (a new
 * reference, no copy) when the answer is a stored buffer, else a copy of data. */
static void keep_body(api_request *req, rt_buf *buf, const void *data, size_t len)
{
    if (!req->idem_entry)
        return;
    rt_buf_decref(req->idem_buf);
    if (buf) {
        req->idem_buf = rt_buf_incref(buf);
        req->idem_offset = (size_t)((const char *)data - buf->data);
        req->idem_shared = true;
    } else {
        req->idem_buf = rt_buf_from(data, len, NULL);
        req->idem_offset = 0;
        req->idem_shared = false;
    }
    req->idem_len = req->idem_buf ? len : 0;
}

/* "wait=N" as %g prints it; whole seconds (the usual case) without printf, which was a
 * good part of a waited task's reply. */
static void format_wait_applied(char *out, size_t size, double seconds)
{
    if (seconds >= 1 && seconds < 1e6 && seconds == (double)(unsigned)seconds) {
        char digits[8];
        unsigned v = (unsigned)seconds, n = 0;
        while (v) {
            digits[n++] = (char)('0' + v % 10);
            v /= 10;
        }
        memcpy(out, "wait=", 5);
        for (unsigned i = 0; i < n; i++)
            out[5 + i] = digits[n - 1 - i];
        out[5 + n] = '\0';
        return;
    }
    snprintf(out, size, "wait=%g", seconds);
}

enum MHD_Result api_reply(api_request *req, unsigned status, struct MHD_Response *resp,
                          const char *content_type)
{
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == 405 && req->allow[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, req->allow);
    if (req->www_authenticate)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"rayd\"");
    if (req->retry_after) {
        char seconds[16];
        snprintf(seconds, sizeof(seconds), "%u", req->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    }
    if (req->prefer_wait > 0) {
        char applied[48];
        format_wait_applied(applied, sizeof(applied), req->prefer_wait);
        MHD_add_response_header(resp, "Preference-Applied", applied);
    }
    if (req->ray_ref[0]) {
        static const char prefix[] = "/v1/objects/";
        char location[sizeof(prefix) + RT_REF_SIZE];
        memcpy(location, prefix, sizeof(prefix) - 1);
        memcpy(location + sizeof(prefix) - 1, req->ray_ref, strlen(req->ray_ref) + 1);
        MHD_add_response_header(resp, "X-Ray-Ref", req->ray_ref);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    }
    if (req->idem_entry &&
        api_idempotency_record(req->ctx->idempotency, req, status, resp, content_type)) {
        /* Cluster mode: sent once Redis holds the answer, so that a retry reaching another
         * node right after it replays it (api_idempotency_send_held). */
        req->idem_held = resp;
        req->idem_held_status = status;
        req->replied = true;
        req->status = status;
        return MHD_YES;
    }
    enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    req->replied = true;
    req->status = status;
    return r;
}

struct MHD_Response *api_response_text(api_request *req, char *text, size_t len)
{
    if (!text)
        return NULL;
    req->bytes_out = len;
    keep_body(req, NULL, text, len);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        free(text);
    return resp;
}

struct MHD_Response *api_response_json(api_request *req, json_t *json)
{
    char *text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    return api_response_text(req, text, text ? strlen(text) : 0);
}

enum MHD_Result api_reply_page(api_request *req, const char *key, json_t *items,
                               unsigned long long next)
{
    char next_text[24];
    snprintf(next_text, sizeof(next_text), "%llu", next);
    return api_reply_json(req, 200,
                          json_pack("{s:o,s:o}", key, items, "next_cursor",
                                    next ? json_string(next_text) : json_null()));
}

size_t api_json_escape_into(char *out, const char *s, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && max > 0) {
        /* a run of bytes that need no escape, copied at once */
        const unsigned char *run = p;
        while (max > 0 && *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') {
            p++;
            max--;
        }
        memcpy(out + o, run, (size_t)(p - run));
        o += (size_t)(p - run);
        if (!*p || max == 0)
            break;
        size_t n;
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
            n = 1;
        } else if (*p >= 0x80 && (n = rt_utf8_sequence(p)) != 0 && n <= max) {
            memcpy(out + o, p, n);
            o += n;
        } else if (*p >= 0x80) {
            memcpy(out + o, "\\ufffd", 6);
            o += 6;
            n = 1;
        } else {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[*p >> 4];
            out[o + 5] = hex[*p & 15];
            o += 6;
            n = 1;
        }
        p += n;
        max -= n;
    }
    return o;
}

enum MHD_Result api_reply_json(api_request *req, unsigned status, json_t *json)
{
    struct MHD_Response *resp = api_response_json(req, json);
    if (!resp)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    return api_reply(req, status, resp, "application/json");
}

enum MHD_Result api_reply_json_text(api_request *req, unsigned status, char *text, size_t len)
{
    struct MHD_Response *resp = api_response_text(req, text, len);
    if (!resp)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    return api_reply(req, status, resp, "application/json");
}

enum MHD_Result api_reply_empty(api_request *req, unsigned status)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    return api_reply(req, status, resp, NULL);
}

enum MHD_Result api_reply_static(api_request *req, unsigned status, const char *text,
                                 size_t len, const char *content_type)
{
    req->bytes_out = len;
    keep_body(req, NULL, text, len);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_PERSISTENT);
    return api_reply(req, status, resp, content_type);
}

static void release_buf(void *cls)
{
    rt_buf_decref(cls);
}

struct MHD_Response *api_response_from_buf(api_request *req, rt_buf *buf, size_t offset,
                                           size_t len)
{
    req->bytes_out = len;
    keep_body(req, buf, buf->data + offset, len);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        len, buf->data + offset, release_buf, buf);
    if (resp)
        rt_buf_incref(buf);
    return resp;
}

const char *api_header(api_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *api_query(api_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

void api_read_prefer_wait(api_request *req)
{
    req->prefer_wait = 0;
    const char *prefer = api_header(req, "Prefer");
    if (!prefer)
        return;
    /* Preferences are comma-separated tokens; find "wait=N" (case-insensitive name). */
    for (const char *p = prefer; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (strncasecmp(p, "wait", 4) == 0) {
            const char *q = p + 4;
            while (*q == ' ')
                q++;
            if (*q == '=') {
                char num[32];
                size_t n = strcspn(q + 1, ",; ");
                if (n > 0 && n < sizeof(num)) {
                    memcpy(num, q + 1, n);
                    num[n] = '\0';
                    double v;
                    if (api_parse_seconds(num, &v) == 0)
                        req->prefer_wait = v < req->ctx->config.max_wait
                                               ? v
                                               : req->ctx->config.max_wait;
                }
                return;
            }
        }
        while (*p && *p != ',')
            p++;
    }
}

int api_parse_seconds(const char *text, double *out)
{
    if (!text || !*text)
        return -1;
    /* Whole seconds (Prefer: wait=5, the usual case) without strtod. */
    unsigned whole = 0;
    size_t n = 0;
    while (n < 9 && text[n] >= '0' && text[n] <= '9')
        whole = whole * 10 + (unsigned)(text[n++] - '0');
    if (!text[n]) {
        *out = whole;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (*end || errno || !isfinite(v) || v < 0)
        return -1;
    /* strtod also takes hex and "inf"; only plain decimal numbers are seconds here. */
    for (const char *p = text; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' ||
              *p == '-'))
            return -1;
    *out = v;
    return 0;
}

int api_query_seconds(api_request *req, const char *name, double dflt, double *out)
{
    const char *text = api_query(req, name);
    if (!text) {
        *out = dflt;
        return 0;
    }
    if (api_parse_seconds(text, out) != 0) {
        api_problemf(req, 400, "BadRequest", "%s must be a number of seconds >= 0, not '%.64s'",
                     name, text);
        return -1;
    }
    return 0;
}

int api_query_uint(api_request *req, const char *name, unsigned long long min,
                   unsigned long long max, unsigned long long *out)
{
    const char *text = api_query(req, name);
    if (!text)
        return 0;
    unsigned long long v = 0;
    int ok = *text && strlen(text) <= 19;
    for (const char *p = text; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9';
        v = v * 10 + (unsigned long long)(*p - '0');
    }
    if (!ok || v < min || v > max) {
        api_problemf(req, 400, "BadRequest", "%s must be an integer from %llu to %llu", name, min,
                     max);
        return -1;
    }
    *out = v;
    return 0;
}

int api_body_json(api_request *req)
{
    if (req->json)
        return 0;
    if (!req->body || req->body_len == 0) {
        api_problem(req, 400, "BadRequest", "the request needs a JSON body", NULL);
        return -1;
    }
    json_error_t error;
    req->json = api_decode_body(req->body, req->body_len, &error);
    if (!req->json) {
        api_problemf(req, 400, "BadRequest", "the body is not valid JSON: %s at line %d column %d",
                     error.text, error.line, error.column);
        return -1;
    }
    return 0;
}

int api_json_only_keys(api_request *req, json_t *obj, const char *const *allowed,
                       const char *what)
{
    char err[200];
    if (api_decode_only_keys(obj, allowed, what, err, sizeof(err)) == API_DECODE_OK)
        return 0;
    api_problem(req, 400, "BadRequest", err, NULL);
    return -1;
}

json_t *api_json_take(json_t *obj, const char *key, json_t *value)
{
    if (!value)
        return NULL;
    json_incref(value);
    json_object_del(obj, key);
    return value;
}
