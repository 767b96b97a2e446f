/* Per-function, per-method and per-endpoint statistics for /metrics: calls, failures by
 * error kind, a duration histogram and a time-queued histogram, labelled by names that
 * exist (registered functions, actor classes and their methods, remote functions and
 * classes).
 *
 * The label set stays bounded: at most RT_STATS_MAX entries are ever made (calls of further
 * names are counted under the name "_other"), and /metrics shows only names that exist now.
 * Entries are never freed, so a pointer from rt_stats_entry_for stays valid for the life
 * of the process; recording is a few relaxed atomic adds.
 *
 * Thread-safety: every function may be called from any thread. */
#ifndef RAYD_RUNTIME_STATS_H
#define RAYD_RUNTIME_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"
#include "runtime/histogram.h"

#define RT_STATS_MAX 2048
#define RT_STATS_NAME_MAX 128
#define RT_STATS_KINDS (RT_ERR_OBJECT_LOST + 1) /* error kinds counted */

typedef enum rt_stats_scope {
    RT_STATS_FUNCTION = 0, /* a task's function: name */
    RT_STATS_METHOD,       /* an actor method: name = class, method */
    RT_STATS_REMOTE        /* a remote endpoint: name = the function or class */
} rt_stats_scope;

/* Remote call outcomes counted per endpoint. */
typedef enum rt_stats_remote_outcome {
    RT_STATS_REMOTE_OK = 0,     /* a 2xx answer */
    RT_STATS_REMOTE_HTTP_4XX,
    RT_STATS_REMOTE_HTTP_5XX,   /* and any other non-2xx status */
    RT_STATS_REMOTE_UNREACHABLE,
    RT_STATS_REMOTE_TIMEOUT,
    RT_STATS_REMOTE_TOO_LARGE,
    RT_STATS_REMOTE_CANCELLED,
    RT_STATS_REMOTE_OUTCOMES
} rt_stats_remote_outcome;

typedef struct rt_stats_entry {
    rt_stats_scope scope;
    char name[RT_STATS_NAME_MAX + 1];
    char method[RT_STATS_NAME_MAX + 1]; /* RT_STATS_METHOD only, else "" */
    uint64_t calls;                     /* atomic: attempts run (remote: calls made) */
    uint64_t failures[RT_STATS_KINDS];  /* atomic: ended failed, by kind (not remote) */
    uint64_t outcomes[RT_STATS_REMOTE_OUTCOMES]; /* atomic: remote only */
    rt_histogram duration;              /* seconds per call (remote: per HTTP call) */
    rt_histogram queued;                /* seconds from ready to running (not remote) */
} rt_stats_entry;

/* The entry for (scope, name, method) (method NULL except for RT_STATS_METHOD), made on
 * first use; past RT_STATS_MAX entries, the shared "_other" entry of the scope. Never
 * NULL. Borrowed, valid for the life of the process. */
rt_stats_entry *rt_stats_entry_for(rt_stats_scope scope, const char *name, const char *method);

/* One finished call: its duration and time queued (negative: not known). */
void rt_stats_call(rt_stats_entry *e, double seconds, double queued);
/* A failure of kind (a call that ended failed for good). */
void rt_stats_fail(rt_stats_entry *e, rt_error_kind kind);
/* A remote call's outcome and latency. */
void rt_stats_remote(rt_stats_entry *e, rt_stats_remote_outcome outcome, double seconds);

/* Copies of every entry of scope (new array of *n entries, free()), NULL when none. */
rt_stats_entry *rt_stats_snapshot(rt_stats_scope scope, size_t *n);

/* The label value of an outcome ("ok", "http_4xx", ...). */
const char *rt_stats_outcome_name(rt_stats_remote_outcome outcome);

#endif
