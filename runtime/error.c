/* Stored error values: kind, message, extra fields, and an optional cause chain. */
#include "runtime/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rt_error {
    int refs; /* atomic */
    rt_error_kind kind;
    rt_error *cause; /* owned reference or NULL */
    json_t *fields;  /* owned, a JSON object */
    char message[];
};

rt_error *rt_error_new(rt_error_kind kind, const char *message, json_t *fields,
                       rt_error *cause)
{
    if (!message)
        message = "";
    size_t len = strlen(message);
    rt_error *err = malloc(sizeof(*err) + len + 1);
    if (!err)
        return NULL;
    err->fields = fields && json_is_object(fields) ? json_deep_copy(fields) : json_object();
    if (!err->fields) {
        free(err);
        return NULL;
    }
    err->refs = 1;
    err->kind = kind;
    err->cause = rt_error_incref(cause);
    memcpy(err->message, message, len + 1);
    return err;
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
    return sizeof(*err) + strlen(err->message) + 64;
}
