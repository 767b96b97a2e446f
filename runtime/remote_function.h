/* Remote functions: a function whose code is an HTTP endpoint in any language. Each task
 * attempt POSTs {"task_id","function","attempt","args","kwargs"} to the endpoint through
 * rt_remote (no worker thread is held); a 2xx answer's body, with its Content-Type, is the
 * result; another status is a TaskError carrying the status and body (a problem+json body
 * becomes the cause); an endpoint that cannot be reached or does not answer in time is a
 * system failure, retried by the task system and finally stored as WorkerUnavailable.
 * Calls beyond max_concurrency wait in a FIFO. Thread-safe. */
#ifndef RAYD_RUNTIME_REMOTE_FUNCTION_H
#define RAYD_RUNTIME_REMOTE_FUNCTION_H

#include "runtime/function.h"
#include "runtime/remote.h"

typedef struct rt_remote_function_spec {
    const char *name;
    const char *url;
    double timeout;           /* seconds per attempt; 0: 60 */
    unsigned max_concurrency; /* 0: no limit */
    int max_retries;          /* system failures; < 0: Ray's default (3) */
    bool quick;               /* answers in microseconds: a call whose submitter waits is
                                 sent and awaited on the submitting thread, for a short
                                 while (see remote_function.c) */
} rt_remote_function_spec;

/* A new remote function (owned by the caller until handed to rt_registry_put_owned with
 * rt_remote_function_release). remote is borrowed and must outlive it. NULL when out of
 * memory. */
rt_function *rt_remote_function_new(rt_remote *remote, const rt_remote_function_spec *spec);
void rt_remote_function_release(rt_function *fn);

/* A quick remote function's calls so far that were answered on the submitting thread,
 * and that were not answered within its wait (left to an I/O thread). */
void rt_remote_function_quick_counts(const rt_function *fn, unsigned long long *here,
                                     unsigned long long *missed);

/* Remote functions in memory in this process: made and not yet released (listed ones, and
 * replaced or removed ones that a task still holds). */
size_t rt_remote_function_count(void);

/* Converts an endpoint's answer to a call's outputs (shared with remote actor classes):
 * sets result or error from result. what names the endpoint for messages. */
/* Counts a remote call's outcome and latency in the /metrics entry of endpoint name (the
 * remote function or class). */
void rt_remote_count(const char *name, const rt_remote_result *result);

void rt_remote_result_to_call(const rt_remote_result *result, rt_call *call, const char *what,
                              const char *url);

#endif
