/* The memory allocator rayd runs on, and its settings. */
#ifndef RAYD_SERVICE_ALLOCATOR_H
#define RAYD_SERVICE_ALLOCATOR_H

#include "api/context.h"

/* Sets the allocator up for a long-running server; call first thing in main. */
void svc_allocator_configure(void);

/* "jemalloc 5.3.0-..." or "glibc", for the start-up log line. Static storage. */
const char *svc_allocator_name(void);

/* The allocator's figures (an api_allocator_stats_fn): jemalloc's stats.allocated,
 * stats.active, stats.metadata, stats.resident and stats.retained after refreshing them;
 * with glibc only allocated (mallinfo2). 0, or -1 when none can be read or they would not
 * describe the heap (a sanitizer's or valgrind's malloc in place of the one linked).
 * Thread-safe. */
int svc_allocator_stats(api_allocator_stats *out);

#endif
