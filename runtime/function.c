/* The calling convention of functions (results, failures, cancellation, $bytes arguments)
 * and the registry that maps names to functions. */
#include "runtime/function.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base64.h"
#include "runtime/clock.h"
#include "runtime/error.h"

#define RT_FUNCTION_NAME_MAX 128

/* ---- calls ------------------------------------------------------------------------------ */

/* Drops whatever output the call holds so that exactly one can be set next. */
static void call_clear_outputs(rt_call *call)
{
    json_decref(call->result_json);
    call->result_json = NULL;
    rt_buf_decref(call->result_buf);
    call->result_buf = NULL;
    free(call->error);
    call->error = NULL;
    json_decref(call->error_fields);
    call->error_fields = NULL;
    rt_error_decref(call->error_cause);
    call->error_cause = NULL;
    call->unavailable = false;
}

void rt_call_free_outputs(rt_call *call)
{
    call_clear_outputs(call);
}

/* A malloc'd copy of a fixed message (new, owned by the caller), or NULL. */
static char *message_dup(const char *text)
{
    size_t n = strlen(text) + 1;
    char *copy = malloc(n);
    if (copy)
        memcpy(copy, text, n);
    return copy;
}

void rt_call_return_json(rt_call *call, json_t *value)
{
    if (!call) {
        json_decref(value);
        return;
    }
    if (!value) { /* a failed json_*() constructor */
        rt_call_fail(call, "out of memory");
        return;
    }
    call_clear_outputs(call);
    call->result_json = value;
}

void rt_call_return_bytes(rt_call *call, rt_buf *buf)
{
    if (!call) {
        rt_buf_decref(buf);
        return;
    }
    if (!buf) { /* a failed rt_buf_new() */
        rt_call_fail(call, "out of memory");
        return;
    }
    call_clear_outputs(call);
    call->result_buf = buf;
}

void rt_call_vfail(rt_call *call, bool fatal, const char *fmt, va_list ap)
{
    if (!call)
        return;
    /* Format first: the arguments may point into the outputs being replaced. */
    char *message = NULL;
    int n = fmt ? vasprintf(&message, fmt, ap) : -1;
    if (n < 0)
        message = message_dup(fmt ? "out of memory" : "failed");
    call_clear_outputs(call);
    call->error = message; /* NULL only when even the fallback could not be allocated */
    call->fatal = fatal;
}

void rt_call_fail(rt_call *call, const char *fmt, ...)
{
    if (!call)
        return;
    va_list ap;
    va_start(ap, fmt);
    rt_call_vfail(call, false, fmt, ap);
    va_end(ap);
}

void rt_call_fail_fatal(rt_call *call, const char *fmt, ...)
{
    if (!call)
        return;
    va_list ap;
    va_start(ap, fmt);
    rt_call_vfail(call, true, fmt, ap);
    va_end(ap);
}

bool rt_call_cancelled(const rt_call *call)
{
    if (!call)
        return false;
    if (call->cancel_flag && __atomic_load_n(call->cancel_flag, __ATOMIC_ACQUIRE))
        return true;
    return call->deadline > 0 && rt_clock_monotonic() >= call->deadline;
}

int rt_call_arg_bytes(json_t *value, const char **data, size_t *len, char **owned)
{
    if (owned)
        *owned = NULL;
    if (!value || !data || !len)
        return -1;
    if (json_is_string(value)) {
        *data = json_string_value(value);
        *len = json_string_length(value);
        return 0;
    }
    /* {"$bytes": "<base64>"} with at most a "content_type" string (or null) beside it. */
    if (!json_is_object(value) || !owned)
        return -1;
    json_t *b64 = json_object_get(value, "$bytes");
    if (!json_is_string(b64))
        return -1;
    json_t *ct = json_object_get(value, "content_type");
    size_t members = json_object_size(value);
    if (ct ? (!json_is_string(ct) && !json_is_null(ct)) || members != 2 : members != 1)
        return -1;
    size_t in_len = json_string_length(b64);
    char *out = malloc(rt_base64_decoded_max(in_len) + 1);
    if (!out)
        return -1;
    long n = rt_base64_decode(json_string_value(b64), in_len, out);
    if (n < 0) {
        free(out);
        return -1;
    }
    out[n] = '\0'; /* for convenience; the length is what counts */
    *data = out;
    *len = (size_t)n;
    *owned = out;
    return 0;
}

const char *rt_function_kind_name(rt_function_kind kind)
{
    switch (kind) {
    case RT_FUNCTION_BUILTIN:
        return "builtin";
    case RT_FUNCTION_MODULE:
        return "module";
    case RT_FUNCTION_REMOTE:
        return "remote";
    }
    return "unknown";
}

/* ---- registry --------------------------------------------------------------------------- */

/* A sorted array of function pointers under a read-write lock. Registration is rare
 * (startup, module load, remote registrations), so inserting into the array is cheap
 * enough and lookups are a binary search. Listed owned functions hold the registry's
 * reference. */
struct rt_registry {
    pthread_rwlock_t lock;
    const rt_function **fns; /* owned array, sorted by name */
    size_t count;
    size_t cap;
};

const rt_function *rt_function_hold(const rt_function *fn)
{
    if (fn && fn->release) /* static functions may live in read-only memory: never written */
        __atomic_add_fetch(&((rt_function *)fn)->refs, 1, __ATOMIC_RELAXED);
    return fn;
}

void rt_function_drop(const rt_function *fn)
{
    if (fn && fn->release &&
        __atomic_sub_fetch(&((rt_function *)fn)->refs, 1, __ATOMIC_ACQ_REL) == 0)
        fn->release((rt_function *)fn);
}

rt_registry *rt_registry_new(void)
{
    rt_registry *registry = calloc(1, sizeof(*registry));
    if (!registry)
        return NULL;
    if (pthread_rwlock_init(&registry->lock, NULL) != 0) {
        free(registry);
        return NULL;
    }
    return registry;
}

void rt_registry_free(rt_registry *registry)
{
    if (!registry)
        return;
    pthread_rwlock_destroy(&registry->lock);
    for (size_t i = 0; i < registry->count; i++)
        rt_function_drop(registry->fns[i]); /* the registry's reference to owned ones */
    free(registry->fns);
    free(registry);
}

bool rt_function_name_valid(const char *name)
{
    if (!name)
        return false;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        char c = *p;
        if (n >= RT_FUNCTION_NAME_MAX)
            return false;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return n > 0;
}

/* Index of name in the sorted array, or where it would be inserted; *found says which.
 * Caller holds the lock. */
static size_t registry_search(const rt_registry *registry, const char *name, bool *found)
{
    size_t lo = 0, hi = registry->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(registry->fns[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

/* Doubles the function array. Write lock held. 0 or -1 (out of memory, unchanged). */
static int grow_fns(rt_registry *registry)
{
    size_t cap = registry->cap ? registry->cap * 2 : 32;
    const rt_function **grown = realloc(registry->fns, cap * sizeof(*grown));
    if (!grown)
        return -1;
    registry->fns = grown;
    registry->cap = cap;
    return 0;
}

rt_status rt_registry_add(rt_registry *registry, const rt_function *fn)
{
    if (!registry || !fn || (!fn->fn && !fn->start) || !rt_function_name_valid(fn->name))
        return RT_EINVAL;
    rt_status status = RT_OK;
    pthread_rwlock_wrlock(&registry->lock);
    bool found;
    size_t at = registry_search(registry, fn->name, &found);
    if (found) {
        status = RT_EEXIST;
        goto out;
    }
    if (registry->count == registry->cap && grow_fns(registry) != 0) {
        status = RT_ENOMEM;
        goto out;
    }
    memmove(registry->fns + at + 1, registry->fns + at,
            (registry->count - at) * sizeof(*registry->fns));
    registry->fns[at] = fn;
    registry->count++;
out:
    pthread_rwlock_unlock(&registry->lock);
    return status;
}

const rt_function *rt_registry_get(rt_registry *registry, const char *name)
{
    if (!registry || !name)
        return NULL;
    pthread_rwlock_rdlock(&registry->lock);
    bool found;
    size_t at = registry_search(registry, name, &found);
    /* Held under the lock: a listed function has the registry's reference until the
     * write lock unlists it. */
    const rt_function *fn = found ? rt_function_hold(registry->fns[at]) : NULL;
    pthread_rwlock_unlock(&registry->lock);
    return fn;
}

const rt_function *rt_registry_find(rt_registry *registry, const char *name)
{
    if (!registry || !name)
        return NULL;
    pthread_rwlock_rdlock(&registry->lock);
    bool found;
    size_t at = registry_search(registry, name, &found);
    const rt_function *fn = found ? registry->fns[at] : NULL;
    pthread_rwlock_unlock(&registry->lock);
    return fn;
}

void rt_registry_each(rt_registry *registry, void (*visit)(const rt_function *fn, void *arg),
                      void *arg)
{
    if (!registry || !visit)
        return;
    /* Visit a snapshot outside the lock, so visit may itself use the registry (even
     * register). The snapshot holds each function, so a replaced one stays valid until it
     * was visited. If the snapshot cannot be allocated, visit under the read lock. */
    pthread_rwlock_rdlock(&registry->lock);
    size_t count = registry->count;
    const rt_function **snapshot = count ? malloc(count * sizeof(*snapshot)) : NULL;
    if (count && !snapshot) {
        for (size_t i = 0; i < count; i++)
            visit(registry->fns[i], arg);
        pthread_rwlock_unlock(&registry->lock);
        return;
    }
    for (size_t i = 0; i < count; i++)
        snapshot[i] = rt_function_hold(registry->fns[i]);
    pthread_rwlock_unlock(&registry->lock);
    for (size_t i = 0; i < count; i++) {
        visit(snapshot[i], arg);
        rt_function_drop(snapshot[i]);
    }
    free(snapshot);
}

rt_status rt_registry_put_owned(rt_registry *registry, rt_function *fn,
                                void (*release)(rt_function *fn), bool *replaced)
{
    *replaced = false;
    if (!registry || !fn || (!fn->fn && !fn->start) || !rt_function_name_valid(fn->name) || !release)
        return RT_EINVAL;
    const rt_function *old = NULL;
    pthread_rwlock_wrlock(&registry->lock);
    bool found;
    size_t at = registry_search(registry, fn->name, &found);
    rt_status status = RT_OK;
    if (found && registry->fns[at]->kind != RT_FUNCTION_REMOTE) {
        status = RT_EEXIST;
    } else if (found) {
        old = registry->fns[at];
        *replaced = true;
    } else if (registry->count == registry->cap && grow_fns(registry) != 0) {
        status = RT_ENOMEM;
    } else {
        memmove(registry->fns + at + 1, registry->fns + at,
                (registry->count - at) * sizeof(*registry->fns));
        registry->count++;
    }
    if (status == RT_OK) {
        fn->refs = 1; /* the registry's */
        fn->release = release;
        registry->fns[at] = fn;
    }
    pthread_rwlock_unlock(&registry->lock);
    rt_function_drop(old); /* freed now, or by the last task that holds it */
    return status;
}

rt_status rt_registry_remove(rt_registry *registry, const char *name)
{
    const rt_function *removed = NULL;
    pthread_rwlock_wrlock(&registry->lock);
    bool found;
    size_t at = name ? registry_search(registry, name, &found) : 0;
    rt_status status = RT_OK;
    if (!name || !found) {
        status = RT_ENOTFOUND;
    } else if (registry->fns[at]->kind != RT_FUNCTION_REMOTE) {
        status = RT_ESTATE;
    } else {
        removed = registry->fns[at];
        memmove(registry->fns + at, registry->fns + at + 1,
                (registry->count - at - 1) * sizeof(*registry->fns));
        registry->count--;
    }
    pthread_rwlock_unlock(&registry->lock);
    rt_function_drop(removed);
    return status;
}
