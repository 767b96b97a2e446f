/* The memory allocator: jemalloc in normal builds, glibc's malloc in sanitized ones (the
 * sanitizers bring their own allocator).
 *
 * Why jemalloc: a task per request allocates and frees some forty small blocks while the
 * heap keeps growing with results, and glibc's malloc spent a sixth of rayd's CPU time
 * there (_int_malloc, malloc_consolidate, arena locks). jemalloc, linked as Redis links it,
 * took benchmark f from about 60k to about 80k requests per second and used less memory
 * per object and per actor (BENCHMARKS.md). */
#include "service/allocator.h"

#ifdef RAYD_JEMALLOC
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Read by jemalloc when it starts. Freed memory goes back to the system within about a
 * second (dirty pages are purged after 1 s, with no "muzzy" second stage), by a background
 * thread so that an idle server returns it too: rayd holds objects of any size and an
 * operator expects RSS to fall when they are freed.
 *
 * Not set: thp:always (the heap on transparent huge pages). Measured on benchmark f it was
 * within the noise (74k vs 72k requests/s in five interleaved rounds), for 5 MiB more RSS
 * at idle and 10% more per idle actor. */
const char *malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";

void svc_allocator_configure(void)
{
}

/* jemalloc's stats.allocated now, or 0 when it cannot be read. The statistics are a
 * snapshot taken when the epoch advances. */
static size_t jemalloc_allocated(void)
{
    uint64_t epoch = 1;
    size_t size = sizeof(epoch), allocated = 0;
    if (mallctl("epoch", &epoch, &size, &epoch, size) != 0)
        return 0;
    size = sizeof(allocated);
    if (mallctl("stats.allocated", &allocated, &size, NULL, 0) != 0)
        return 0;
    return allocated;
}

static int jemalloc_serves = -1; /* set once by check_jemalloc_serves */

/* Whether malloc really is jemalloc's: under valgrind, which replaces malloc, jemalloc's
 * figures would stand still whatever the process holds. A 1 MiB block must show in them. */
static void check_jemalloc_serves(void)
{
    size_t before = jemalloc_allocated();
    volatile char *probe = malloc(1 << 20);
    size_t with = jemalloc_allocated();
    if (probe)
        probe[0] = 1;
    free((void *)probe);
    jemalloc_serves = probe && before && with >= before + (1 << 20);
}

int svc_allocator_stats(api_allocator_stats *out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    memset(out, 0, sizeof(*out));
    pthread_once(&once, check_jemalloc_serves);
    if (!jemalloc_serves)
        return -1;
    uint64_t epoch = 1;
    size_t size = sizeof(epoch);
    if (mallctl("epoch", &epoch, &size, &epoch, size) != 0)
        return -1;
    static const char *const NAMES[] = {"stats.allocated", "stats.active", "stats.metadata",
                                        "stats.resident", "stats.retained"};
    size_t *fields[] = {&out->allocated, &out->active, &out->metadata, &out->resident,
                        &out->retained};
    for (size_t i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++) {
        size = sizeof(size_t);
        if (mallctl(NAMES[i], fields[i], &size, NULL, 0) != 0)
            return -1;
    }
    return 0;
}

const char *svc_allocator_name(void)
{
    static char name[80];
    if (!name[0]) {
        const char *version = NULL;
        size_t size = sizeof(version);
        if (mallctl("version", &version, &size, NULL, 0) != 0 || !version)
            version = "?";
        snprintf(name, sizeof(name), "jemalloc %s", version);
    }
    return name;
}

#else
#include <malloc.h>
#include <string.h>

void svc_allocator_configure(void)
{
    /* Object buffers of 128 KiB and more get their own mappings, so freeing them gives the
     * memory back to the system. Left to itself glibc raises this threshold after the
     * first big frees and keeps later buffers in its heaps: a soak run held 300 MiB of
     * freed heap with an empty store. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}

int svc_allocator_stats(api_allocator_stats *out)
{
    memset(out, 0, sizeof(*out));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return -1; /* the sanitizer's allocator serves malloc; glibc's figures would be wrong */
#else
    struct mallinfo2 mi = mallinfo2(); /* takes every arena's lock: for scrapes, not loops */
    out->allocated = mi.uordblks + mi.hblkhd;
    return 0;
#endif
}

const char *svc_allocator_name(void)
{
    return "glibc";
}
#endif
