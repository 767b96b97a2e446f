/* api_context: what the HTTP layer needs from the rest of the process: the runtime objects
 * it serves and the limits it enforces. Made by service/, borrowed by api/ for the server's
 * lifetime. Read-only after start, so thread-safe; what may change while it runs is behind
 * live (api/live.h). */
#ifndef RAYD_API_CONTEXT_H
#define RAYD_API_CONTEXT_H

#include <stddef.h>

#include "runtime/actor.h"
#include "runtime/cluster.h"
#include "runtime/cluster_fetch.h"
#include "runtime/cluster_peer.h"
#include "runtime/function.h"
#include "runtime/object_store.h"
#include "runtime/remote.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "runtime/task.h"

typedef struct api_config {
    const char *bind;          /* IPv4 or IPv6 address to listen on */
    unsigned port;             /* 0: the kernel picks one */
    unsigned http_threads;     /* at least 2 (a single epoll thread stalls: docs/architecture.md) */
    unsigned connection_limit;
    double connection_timeout; /* seconds of inactivity before a connection is closed */
    size_t max_body;           /* bytes */
    size_t linger_max;         /* bytes of an unread body discarded after an early answer;
                                  0: close at once (api/linger.h) */
    double max_wait;           /* seconds; every wait is capped at this */
    size_t memory_limit;       /* for /v1/status only; the store enforces it */
    unsigned workers;          /* for /v1/status only; the scheduler has them */
    size_t max_pending_tasks;  /* for /v1/status only; the task system enforces it */
    size_t max_tombstones;     /* for /v1/status only; the store enforces it */
    size_t max_task_records;   /* for /v1/status only; the task system enforces it */
    size_t max_dead_actors;    /* for /v1/status only; the actor system enforces it */
    size_t max_parked;         /* parked requests at most; beyond it 429 */
    int admin_port;            /* the probes' listener (/healthz, /readyz, /metrics): its
                                  port, 0: the kernel picks one, -1: none */
    double idempotency_ttl;    /* seconds an Idempotency-Key is remembered */
    size_t idempotency_max_bytes; /* bytes of remembered keys and answers at most; 0: none */
    size_t body_budget;        /* bytes of request bodies in flight and of parked requests'
                                  memory at once (RAYD_BODY_BUDGET); 0: no limit */
    /* The remote allow-list and the API tokens are not here: they can change while the
     * server runs, and live in api_context.live. */
    const char *cluster_token; /* cluster mode: bearer token of peer requests and routes;
                                  NULL or "": none */
    size_t max_sessions;       /* sessions open at once (the sessions enforce it) */
    double session_max_ttl;    /* seconds: the longest lease a session may ask for */
    size_t spillback_queued;   /* cluster mode: past this many queued jobs, a submitted task
                                  runs on the least loaded live node; 0: never */
} api_config;

typedef struct api_parking api_parking;
typedef struct api_live api_live;

/* The memory requests hold in flight: bodies being received and what parked requests keep
 * (api/budget.h). */
typedef struct api_budget {
    size_t limit;                /* bytes; 0: no limit. Set when the server starts. */
    size_t used;                 /* atomic */
    unsigned long long refused;  /* atomic: requests refused because it was spent */
} api_budget;
typedef struct api_metrics api_metrics;

/* Where the server is in its life; /readyz answers 200 only when READY. */
typedef enum api_lifecycle {
    API_STARTING = 0,
    API_READY,
    API_DRAINING /* new work is refused with 503 ShuttingDown; waits answer at once */
} api_lifecycle;

/* One answered (or abandoned) request, for the access log. Strings are borrowed for the
 * duration of the callback. status is 0 when the client went away before an answer. */
typedef struct api_request_summary {
    const char *request_id;
    const char *traceparent; /* "" when the request had none */
    const char *method;
    const char *route; /* the route pattern, or "unmatched" */
    const char *path;
    unsigned status;
    double seconds;
    size_t bytes;
} api_request_summary;

typedef void (*api_request_logger)(const api_request_summary *summary, void *arg);

/* What the memory allocator says of the process's heap, in bytes (0: not known). */
typedef struct api_allocator_stats {
    size_t allocated; /* in live allocations */
    size_t active;    /* in pages that hold live allocations */
    size_t metadata;  /* the allocator's own bookkeeping */
    size_t resident;  /* in pages the allocator has touched and not given back */
    size_t retained;  /* address space kept for reuse but given back to the system (not
                         resident) */
} api_allocator_stats;

/* Fills out; 0, or -1 when the allocator says nothing. Thread-safe. */
typedef int (*api_allocator_stats_fn)(api_allocator_stats *out);

typedef struct api_context {
    api_config config;
    rt_store *store;      /* borrowed */
    rt_registry *registry; /* borrowed */
    rt_scheduler *scheduler; /* borrowed */
    rt_tasks *tasks;      /* borrowed */
    rt_actors *actors;    /* borrowed */
    rt_sessions *sessions; /* borrowed: Rayd-Session owners of work (runtime/session.h) */
    rt_remote *remote;    /* borrowed: the I/O thread for remote functions */
    rt_cluster *cluster;  /* borrowed; NULL without cluster mode (then nothing else in
                             api/ looks at clusters) */
    rt_peer *peer;        /* borrowed: the client to other nodes; NULL without cluster mode */
    rt_fetch *fetch;      /* borrowed: stand-ins for other nodes' objects; NULL without
                             cluster mode */
    struct rt_actor_dir *actor_dir; /* borrowed: restartable actors' records in Redis
                                       (runtime/cluster_actors.h); NULL without cluster mode */
    api_live *live;       /* borrowed: the allow-list and tokens in force (api/live.h) */
    const char *version;  /* borrowed, static */
    double started_wall;  /* wall clock at start */
    double started_mono;  /* monotonic clock at start */
    api_parking *parking; /* owned by the server (api/server.c), set when it starts */
    api_metrics *metrics; /* owned by the server, set when it starts */
    struct api_idempotency *idempotency; /* owned by the server, set when it starts */
    api_budget bodies;    /* set up by the server when it starts; atomics inside */
    int lifecycle;        /* api_lifecycle, atomic: set by service/, read by api/ */
    api_allocator_stats_fn allocator_stats; /* for /metrics and /v1/status, when set */
    api_request_logger log_request; /* called once per request when set */
    void *log_arg;
    unsigned long long (*log_dropped)(void); /* log lines dropped so far, for /metrics;
                                                NULL: none */
} api_context;

#endif
