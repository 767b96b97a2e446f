/* Mutexes for short critical sections on hot paths (store shards, task and actor tables,
 * the scheduler's queue). They are adaptive: a thread that finds one taken spins briefly
 * before sleeping, since the holder will let go within a few hundred nanoseconds, and a
 * sleep and wake-up costs two context switches (measured: a quarter of the CPU of small
 * requests went to task switches with plain mutexes). Thread-safe. */
#ifndef RAYD_RUNTIME_LOCK_H
#define RAYD_RUNTIME_LOCK_H

#include <pthread.h>

/* Initialises m as an adaptive mutex (a plain one where adaptive is not available). */
void rt_mutex_init(pthread_mutex_t *m);

#endif
