/* Unit tests for runtime/scheduler.c: every job runs exactly once under concurrent
 * submission, FIFO order with one worker, submit_list, delayed jobs (never early, run at
 * free), jobs submitting jobs, and stats. runtime/scheduler.h is the contract. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "runtime/clock.h"
#include "runtime/scheduler.h"

/* ---- helpers ---------------------------------------------------------------------- */

#define WAIT_LIMIT 20.0 /* seconds before a wait counts as a hang */

static void sleep_seconds(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* A counter that threads can wait on until it reaches a value. */
typedef struct counter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long value;
} counter;

static void counter_init(counter *c)
{
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->value = 0;
}

static void counter_destroy(counter *c)
{
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

static void counter_add(counter *c, long n)
{
    pthread_mutex_lock(&c->mu);
    c->value += n;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static long counter_get(counter *c)
{
    pthread_mutex_lock(&c->mu);
    long v = c->value;
    pthread_mutex_unlock(&c->mu);
    return v;
}

/* Waits until the counter is at least target; false on timeout. */
static int counter_wait(counter *c, long target, double limit)
{
    double end = rt_clock_wall() + limit;
    struct timespec ts;
    ts.tv_sec = (time_t)end;
    ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
    pthread_mutex_lock(&c->mu);
    int ok = 1;
    while (c->value < target) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0 && c->value < target) {
            ok = 0;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* A job that blocks its worker until a gate opens. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    counter started;
} gate;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = 0;
    counter_init(&g->started);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_destroy(gate *g)
{
    counter_destroy(&g->started);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

typedef struct gate_job {
    rt_job job;
    gate *g;
} gate_job;

static void gate_job_run(rt_job *job)
{
    gate_job *gj = (gate_job *)job;
    counter_add(&gj->g->started, 1);
    pthread_mutex_lock(&gj->g->mu);
    while (!gj->g->open)
        pthread_cond_wait(&gj->g->cv, &gj->g->mu);
    pthread_mutex_unlock(&gj->g->mu);
}

/* A job that counts its runs and records the order it ran in. */
typedef struct count_job {
    rt_job job;
    size_t index;
    int *runs;           /* per-index run counts (atomic) */
    size_t *order;       /* order[position] = index, may be NULL */
    size_t *next_pos;    /* atomic */
    counter *done;
    double due_after;    /* monotonic: must not run before this */
    double ran_at;       /* monotonic time of the run */
} count_job;

static void count_job_run(rt_job *job)
{
    count_job *cj = (count_job *)job;
    cj->ran_at = rt_clock_monotonic();
    __atomic_add_fetch(&cj->runs[cj->index], 1, __ATOMIC_RELAXED);
    if (cj->order) {
        size_t pos = __atomic_fetch_add(cj->next_pos, 1, __ATOMIC_RELAXED);
        cj->order[pos] = cj->index;
    }
    counter_add(cj->done, 1);
}

static rt_scheduler_stats stats_of(rt_scheduler *s)
{
    rt_scheduler_stats st;
    memset(&st, 0xab, sizeof(st));
    rt_scheduler_get_stats(s, &st);
    return st;
}

/* ---- many jobs from many threads -------------------------------------------------- */

#define MANY_JOBS 100000
#define SUBMITTERS 4

/* Lighter job for the bulk test: the counter's lock for every job would serialise it. */
typedef struct bulk_job {
    rt_job job;
    int *run_count;            /* atomic */
    unsigned long long *total; /* atomic */
} bulk_job;

static void bulk_job_run(rt_job *job)
{
    bulk_job *bj = (bulk_job *)job;
    __atomic_add_fetch(bj->run_count, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(bj->total, 1, __ATOMIC_RELEASE);
}

typedef struct submitter {
    rt_scheduler *s;
    bulk_job *jobs;
    size_t from, to;
} submitter;

static void *submitter_main(void *arg)
{
    submitter *sub = arg;
    for (size_t i = sub->from; i < sub->to; i++) {
        /* Mix single submissions and small lists. */
        if (i % 3 == 0 && i + 4 < sub->to) {
            for (size_t k = i; k < i + 4; k++)
                sub->jobs[k].job.next = &sub->jobs[k + 1].job;
            rt_scheduler_submit_list(sub->s, &sub->jobs[i].job, &sub->jobs[i + 4].job, 5);
            i += 4;
        } else {
            rt_scheduler_submit(sub->s, &sub->jobs[i].job);
        }
    }
    return NULL;
}

static void test_many_jobs_run_exactly_once(void **state)
{
    (void)state;
    rt_scheduler *s = rt_scheduler_new(2);
    assert_non_null(s);
    bulk_job *jobs = calloc(MANY_JOBS, sizeof(*jobs));
    int *runs = calloc(MANY_JOBS, sizeof(*runs));
    unsigned long long total = 0;
    assert_non_null(jobs);
    assert_non_null(runs);
    for (size_t i = 0; i < MANY_JOBS; i++) {
        jobs[i].job.run = bulk_job_run;
        jobs[i].run_count = &runs[i];
        jobs[i].total = &total;
    }
    pthread_t threads[SUBMITTERS];
    submitter subs[SUBMITTERS];
    for (int t = 0; t < SUBMITTERS; t++) {
        subs[t].s = s;
        subs[t].jobs = jobs;
        subs[t].from = (size_t)t * MANY_JOBS / SUBMITTERS;
        subs[t].to = (size_t)(t + 1) * MANY_JOBS / SUBMITTERS;
        assert_int_equal(pthread_create(&threads[t], NULL, submitter_main, &subs[t]), 0);
    }
    for (int t = 0; t < SUBMITTERS; t++)
        pthread_join(threads[t], NULL);

    /* Wait for the pool to catch up (without stopping it), then check the stats. */
    double end = rt_clock_monotonic() + WAIT_LIMIT;
    while (__atomic_load_n(&total, __ATOMIC_ACQUIRE) < MANY_JOBS &&
           rt_clock_monotonic() < end)
        sleep_seconds(0.001);
    assert_int_equal(__atomic_load_n(&total, __ATOMIC_ACQUIRE), MANY_JOBS);
    /* done is counted after the job returns: wait for the last increments. */
    rt_scheduler_stats st = stats_of(s);
    while (st.done < MANY_JOBS && rt_clock_monotonic() < end) {
        sleep_seconds(0.001);
        st = stats_of(s);
    }
    assert_int_equal(st.workers, 2);
    assert_int_equal(st.done, MANY_JOBS);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.delayed, 0);
    assert_int_equal(st.busy, 0);

    rt_scheduler_free(s);
    for (size_t i = 0; i < MANY_JOBS; i++)
        if (runs[i] != 1)
            fail_msg("job %zu ran %d times", i, runs[i]);
    assert_int_equal(total, MANY_JOBS);
    free(jobs);
    free(runs);
}

/* ---- FIFO ----------------------------------------------------------------------------- */

#define FIFO_JOBS 2000

static void test_fifo_one_worker(void **state)
{
    (void)state;
    rt_scheduler *s = rt_scheduler_new(1);
    assert_non_null(s);
    gate g;
    gate_init(&g);
    gate_job blocker = {.job.run = gate_job_run, .g = &g};
    rt_scheduler_submit(s, &blocker.job);
    assert_true(counter_wait(&g.started, 1, WAIT_LIMIT));

    count_job *jobs = calloc(FIFO_JOBS, sizeof(*jobs));
    int *runs = calloc(FIFO_JOBS, sizeof(*runs));
    size_t *order = calloc(FIFO_JOBS, sizeof(*order));
    size_t next_pos = 0;
    counter done;
    counter_init(&done);
    assert_non_null(jobs);
    assert_non_null(runs);
    assert_non_null(order);
    for (size_t i = 0; i < FIFO_JOBS; i++) {
        jobs[i] = (count_job){.job.run = count_job_run, .index = i, .runs = runs,
                              .order = order, .next_pos = &next_pos, .done = &done};
    }
    /* Alternate single submissions and lists: order must still be submission order. */
    for (size_t i = 0; i < FIFO_JOBS;) {
        if (i % 7 == 3 && i + 3 <= FIFO_JOBS) {
            jobs[i].job.next = &jobs[i + 1].job;
            jobs[i + 1].job.next = &jobs[i + 2].job;
            rt_scheduler_submit_list(s, &jobs[i].job, &jobs[i + 2].job, 3);
            i += 3;
        } else {
            rt_scheduler_submit(s, &jobs[i].job);
            i++;
        }
    }
    rt_scheduler_stats st = stats_of(s);
    assert_int_equal(st.queued, FIFO_JOBS);
    assert_int_equal(st.busy, 1);
    assert_int_equal(counter_get(&done), 0); /* the worker is still blocked */

    gate_open(&g);
    assert_true(counter_wait(&done, FIFO_JOBS, WAIT_LIMIT));
    rt_scheduler_free(s);
    for (size_t i = 0; i < FIFO_JOBS; i++) {
        assert_int_equal(runs[i], 1);
        if (order[i] != i)
            fail_msg("position %zu ran job %zu", i, order[i]);
    }
    counter_destroy(&done);
    gate_destroy(&g);
    free(jobs);
    free(runs);
    free(order);
}

/* ---- submit_list -------------------------------------------------------------------- */

static void test_submit_list(void **state)
{
    (void)state;
    rt_scheduler *s = rt_scheduler_new(1);
    assert_non_null(s);
    gate g;
    gate_init(&g);
    gate_job blocker = {.job.run = gate_job_run, .g = &g};
    rt_scheduler_submit(s, &blocker.job);
    assert_true(counter_wait(&g.started, 1, WAIT_LIMIT));

    enum { N = 10 };
    count_job jobs[N];
    int runs[N] = {0};
    size_t order[N], next_pos = 0;
    counter done;
    counter_init(&done);
    for (size_t i = 0; i < N; i++) {
        jobs[i] = (count_job){.job.run = count_job_run, .index = i, .runs = runs,
                              .order = order, .next_pos = &next_pos, .done = &done};
        /* A stale next on the last job must not matter: the list ends at last. */
        jobs[i].job.next = i + 1 < N ? &jobs[i + 1].job : &blocker.job;
    }
    rt_scheduler_submit_list(s, &jobs[0].job, &jobs[N - 1].job, N);
    rt_scheduler_stats st = stats_of(s);
    assert_int_equal(st.queued, N);
    /* An empty list is a no-op. */
    rt_scheduler_submit_list(s, NULL, NULL, 0);
    st = stats_of(s);
    assert_int_equal(st.queued, N);

    gate_open(&g);
    assert_true(counter_wait(&done, N, WAIT_LIMIT));
    rt_scheduler_free(s);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(runs[i], 1);
        assert_int_equal(order[i], i);
    }
    counter_destroy(&done);
    gate_destroy(&g);
}

/* A list submitted to several workers: every job runs once. */
static void test_submit_list_many_workers(void **state)
{
    (void)state;
    rt_scheduler *s = rt_scheduler_new(4);
    assert_non_null(s);
    enum { N = 5000 };
    count_job *jobs = calloc(N, sizeof(*jobs));
    int *runs = calloc(N, sizeof(*runs));
    counter done;
    counter_init(&done);
    assert_non_null(jobs);
    assert_non_null(runs);
    for (size_t i = 0; i < N; i++) {
        jobs[i] = (count_job){.job.run = count_job_run, .index = i, .runs = runs,
                              .done = &done};
        if (i + 1 < N)
            jobs[i].job.next = &jobs[i + 1].job;
    }
    rt_scheduler_submit_list(s, &jobs[0].job, &jobs[N - 1].job, N);
    assert_true(counter_wait(&done, N, WAIT_LIMIT));
    rt_scheduler_free(s);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(runs[i], 1);
    counter_destroy(&done);
    free(jobs);
    free(runs);
}

/* ---- delayed jobs ------------------------------------------------------------------- */

static void test_submit_after_not_early_and_ordered(void **state)
{
    (void)state;
    rt_scheduler *s = rt_scheduler_new(1);
    assert_non_null(s);
    enum { N = 4 };
    const double delays[N] = {0.06, 0.02, 0.04, 0.0};
    count_job jobs[N];
    int runs[N] = {0};
    size_t order[N], next_pos = 0;
    counter done;
    counter_init(&done);
    double t0 = rt_clock_monotonic();
    for (size_t i = 0; i < N; i++) {
        jobs[i] = (count_job){.job.run = count_job_run, .index = i, .runs = runs,
                              .order = order, .next_pos = &next_pos, .done = &done};
        jobs[i].due_after = t0 + delays[i];
    }
    for (size_t i = 0; i < N; i++)
        rt_scheduler_submit_after(s, &jobs[i].job, delays[i]);
    rt_scheduler_stats st = stats_of(s);
    /* The zero delay one is queued at once, not delayed. */
    assert_true(st.delayed <= 3);
    assert_true(counter_wait(&done, N, WAIT_LIMIT));
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(runs[i], 1);
        if (jobs[i].ran_at < jobs[i].due_after)
            fail_msg("job %zu ran %.6f s early", i, jobs[i].due_after - jobs[i].ran_at);
    }
    /* Delay 0 first, then by due time. */
    assert_int_equal(order[0], 3);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 2);
    assert_int_equal(order[3], 0);
    st = stats_of(s);
    assert_int_equal(st.delayed, 0);
    rt_scheduler_free(s);
    counter_destroy(&done);
}

/* A delayed job does not hold up ready jobs, and a sleeping worker wakes for an earlier
 * delayed job submitted after a later one. */
static void test_submit_after_wakes_sleeper(void **state)
{
    (void)state;
    rt_scheduler *s = rt_scheduler_new(2);
    assert_non_null(s);
    int runs[3] = {0};
    counter done;
    counter_init(&done);
    count_job late = {.job.run = count_job_run, .index = 0, .runs = runs, .done = &done};
    count_job soon = {.job.run = count_job_run, .index = 1, .runs = runs, .done = &done};
    count_job now = {.job.run = count_job_run, .index = 2, .runs = runs, .done = &done};
    double t0 = rt_clock_monotonic();
    rt_scheduler_submit_after(s, &late.job, 30.0);
    sleep_seconds(0.01); /* let the workers go to sleep until the late job */
    rt_scheduler_submit_after(s, &soon.job, 0.02);
    rt_scheduler_submit(s, &now.job);
    assert_true(counter_wait(&done, 2, WAIT_LIMIT));
    assert_int_equal(runs[2], 1);
    assert_int_equal(runs[1], 1);
    assert_int_equal(runs[0], 0);
    assert_true(soon.ran_at >= t0 + 0.02);
    assert_true(soon.ran_at < t0 + 10.0);
    rt_scheduler_stats st = stats_of(s);
    assert_int_equal(st.delayed, 1);
    /* Free runs the late job at once instead of waiting 30 s. */
    double f0 = rt_clock_monotonic();
    rt_scheduler_free(s);
    assert_true(rt_clock_monotonic() - f0 < 5.0);
    assert_int_equal(runs[0], 1);
    counter_destroy(&done);
}

static void test_delayed_jobs_run_at_free(void **state)
{
    (void)state;
    rt_scheduler *s = rt_scheduler_new(2);
    assert_non_null(s);
    enum { N = 200 };
    count_job jobs[N];
    int runs[N] = {0};
    counter done;
    counter_init(&done);
    for (size_t i = 0; i < N; i++) {
        jobs[i] = (count_job){.job.run = count_job_run, .index = i, .runs = runs,
                              .done = &done};
        rt_scheduler_submit_after(s, &jobs[i].job, 60.0 + (double)(i % 17));
    }
    rt_scheduler_stats st = stats_of(s);
    assert_int_equal(st.delayed, N);
    assert_int_equal(st.queued, 0);
    double t0 = rt_clock_monotonic();
    rt_scheduler_free(s);
    assert_true(rt_clock_monotonic() - t0 < 5.0);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(runs[i], 1);
    assert_int_equal(counter_get(&done), N);
    counter_destroy(&done);
}

/* ---- jobs submitting jobs ----------------------------------------------------------- */

typedef struct chain_job {
    rt_job job;
    rt_scheduler *s;
    int remaining;
    int delayed_every;
    counter *done;
} chain_job;

static void chain_job_run(rt_job *job)
{
    chain_job *cj = (chain_job *)job;
    counter_add(cj->done, 1);
    if (--cj->remaining > 0) {
        if (cj->delayed_every && cj->remaining % cj->delayed_every == 0)
            rt_scheduler_submit_after(cj->s, &cj->job, 0.0005);
        else
            rt_scheduler_submit(cj->s, &cj->job);
    }
}

static void test_jobs_submit_jobs(void **state)
{
    (void)state;
    rt_scheduler *s = rt_scheduler_new(3);
    assert_non_null(s);
    counter done;
    counter_init(&done);
    enum { CHAINS = 8, STEPS = 500 };
    chain_job chains[CHAINS];
    for (int i = 0; i < CHAINS; i++) {
        chains[i] = (chain_job){.job.run = chain_job_run, .s = s, .remaining = STEPS,
                                .delayed_every = i % 2 ? 50 : 0, .done = &done};
        rt_scheduler_submit(s, &chains[i].job);
    }
    assert_true(counter_wait(&done, CHAINS * STEPS, WAIT_LIMIT));
    rt_scheduler_free(s);
    assert_int_equal(counter_get(&done), CHAINS * STEPS);
    for (int i = 0; i < CHAINS; i++)
        assert_int_equal(chains[i].remaining, 0);
    counter_destroy(&done);
}

/* Jobs still queued when free is called run before it returns, and jobs that resubmit
 * themselves during shutdown (immediately or delayed) are not lost. */
static void test_free_drains_queue(void **state)
{
    (void)state;
    rt_scheduler *s = rt_scheduler_new(2);
    assert_non_null(s);
    counter done;
    counter_init(&done);
    enum { N = 1000 };
    count_job *jobs = calloc(N, sizeof(*jobs));
    int *runs = calloc(N, sizeof(*runs));
    assert_non_null(jobs);
    assert_non_null(runs);
    for (size_t i = 0; i < N; i++) {
        jobs[i] = (count_job){.job.run = count_job_run, .index = i, .runs = runs,
                              .done = &done};
        rt_scheduler_submit(s, &jobs[i].job);
    }
    chain_job chain = {.job.run = chain_job_run, .s = s, .remaining = 100,
                       .delayed_every = 3, .done = &done};
    rt_scheduler_submit(s, &chain.job);
    rt_scheduler_free(s);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(runs[i], 1);
    assert_int_equal(chain.remaining, 0);
    assert_int_equal(counter_get(&done), N + 100);
    counter_destroy(&done);
    free(jobs);
    free(runs);
}

/* ---- stats -------------------------------------------------------------------------- */

static void test_stats(void **state)
{
    (void)state;
    rt_scheduler *s = rt_scheduler_new(2);
    assert_non_null(s);
    rt_scheduler_stats st = stats_of(s);
    assert_int_equal(st.workers, 2);
    assert_int_equal(st.busy, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.delayed, 0);
    assert_int_equal(st.done, 0);

    gate g;
    gate_init(&g);
    gate_job blockers[2] = {{.job.run = gate_job_run, .g = &g},
                            {.job.run = gate_job_run, .g = &g}};
    rt_scheduler_submit(s, &blockers[0].job);
    rt_scheduler_submit(s, &blockers[1].job);
    assert_true(counter_wait(&g.started, 2, WAIT_LIMIT));

    enum { N = 5 };
    count_job jobs[N + 2];
    int runs[N + 2] = {0};
    counter done;
    counter_init(&done);
    for (size_t i = 0; i < N + 2; i++)
        jobs[i] = (count_job){.job.run = count_job_run, .index = i, .runs = runs,
                              .done = &done};
    for (size_t i = 0; i < N; i++)
        rt_scheduler_submit(s, &jobs[i].job);
    rt_scheduler_submit_after(s, &jobs[N].job, 30.0);
    rt_scheduler_submit_after(s, &jobs[N + 1].job, 0.01);
    st = stats_of(s);
    assert_int_equal(st.workers, 2);
    assert_int_equal(st.busy, 2);
    assert_int_equal(st.queued, N);
    assert_int_equal(st.delayed, 2);
    assert_int_equal(st.done, 0);

    gate_open(&g);
    assert_true(counter_wait(&done, N + 1, WAIT_LIMIT));
    double end = rt_clock_monotonic() + WAIT_LIMIT;
    do {
        st = stats_of(s);
        if (st.done == N + 3 && st.busy == 0)
            break;
        sleep_seconds(0.001);
    } while (rt_clock_monotonic() < end);
    assert_int_equal(st.done, N + 3); /* 2 blockers, N ready jobs, the short delayed one */
    assert_int_equal(st.busy, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.delayed, 1);
    assert_int_equal(runs[N], 0);
    rt_scheduler_free(s);
    assert_int_equal(runs[N], 1);
    counter_destroy(&done);
    gate_destroy(&g);
}

static void test_new_zero_workers_and_free_null(void **state)
{
    (void)state;
    rt_scheduler_free(NULL);
    rt_scheduler *s = rt_scheduler_new(0);
    assert_non_null(s);
    rt_scheduler_stats st = stats_of(s);
    assert_int_equal(st.workers, 1);
    counter done;
    counter_init(&done);
    int runs[1] = {0};
    count_job job = {.job.run = count_job_run, .index = 0, .runs = runs, .done = &done};
    rt_scheduler_submit(s, &job.job);
    assert_true(counter_wait(&done, 1, WAIT_LIMIT));
    rt_scheduler_free(s);
    assert_int_equal(runs[0], 1);
    counter_destroy(&done);
    /* An idle scheduler frees at once. */
    s = rt_scheduler_new(8);
    assert_non_null(s);
    rt_scheduler_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_jobs_run_exactly_once),
        cmocka_unit_test(test_fifo_one_worker),
        cmocka_unit_test(test_submit_list),
        cmocka_unit_test(test_submit_list_many_workers),
        cmocka_unit_test(test_submit_after_not_early_and_ordered),
        cmocka_unit_test(test_submit_after_wakes_sleeper),
        cmocka_unit_test(test_delayed_jobs_run_at_free),
        cmocka_unit_test(test_jobs_submit_jobs),
        cmocka_unit_test(test_free_drains_queue),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_new_zero_workers_and_free_null),
    };
    return cmocka_run_group_tests_name("runtime/scheduler", tests, NULL, NULL);
}
