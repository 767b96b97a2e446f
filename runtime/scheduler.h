/* rt_scheduler: a fixed pool of worker threads and their ready queue. Work is a job: a
 * function and its argument, run once on some worker. Tasks and actor mailboxes are
 * scheduled as jobs. Jobs can also be delayed (retry backoff).
 *
 * DESIGN: one FIFO queue under one mutex with a condition variable; workers take jobs in
 * order. A second structure, a min-heap of delayed jobs, is served by the same workers
 * (whoever waits next sleeps until the earliest delayed job is due). Jobs are intrusive:
 * the caller embeds an rt_job in its own struct, so queueing allocates nothing.
 *
 * Thread-safety: every function may be called from any thread, including from jobs. */
#ifndef RAYD_RUNTIME_SCHEDULER_H
#define RAYD_RUNTIME_SCHEDULER_H

#include <stddef.h>

#include "runtime/status.h"

typedef struct rt_scheduler rt_scheduler;
typedef struct rt_job rt_job;
typedef void (*rt_job_fn)(rt_job *job);

struct rt_job {
    rt_job *next;  /* scheduler-private */
    double due;    /* scheduler-private: monotonic time for delayed jobs */
    rt_job_fn run; /* set by the caller */
};

/* Starts workers threads (at least 1). NULL on failure. */
rt_scheduler *rt_scheduler_new(unsigned workers);

/* Stops the workers after the jobs already queued have run; delayed jobs not yet due are
 * run at once. NULL accepted. */
void rt_scheduler_free(rt_scheduler *scheduler);

/* Queues a job (borrowed: it must stay valid until it has run). */
void rt_scheduler_submit(rt_scheduler *scheduler, rt_job *job);

/* Queues a list of jobs linked through job->next (in order), with one lock. */
void rt_scheduler_submit_list(rt_scheduler *scheduler, rt_job *first, rt_job *last, size_t n);

/* Queues a job to run no earlier than delay seconds from now. */
void rt_scheduler_submit_after(rt_scheduler *scheduler, rt_job *job, double delay);

typedef struct rt_scheduler_stats {
    unsigned workers;
    unsigned busy;     /* workers running a job now */
    size_t queued;     /* jobs waiting for a worker */
    size_t delayed;    /* jobs waiting for their time */
    unsigned long long done;
} rt_scheduler_stats;

void rt_scheduler_get_stats(rt_scheduler *scheduler, rt_scheduler_stats *out);

#endif
