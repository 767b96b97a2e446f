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
#include <stdio.h>

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

void svc_allocator_configure(void)
{
    /* Object buffers of 128 KiB and more get their own mappings, so freeing them gives the
     * memory back to the system. Left to itself glibc raises this threshold after the
     * first big frees and keeps later buffers in its heaps: a soak run held 300 MiB of
     * freed heap with an empty store. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}

const char *svc_allocator_name(void)
{
    return "glibc";
}
#endif
