/* Remote actor classes: state in rayd, code behind an HTTP endpoint. */
#include "runtime/remote_class.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/remote_function.h"

static size_t g_alive; /* atomic: rt_remote_class_count */

typedef struct class_impl {
    rt_remote *remote;
    char *name, *url, *description;
    bool keeps_state;
    rt_state_keeper keeper; /* when keeps_state */
} class_impl;

/* One call in flight. */
typedef struct class_call {
    rt_call *call;
    void **state; /* the actor's state slot: only this call touches it until complete */
    rt_call_complete_fn complete;
    void *arg;
    const rt_actor_class *cls;
    json_t *new_state; /* owned: the answer's state, while it is being kept */
} class_call;

static void state_destroy(void *state)
{
    json_decref(state);
}

/* The call's end once its new state is kept (or not): the state is the actor's only when
 * kept (or when there is nothing to keep it for). */
static void on_kept(rt_state_kept outcome, const char *why, void *arg)
{
    class_call *cc = arg;
    class_impl *impl = cc->cls->impl;
    json_t *result = json_incref(json_object_get(cc->call->result_json, "result"));
    switch (outcome) {
    case RT_STATE_KEPT:
    case RT_STATE_NOT_KEPT:
        json_decref(*cc->state);
        *cc->state = cc->new_state; /* kept only when the call succeeded */
        cc->new_state = NULL;
        rt_call_return_json(cc->call, result);
        result = NULL;
        break;
    case RT_STATE_FENCED:
        rt_call_fail(cc->call,
                     "%s.%s ran, but actor %s lives on another node now (this node was taken "
                     "for dead and the actor restarted there): its new state was not kept",
                     impl->name, cc->call->function, cc->call->task_id);
        break;
    case RT_STATE_TOO_BIG:
        rt_call_fail(cc->call, "%s.%s: the new state is too big to keep in the cluster (%s)",
                     impl->name, cc->call->function, why ? why : "");
        break;
    case RT_STATE_UNAVAILABLE:
        cc->call->unavailable = true;
        rt_call_fail(cc->call,
                     "%s.%s ran, but its new state could not be kept in the cluster (%s), so "
                     "the state stays as it was before the call",
                     impl->name, cc->call->function, why ? why : "Redis did not answer");
        break;
    }
    json_decref(result);
    json_decref(cc->new_state);
    cc->complete(cc->call, cc->arg);
    free(cc);
}

static void on_done(rt_remote_call *rc, const rt_remote_result *r, void *arg)
{
    class_call *cc = arg;
    class_impl *impl = cc->cls->impl;
    char what[300];
    snprintf(what, sizeof(what), "%s.%s", impl->name, cc->call->function);
    rt_remote_count(impl->name, r);
    rt_remote_result_to_call(r, cc->call, what, impl->url);
    rt_remote_call_free(rc);
    if (!cc->call->error) {
        /* The answer must be {"result": value, "state": new_state}. */
        json_t *answer = cc->call->result_json;
        json_t *result = json_is_object(answer) ? json_object_get(answer, "result") : NULL;
        if (!result || !json_object_get(answer, "state")) {
            rt_call_fail(cc->call, "%s: the endpoint must answer {\"result\": ..., \"state\": ...}",
                         what);
        } else if (impl->keeps_state) {
            cc->new_state = json_incref(json_object_get(answer, "state"));
            char *text = json_dumps(cc->new_state, JSON_COMPACT | JSON_ENCODE_ANY);
            int queued = text ? impl->keeper.keep(impl->keeper.keeper, cc->call->task_id, text,
                                                  strlen(text), on_kept, cc)
                              : -1;
            free(text);
            if (queued == 0)
                return; /* on_kept completes the call */
            on_kept(RT_STATE_UNAVAILABLE, "too many commands waiting, or out of memory", cc);
            return;
        } else {
            json_t *state = json_incref(json_object_get(answer, "state"));
            json_incref(result);
            json_decref(*cc->state);
            *cc->state = state; /* kept only when the call succeeded */
            rt_call_return_json(cc->call, result);
        }
    }
    cc->complete(cc->call, cc->arg);
    free(cc);
}

static void class_start(const rt_actor_class *cls, void **state, rt_call *call,
                        rt_call_complete_fn complete, void *arg)
{
    class_impl *impl = cls->impl;
    class_call *cc = calloc(1, sizeof(*cc));
    json_t *body = json_pack("{s:s,s:s,s:s,s:O,s:O,s:O}", "actor_id", call->task_id, "class",
                             cls->name, "method", call->function, "args",
                             call->args ? call->args : json_array(), "kwargs",
                             call->kwargs ? call->kwargs : json_object(), "state",
                             *state ? (json_t *)*state : json_null());
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    rt_remote_call *rc = NULL;
    if (cc && payload) {
        cc->call = call;
        cc->state = state;
        cc->complete = complete;
        cc->arg = arg;
        cc->cls = cls;
        rc = rt_remote_post(impl->remote, impl->url, payload, strlen(payload), cls->timeout,
                            call->request_id, call->traceparent, on_done, cc);
    }
    free(payload);
    if (!rc) {
        /* Refused once the server is stopping (rt_remote_stop), else out of memory: the
         * call completes now with that error, so the actor's mailbox moves on. */
        free(cc);
        rt_call_fail(call, "%s.%s: %s", cls->name, call->function,
                     rt_remote_stopped(impl->remote) ? "not sent: the server is stopping"
                                                     : "out of memory");
        complete(call, arg);
    }
}

rt_actor_class *rt_remote_class_new(rt_remote *remote, const char *name, const char *url,
                                    double timeout, const rt_state_keeper *keeper)
{
    rt_actor_class *cls = calloc(1, sizeof(*cls));
    class_impl *impl = calloc(1, sizeof(*impl));
    if (!cls || !impl) {
        free(cls);
        free(impl);
        return NULL;
    }
    cls->impl = impl;
    impl->remote = remote;
    if (keeper) {
        impl->keeps_state = true;
        impl->keeper = *keeper;
    }
    impl->name = strdup(name);
    impl->url = strdup(url);
    if (asprintf(&impl->description,
                 keeper ? "Remote actor class at %s; its state is kept in rayd, and in the "
                          "cluster after every successful call."
                        : "Remote actor class at %s; its state is kept in rayd.",
                 url) < 0)
        impl->description = NULL;
    if (!impl->name || !impl->url || !impl->description) {
        rt_remote_class_release(cls);
        return NULL;
    }
    cls->name = impl->name;
    cls->kind = RT_FUNCTION_REMOTE;
    cls->description = impl->description;
    cls->args_doc = "[any, ...]: passed to the endpoint's __init__";
    cls->destroy = state_destroy;
    cls->start = class_start;
    cls->url = impl->url;
    cls->timeout = timeout > 0 ? timeout : 60;
    __atomic_add_fetch(&g_alive, 1, __ATOMIC_RELAXED);
    return cls;
}

bool rt_remote_class_keeps_state(const rt_actor_class *cls)
{
    return cls && cls->start == class_start && ((const class_impl *)cls->impl)->keeps_state;
}

size_t rt_remote_class_count(void)
{
    return __atomic_load_n(&g_alive, __ATOMIC_RELAXED);
}

void rt_remote_class_release(rt_actor_class *cls)
{
    if (!cls)
        return;
    class_impl *impl = cls->impl;
    if (cls->start) /* made whole by rt_remote_class_new, so counted */
        __atomic_sub_fetch(&g_alive, 1, __ATOMIC_RELAXED);
    if (impl) {
        free(impl->name);
        free(impl->url);
        free(impl->description);
        free(impl);
    }
    free(cls);
}
