/* The worker pool: a FIFO ready queue and a min-heap of delayed jobs under one mutex.
 *
 * DESIGN
 * - Threads: `workers` threads loop taking jobs. A worker that finds the ready queue
 *   empty sleeps on the condition variable until a job arrives or the earliest delayed job
 *   is due, whichever is first; due delayed jobs move to the ready queue.
 * - Ordering: ready jobs run in submission order (FIFO), though with several workers they
 *   may finish in any order. Ordering between calls of one actor is the actor's mailbox's
 *   business, not the scheduler's.
 * - Shutdown: rt_scheduler_free lets the queue drain, runs delayed jobs at once, then joins. */
#include "runtime/scheduler.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/clock.h"
#include "runtime/lock.h"

struct rt_scheduler {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    rt_job *head, *tail; /* ready FIFO */
    size_t queued;
    rt_job **delayed;    /* min-heap by due */
    size_t ndelayed, delayed_cap;
    int stopping;
    unsigned nworkers, busy;
    unsigned long long done;
    pthread_t *threads;
};

/* Appends one job to the ready FIFO. Lock held. */
static void ready_append_locked(rt_scheduler *s, rt_job *job)
{
    job->next = NULL;
    if (s->tail)
        s->tail->next = job;
    else
        s->head = job;
    s->tail = job;
    s->queued++;
}

/* ---- delayed heap (lock held) ------------------------------------------------------ */

static void delayed_push(rt_scheduler *s, rt_job *job)
{
    if (s->ndelayed == s->delayed_cap) {
        size_t cap = s->delayed_cap ? s->delayed_cap * 2 : 64;
        rt_job **h = realloc(s->delayed, cap * sizeof(*h));
        if (!h) {
            ready_append_locked(s, job); /* cannot delay: run it now rather than lose it */
            return;
        }
        s->delayed = h;
        s->delayed_cap = cap;
    }
    size_t i = s->ndelayed++;
    s->delayed[i] = job;
    while (i > 0 && s->delayed[(i - 1) / 2]->due > s->delayed[i]->due) {
        rt_job *t = s->delayed[i];
        s->delayed[i] = s->delayed[(i - 1) / 2];
        s->delayed[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static rt_job *delayed_pop(rt_scheduler *s)
{
    rt_job *top = s->delayed[0];
    s->delayed[0] = s->delayed[--s->ndelayed];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->ndelayed && s->delayed[l]->due < s->delayed[m]->due)
            m = l;
        if (r < s->ndelayed && s->delayed[r]->due < s->delayed[m]->due)
            m = r;
        if (m == i)
            break;
        rt_job *t = s->delayed[i];
        s->delayed[i] = s->delayed[m];
        s->delayed[m] = t;
        i = m;
    }
    return top;
}

/* Moves due delayed jobs to the ready queue. */
static void promote_due(rt_scheduler *s, double now)
{
    while (s->ndelayed > 0 && (s->stopping || s->delayed[0]->due <= now))
        ready_append_locked(s, delayed_pop(s));
}

/* ---- workers ----------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    rt_scheduler *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->ndelayed)
            promote_due(s, rt_clock_monotonic());
        if (s->head) {
            rt_job *job = s->head;
            s->head = job->next;
            if (!s->head)
                s->tail = NULL;
            s->queued--;
            s->busy++;
            pthread_mutex_unlock(&s->lock);
            job->next = NULL;
            job->run(job);
            pthread_mutex_lock(&s->lock);
            s->busy--;
            s->done++;
            continue;
        }
        if (s->stopping && s->ndelayed == 0)
            break;
        if (s->ndelayed) {
            double due = s->delayed[0]->due;
            struct timespec ts;
            ts.tv_sec = (time_t)due;
            ts.tv_nsec = (long)((due - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&s->wake, &s->lock, &ts);
        } else {
            pthread_cond_wait(&s->wake, &s->lock);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

rt_scheduler *rt_scheduler_new(unsigned workers)
{
    if (workers == 0)
        workers = 1;
    rt_scheduler *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->threads = calloc(workers, sizeof(*s->threads));
    if (!s->threads) {
        free(s);
        return NULL;
    }
    rt_mutex_init(&s->lock);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &attr);
    pthread_condattr_destroy(&attr);
    for (unsigned i = 0; i < workers; i++) {
        if (pthread_create(&s->threads[i], NULL, worker_main, s) != 0) {
            s->nworkers = i;
            rt_scheduler_free(s);
            return NULL;
        }
    }
    s->nworkers = workers;
    return s;
}

void rt_scheduler_free(rt_scheduler *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    for (unsigned i = 0; i < s->nworkers; i++)
        pthread_join(s->threads[i], NULL);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s->delayed);
    free(s->threads);
    free(s);
}

void rt_scheduler_submit(rt_scheduler *s, rt_job *job)
{
    rt_scheduler_submit_list(s, job, job, 1);
}

void rt_scheduler_submit_list(rt_scheduler *s, rt_job *first, rt_job *last, size_t n)
{
    if (!first)
        return;
    last->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->tail)
        s->tail->next = first;
    else
        s->head = first;
    s->tail = last;
    s->queued += n;
    if (n == 1)
        pthread_cond_signal(&s->wake);
    else
        pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

void rt_scheduler_submit_after(rt_scheduler *s, rt_job *job, double delay)
{
    if (delay <= 0) {
        rt_scheduler_submit(s, job);
        return;
    }
    job->due = rt_clock_monotonic() + delay;
    pthread_mutex_lock(&s->lock);
    delayed_push(s, job);
    /* Wake a sleeper so it recomputes how long to sleep. */
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

void rt_scheduler_get_stats(rt_scheduler *s, rt_scheduler_stats *out)
{
    pthread_mutex_lock(&s->lock);
    out->workers = s->nworkers;
    out->busy = s->busy;
    out->queued = s->queued;
    out->delayed = s->ndelayed;
    out->done = s->done;
    pthread_mutex_unlock(&s->lock);
}
