/* The memory allocator rayd runs on, and its settings. */
#ifndef RAYD_SERVICE_ALLOCATOR_H
#define RAYD_SERVICE_ALLOCATOR_H

/* Sets the allocator up for a long-running server; call first thing in main. */
void svc_allocator_configure(void);

/* "jemalloc 5.3.0-..." or "glibc", for the start-up log line. Static storage. */
const char *svc_allocator_name(void);

#endif
