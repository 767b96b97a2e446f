/* Stored error values: kind, message, extra fields, and an optional cause chain; their
 * sizes for the object store's accounting, and bounded summaries for long-lived records. */
#include "runtime/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rt_error {
    int refs; /* atomic */
    rt_error_kind kind;
    rt_error *cause;    /* owned reference or NULL */
    json_t *fields;     /* owned, a JSON object */
    size_t bytes;       /* rt_error_size: set at creation (and by summary, before sharing) */
    size_t chain_bytes; /* bytes + the cause's chain_bytes, saturated */
    size_t held;        /* atomic: see rt_error_hold */
    char message[];
};

/* What a JSON object of fields costs, roughly: its text plus a hash table entry and a
 * value per member. An empty object still costs its allocation. */
static size_t fields_bytes(json_t *fields)
{
    size_t members = json_object_size(fields);
    if (members == 0)
        return 64;
    return 64 + json_dumpb(fields, NULL, 0, JSON_COMPACT) + 64 * members;
}

static size_t add_saturated(size_t a, size_t b)
{
    return a > (size_t)-1 - b ? (size_t)-1 : a + b;
}

/* Sets bytes and chain_bytes from the message, the fields and the cause. */
static void measure(rt_error *err)
{
    err->bytes = sizeof(*err) + strlen(err->message) + 1 + fields_bytes(err->fields);
    err->chain_bytes = add_saturated(err->bytes, err->cause ? err->cause->chain_bytes : 0);
}

/* A new error of kind with len bytes of message (copied), fields stolen (a JSON object),
 * cause stolen. NULL when out of memory (fields and cause are released then). */
static rt_error *error_make(rt_error_kind kind, const char *message, size_t len, json_t *fields,
                            rt_error *cause)
{
    rt_error *err = fields ? malloc(sizeof(*err) + len + 1) : NULL;
    if (!err) {
        json_decref(fields);
        rt_error_decref(cause);
        return NULL;
    }
    err->refs = 1;
    err->kind = kind;
    err->cause = cause;
    err->fields = fields;
    err->held = 0;
    memcpy(err->message, message, len);
    err->message[len] = '\0';
    measure(err);
    return err;
}

rt_error *rt_error_new(rt_error_kind kind, const char *message, json_t *fields,
                       rt_error *cause)
{
    if (!message)
        message = "";
    json_t *copy = fields && json_is_object(fields) ? json_deep_copy(fields) : json_object();
    return error_make(kind, message, strlen(message), copy, rt_error_incref(cause));
}

rt_error *rt_error_newf(rt_error_kind kind, json_t *fields, rt_error *cause, const char *fmt,
                        ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    return rt_error_new(kind, text, fields, cause);
}

rt_error *rt_error_incref(rt_error *err)
{
    if (err)
        __atomic_add_fetch(&err->refs, 1, __ATOMIC_RELAXED);
    return err;
}

void rt_error_decref(rt_error *err)
{
    /* Iterative so that a long cause chain cannot overflow the stack. */
    while (err && __atomic_sub_fetch(&err->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        rt_error *cause = err->cause;
        json_decref(err->fields);
        free(err);
        err = cause;
    }
}

rt_error_kind rt_error_kind_of(const rt_error *err)
{
    return err->kind;
}

const char *rt_error_message(const rt_error *err)
{
    return err->message;
}

rt_error *rt_error_cause(const rt_error *err)
{
    return err->cause;
}

json_t *rt_error_fields(const rt_error *err)
{
    return err->fields;
}

const char *rt_error_kind_name(rt_error_kind kind)
{
    switch (kind) {
    case RT_ERR_TASK_ERROR: return "TaskError";
    case RT_ERR_ACTOR_DIED: return "ActorDied";
    case RT_ERR_TASK_CANCELLED: return "TaskCancelled";
    case RT_ERR_WORKER_UNAVAILABLE: return "WorkerUnavailable";
    case RT_ERR_OBJECT_LOST: return "ObjectLost";
    }
    return "TaskError";
}

size_t rt_error_size(const rt_error *err)
{
    return err->bytes;
}

size_t rt_error_chain_size(const rt_error *err)
{
    return err->chain_bytes;
}

/* ---- store accounting --------------------------------------------------------------- */

size_t rt_error_hold(rt_error *err)
{
    size_t added = 0;
    /* A node that was held already holds its cause: stop there. */
    for (rt_error *e = err; e && __atomic_fetch_add(&e->held, 1, __ATOMIC_ACQ_REL) == 0;
         e = e->cause)
        added += e->bytes;
    return added;
}

size_t rt_error_unhold(rt_error *err)
{
    size_t released = 0;
    /* A node still held keeps holding its cause: stop there. */
    for (rt_error *e = err; e && __atomic_sub_fetch(&e->held, 1, __ATOMIC_ACQ_REL) == 0;
         e = e->cause)
        released += e->bytes;
    return released;
}

/* ---- summaries ------------------------------------------------------------------------ */

/* Copies in one summary at most; a problem body nests 32 levels, so the copies and a short
 * shared tail stay readable there. */
#define SUMMARY_COPIES_MAX 16

/* The length of at most max bytes of s that does not end inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--; /* s[n] continues a sequence that started before it: cut before that start */
    return n;
}

/* A copy of e without its cause: the message cut to message_max bytes, field members
 * whose text is longer than member_max left out. NULL when out of memory. */
static rt_error *copy_cut(const rt_error *e, size_t message_max, size_t member_max)
{
    json_t *fields = json_object();
    const char *key;
    json_t *value;
    json_object_foreach(e->fields, key, value)
    {
        if (fields && json_dumpb(value, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY) <= member_max)
            json_object_set(fields, key, value); /* values are immutable here: share them */
    }
    size_t len = strlen(e->message), keep = utf8_cut(e->message, len, message_max);
    if (keep == len)
        return error_make(e->kind, e->message, len, fields, NULL);
    char *text = NULL;
    int n = asprintf(&text, "%.*s [... %zu bytes omitted]", (int)keep, e->message, len - keep);
    rt_error *copy = n < 0 ? NULL : error_make(e->kind, text, (size_t)n, fields, NULL);
    if (n < 0)
        json_decref(fields);
    free(text);
    return copy;
}

rt_error *rt_error_summary(rt_error *err, size_t max_bytes)
{
    if (!err || err->chain_bytes <= max_bytes)
        return rt_error_incref(err);
    rt_error *copies[SUMMARY_COPIES_MAX];
    size_t n = 0, used = 0;
    rt_error *e = err, *shared = NULL;
    for (; e; e = e->cause) {
        if (used < max_bytes && e->chain_bytes <= max_bytes - used) {
            shared = e; /* the rest fits as it is */
            break;
        }
        if (n == SUMMARY_COPIES_MAX || (n > 0 && used >= max_bytes))
            break;
        rt_error *c = copy_cut(e, max_bytes / 4, max_bytes / 16);
        if (!c) {
            while (n > 0)
                rt_error_decref(copies[--n]);
            return NULL;
        }
        copies[n++] = c;
        used = add_saturated(used, c->bytes);
    }
    /* Not shared yet: these copies are ours to finish. */
    rt_error *last = copies[n - 1];
    if (shared) {
        last->cause = rt_error_incref(shared);
    } else if (e) {
        size_t omitted = 0;
        for (const rt_error *r = e; r; r = r->cause)
            omitted++;
        json_object_set_new(last->fields, "causes_omitted", json_integer((json_int_t)omitted));
    }
    for (size_t i = n; i-- > 0;) {
        if (i + 1 < n)
            copies[i]->cause = copies[i + 1];
        measure(copies[i]);
    }
    return copies[0];
}
