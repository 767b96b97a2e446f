/* Lifecycle events: the runtime's news for people (a task failed for good, a retry, an
 * endpoint down or back, an actor restarted or dead, a module loaded, a registration
 * changed, the store full, a cluster node joined or left), handed to one sink that the
 * service writes as log lines.
 *
 * Rate-limited per event name (a token bucket: RT_EVENT_BURST lines at once, then
 * RT_EVENT_PER_SECOND a second), so a storm of failures cannot flood stdout; the next line
 * of that name that passes carries "suppressed": N, the lines left out before it.
 *
 * Thread-safety: every function may be called from any thread, holding no lock of the
 * caller's that the sink could need (the sink runs on the calling thread). */
#ifndef RAYD_RUNTIME_EVENTS_H
#define RAYD_RUNTIME_EVENTS_H

#include <jansson.h>
#include <stdbool.h>

#define RT_EVENT_BURST 20
#define RT_EVENT_PER_SECOND 5.0

/* level: "info" or "warn" (or "error"); event: a string literal; fields: stolen, may be
 * NULL. */
typedef void (*rt_event_sink)(const char *level, const char *event, json_t *fields);

/* Sets the sink (NULL: events are dropped). Call once at start, before any thread emits. */
void rt_events_set_sink(rt_event_sink sink);

/* Emits one event, unless rate-limited. fields is stolen (may be NULL). */
void rt_event_emit(const char *level, const char *event, json_t *fields);

/* Events left out by the rate limit since start. */
unsigned long long rt_events_suppressed(void);

/* A remote endpoint's reachability after a call: emits "remote endpoint unreachable" when
 * url turns unreachable and "remote endpoint reachable again" when it answers after that
 * (only transitions, so a dead endpoint called a thousand times is one line). what: the
 * function or class name; why: the transport error (for unreachable), may be NULL. */
void rt_event_endpoint(const char *url, const char *what, bool reachable, const char *why);

#endif
