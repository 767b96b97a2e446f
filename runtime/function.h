/* Functions: what a task runs. A function is a name, a description, and C code called
 * with the task's resolved arguments; it answers with a JSON value, bytes, or a failure.
 * This is the calling convention built-in functions use and C modules will use.
 *
 * Arguments arrive as JSON: a ref argument's object is its parsed JSON value when its
 * content type is JSON, and {"$bytes": "<base64>", "content_type": "..."} otherwise.
 *
 * The registry maps names to functions. Thread-safety: the registry may be read from any
 * thread while functions are registered (a read-write lock guards it); a function is called
 * on one worker thread at a time per task and must be thread-safe across tasks.
 *
 * Lifetime: built-in and module functions live as long as the process. Functions the
 * registry owns (remote ones) are reference-counted: the registry holds one reference while
 * the function is listed, and whoever uses one beyond a lookup (a task) takes its own with
 * rt_registry_get or rt_function_hold. A function replaced or removed is freed when its
 * last user lets go, so a task running with the old registration keeps it alive and
 * repeated registrations do not grow memory. */
#ifndef RAYD_RUNTIME_FUNCTION_H
#define RAYD_RUNTIME_FUNCTION_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>

#include "runtime/buffer.h"
#include "runtime/status.h"

/* Longest request id (X-Request-Id) that work keeps and passes on to remote endpoints. */
#define RT_REQUEST_ID_MAX 128

/* One call of a function. The runtime fills the inputs; the function fills exactly one
 * output through rt_call_return_json, rt_call_return_bytes or rt_call_fail. */
typedef struct rt_call {
    /* inputs (borrowed, valid during the call) */
    const char *task_id;
    const char *function;
    unsigned attempt;        /* 1 for the first attempt */
    json_t *args;            /* JSON array */
    json_t *kwargs;          /* JSON object */
    const int *cancel_flag;  /* read with rt_call_cancelled */
    double deadline;         /* monotonic seconds; 0: none (the task's timeout option) */
    struct rt_store *store;  /* the object store, for functions that put objects */
    const char *request_id;  /* the HTTP request that submitted the work (at most
                                RT_REQUEST_ID_MAX bytes), or NULL */
    const char *traceparent; /* W3C traceparent to pass on (RT_TRACEPARENT_SIZE), or NULL */
    void *async_state;       /* private to asynchronous functions */
    bool submitter_waits;    /* runs on the thread that submitted it, which waits for the
                                result (Prefer: wait): a quick asynchronous function may
                                finish the call there, before start returns */
    /* outputs */
    json_t *result_json;     /* owned */
    rt_buf *result_buf;      /* owned */
    char *error;             /* owned, malloc'd message; set when the call failed */
    bool fatal;              /* actor methods: the failure breaks the actor's state */
    bool unavailable;        /* with error: a system failure (the endpoint could not be
                                reached); retried with backoff, finally WorkerUnavailable */
    json_t *error_fields;    /* owned, optional: extra members for the error's problem body */
    struct rt_error *error_cause; /* owned, optional: the error behind this one */
} rt_call;

typedef void (*rt_function_fn)(rt_call *call);

/* Sets the result to a JSON value (stolen). */
void rt_call_return_json(rt_call *call, json_t *value);
/* Sets the result to bytes (stolen). */
void rt_call_return_bytes(rt_call *call, rt_buf *buf);
/* Frees every output of a call (result, error and its fields and cause). */
void rt_call_free_outputs(rt_call *call);
/* Fails the call with a message (printf-style). */
void rt_call_fail(rt_call *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Fails an actor method call and marks the actor's state broken: the actor restarts
 * (re-runs its constructor) if it has restarts left, or dies. */
void rt_call_fail_fatal(rt_call *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* rt_call_fail or rt_call_fail_fatal (fatal) with a va_list, for wrappers. */
void rt_call_vfail(rt_call *call, bool fatal, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* True once the task was cancelled (or its deadline passed): long-running functions should
 * check it and return early. */
bool rt_call_cancelled(const rt_call *call);

/* Reads a JSON argument that may be {"$bytes": ...}: sets *data and *len to its bytes (malloc'd
 * copy in *owned for $bytes, or the string itself for JSON strings). Returns 0, or -1 when
 * the value is neither a string nor $bytes. */
int rt_call_arg_bytes(json_t *value, const char **data, size_t *len, char **owned);

typedef enum rt_function_kind {
    RT_FUNCTION_BUILTIN = 0,
    RT_FUNCTION_MODULE,
    RT_FUNCTION_REMOTE
} rt_function_kind;

typedef struct rt_function rt_function;

/* Called once when an asynchronous call has finished (from any thread). */
typedef void (*rt_call_complete_fn)(rt_call *call, void *arg);

struct rt_function {
    const char *name;
    rt_function_kind kind;
    const char *description;
    const char *args_doc; /* e.g. "[a: number, b: number]" */
    const char *returns_doc;
    rt_function_fn fn;    /* synchronous functions: runs on a worker thread */
    /* Asynchronous functions (remote ones) instead start the call and return at once; they
     * call complete(call, arg) exactly once when it has finished. call stays valid until
     * then. cancel asks a started call to finish early. */
    void (*start)(const rt_function *fn, rt_call *call, rt_call_complete_fn complete, void *arg);
    void (*cancel)(const rt_function *fn, rt_call *call);
    int max_retries;      /* default retries of its tasks on system failures; 0 here means
                             Ray's default (3) */
    const char *url;      /* remote functions: the endpoint (for listings) */
    double timeout;       /* remote functions: seconds per attempt */
    unsigned max_concurrency; /* remote functions: calls in flight at most (0: no limit) */
    void *impl;           /* kind-specific data */
    bool quick;           /* runs in microseconds and never blocks: may run on the thread
                             that submitted it when that thread waits for it anyway */
    /* Set by rt_registry_put_owned; zero in static and module functions, which are never
     * counted. */
    int refs;             /* atomic */
    void (*release)(rt_function *fn); /* frees fn when its last reference goes */
};

/* Takes a reference to fn (owned functions only; a no-op for the others) and returns fn.
 * NULL accepted. */
const rt_function *rt_function_hold(const rt_function *fn);
/* Drops a reference taken with rt_function_hold or rt_registry_get; the last one frees an
 * owned function that is no longer listed. NULL accepted. */
void rt_function_drop(const rt_function *fn);

typedef struct rt_registry rt_registry;

rt_registry *rt_registry_new(void);
void rt_registry_free(rt_registry *registry); /* NULL accepted */

/* Registers fn (borrowed: it must outlive the registry, as static tables do). RT_EEXIST
 * when the name is taken, RT_EINVAL when the name is not 1..128 chars of [A-Za-z0-9_.-]. */
rt_status rt_registry_add(rt_registry *registry, const rt_function *fn);

/* Registers a function the registry owns (fn is stolen on RT_OK): the registry holds its
 * reference while it is listed, and release(fn) runs when the last reference goes. A
 * REMOTE function may replace another REMOTE one of the same name (*replaced is then
 * true); the old one is unlisted and freed once no task holds it. RT_EEXIST when the name
 * belongs to a built-in or module function. On failure the caller still owns fn. */
rt_status rt_registry_put_owned(rt_registry *registry, rt_function *fn,
                                void (*release)(rt_function *fn), bool *replaced);

/* Unlists a REMOTE function (freed once no task holds it). RT_OK, RT_ENOTFOUND, or
 * RT_ESTATE for built-in and module functions, which cannot be removed. */
rt_status rt_registry_remove(rt_registry *registry, const char *name);

/* Looks a function up; borrowed, NULL when unknown. An owned (remote) function may be
 * replaced and freed at any time by another thread: use this only to test that a name
 * exists, or for built-in and module functions; rt_registry_get otherwise. */
const rt_function *rt_registry_find(rt_registry *registry, const char *name);

/* Looks a function up and takes a reference (rt_function_drop it); NULL when unknown. */
const rt_function *rt_registry_get(rt_registry *registry, const char *name);

/* Calls visit for every function in name order, each held for the call. */
void rt_registry_each(rt_registry *registry, void (*visit)(const rt_function *fn, void *arg),
                      void *arg);

/* True when name is 1 to 128 characters of [A-Za-z0-9_.-], as function, class and method
 * names must be. */
bool rt_function_name_valid(const char *name);

/* "builtin", "module", "remote". */
const char *rt_function_kind_name(rt_function_kind kind);

/* Registers the built-in functions (runtime/builtins.c). */
rt_status rt_builtins_register(rt_registry *registry);

#endif
