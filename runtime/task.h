/* rt_tasks: Ray's remote functions. A task runs a registered function on arguments; its
 * results are objects created PENDING at submission, so their refs exist at once.
 *
 * Arguments: a top-level argument (in args, or a value in kwargs) that is exactly
 * {"$ref": "<ref>"} is a dependency: the task waits in PENDING_ARGS_AVAIL until the object
 * leaves PENDING, driven by store watchers, and the function receives the object's value.
 * Refs nested deeper are passed through untouched, as in Ray. Dependencies are pinned
 * until the task ends, so eviction never breaks a queued task.
 *
 * Errors are values: a failing function stores a TaskError in its result refs; a task whose
 * dependency holds an error (or was freed) does not run and fails with a TaskError whose
 * cause is that error, so failures travel down chains of any length.
 *
 * Thread-safety: every function may be called from any thread. See task.c for locks. */
#ifndef RAYD_RUNTIME_TASK_H
#define RAYD_RUNTIME_TASK_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/function.h"
#include "runtime/histogram.h"
#include "runtime/object_store.h"
#include "runtime/scheduler.h"

typedef struct rt_tasks rt_tasks;

typedef enum rt_task_state {
    RT_TASK_PENDING_ARGS_AVAIL = 0, /* waiting for dependencies */
    RT_TASK_PENDING_NODE_ASSIGNMENT, /* queued for a worker (also between retries) */
    RT_TASK_RUNNING,
    RT_TASK_FINISHED,
    RT_TASK_FAILED,
    RT_TASK_CANCELLED
} rt_task_state;
#define RT_TASK_STATE_COUNT 6

/* "PENDING_ARGS_AVAIL", ... as Ray names them. */
const char *rt_task_state_name(rt_task_state state);
/* Parses a state name; -1 when unknown. */
int rt_task_state_parse(const char *name);

typedef struct rt_tasks_config {
    size_t max_pending;       /* tasks not yet finished; beyond it submission is RT_ELIMIT */
    size_t max_kept;          /* finished task records remembered for GET /v1/tasks/{id} */
    double retry_base_delay;  /* seconds before the first retry; doubles each retry */
    double retry_max_delay;   /* cap of the backoff */
} rt_tasks_config;

#define RT_TASK_NUM_RETURNS_MAX 1000
#define RT_TASK_NAME_MAX 128

typedef struct rt_task_spec {
    const char *function;  /* borrowed */
    json_t *args;          /* JSON array, or NULL: borrowed, or given (args_given) */
    json_t *kwargs;        /* JSON object, or NULL: borrowed, or given (args_given) */
    unsigned num_returns;  /* 1.. RT_TASK_NUM_RETURNS_MAX */
    int max_retries;       /* >= 0, or -1: the function's default (Ray's: 3) */
    bool retry_exceptions; /* retry when the function fails (off: only system failures) */
    double timeout;        /* seconds; 0: none. Functions see it as a deadline. */
    const char *name;      /* borrowed, optional */
    const char *request_id; /* borrowed, optional: passed on to remote endpoints */
    const char *traceparent; /* borrowed, optional (valid, as rt_traceparent_child wrote it):
                                passed on to remote endpoints, written in the task's
                                lifecycle lines */
    bool inline_ok;        /* the submitter waits for the result: a quick function with
                              no dependencies may run right away on its thread */
    double result_ttl;     /* seconds the results are kept once stored (they expire then);
                              0: the store's default (RAYD_RESULT_TTL); < 0: none */
    bool args_given;       /* args and kwargs are the submitter's own references, shared
                              with nothing else: the task keeps them instead of deep
                              copies, and submission consumes them whatever it returns */
} rt_task_spec;

/* What rt_task_get and rt_task_list report. Release with rt_task_info_release. */
typedef struct rt_task_info {
    char task_id[RT_REF_SIZE];
    char function[RT_TASK_NAME_MAX + 1];
    char name[RT_TASK_NAME_MAX + 1];
    rt_task_state state;
    unsigned attempts;
    unsigned num_returns;
    char (*refs)[RT_REF_SIZE]; /* num_returns refs, owned */
    double submitted_at, started_at, finished_at; /* wall clock; 0 when not yet */
    bool cancel_requested;
    rt_error *error;           /* FAILED / CANCELLED: new reference, else NULL */
    uint64_t seq;
} rt_task_info;

void rt_task_info_release(rt_task_info *info);

/* The task system uses store, registry and scheduler (all borrowed; they must outlive it). */
rt_tasks *rt_tasks_new(rt_store *store, rt_registry *registry, rt_scheduler *scheduler,
                       const rt_tasks_config *config);
/* Frees the task system. The scheduler must have been stopped first (no job running).
 * NULL accepted. */
void rt_tasks_free(rt_tasks *tasks);

/* Checks a spec as rt_task_submit would, without doing anything. Returns RT_OK,
 * RT_ENOTFOUND (unknown function), RT_EINVAL (a bad option or a ref argument that does
 * not exist); err receives a one-line reason. */
rt_status rt_task_validate(rt_tasks *tasks, const rt_task_spec *spec, char *err,
                           size_t err_size);

/* Submits n tasks, all or nothing: each is validated first, and RT_ELIMIT is answered when
 * they would exceed max_pending. On RT_OK, task_ids[i] receives each task's id and refs
 * receives their result refs, spec by spec (sum of num_returns entries). On error,
 * *bad_index is the spec at fault and err says why. The arguments of specs with
 * args_given are consumed in every case. */
rt_status rt_task_submit_many(rt_tasks *tasks, const rt_task_spec *specs, size_t n,
                              char (*task_ids)[RT_REF_SIZE], char (*refs)[RT_REF_SIZE],
                              size_t *bad_index, char *err, size_t err_size);

/* One task: refs receives spec->num_returns refs. */
rt_status rt_task_submit(rt_tasks *tasks, const rt_task_spec *spec, char task_id[RT_REF_SIZE],
                         char (*refs)[RT_REF_SIZE], char *err, size_t err_size);

/* Cancels a task (as ray.cancel): one not yet running never runs and its refs become
 * TaskCancelled; a running one has its cancel flag set, and when it returns its result is
 * discarded for TaskCancelled. Returns RT_OK (then *state_out is the state after the
 * call: CANCELLED, or RUNNING with cancel requested), RT_ENOTFOUND, or RT_ESTATE when
 * the task had already ended (*state_out says how). */
rt_status rt_task_cancel(rt_tasks *tasks, const char *task_id, rt_task_state *state_out);

/* Cancels every task that has not ended (server shutdown): queued ones never run, running
 * ones see their cancel flag. Returns how many were asked to stop. */
size_t rt_tasks_cancel_all(rt_tasks *tasks);

/* Fills info for one task. RT_OK or RT_ENOTFOUND. */
rt_status rt_task_get(rt_tasks *tasks, const char *task_id, rt_task_info *info);

/* Lists tasks in submission order after cursor after_seq (0: from the start), optionally
 * only one state (state < 0: all) and one function (NULL: all). Writes at most limit infos
 * and returns how many; *next_seq is the next cursor, or 0 at the end. A page costs what it
 * holds: the cursor is sought directly and a state filter walks that state's tasks only;
 * a function filter looks at a few thousand tasks per page at most, so that page may hold
 * fewer than limit tasks (even none) with a cursor to go on from. */
size_t rt_task_list(rt_tasks *tasks, uint64_t after_seq, int state, const char *function,
                    size_t limit, rt_task_info *infos, uint64_t *next_seq);

/* For tests: how many records listings have looked at so far (see rt_record_table). */
uint64_t rt__tasks_list_visits(rt_tasks *tasks);

typedef struct rt_tasks_stats {
    size_t by_state[RT_TASK_STATE_COUNT]; /* tasks in each state now (kept records) */
    size_t pending;                       /* not yet ended */
    unsigned long long submitted, finished, failed, cancelled, retries;
    rt_histogram run_seconds; /* how long function calls ran */
} rt_tasks_stats;

void rt_tasks_get_stats(rt_tasks *tasks, rt_tasks_stats *out);

#endif
