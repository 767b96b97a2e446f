/* Logs: one line per event on stdout, JSON by default ({"time","level","event",...}) or
 * text for people, filtered by level. Every answered request is one "request" line at level
 * info. Thread-safe: lines are written whole by one writer thread (request lines in
 * batches, within 50 ms; event lines at once), never interleaved. Logging never waits for
 * stdout: when stdout cannot keep up, lines are dropped and counted (svc_log_dropped), and
 * a "log lines dropped" warning says how many once it takes lines again. */
#ifndef RAYD_SERVICE_LOG_H
#define RAYD_SERVICE_LOG_H

#include <jansson.h>

#include "api/context.h"

typedef enum svc_log_level { SVC_LOG_DEBUG = 0, SVC_LOG_INFO, SVC_LOG_WARN, SVC_LOG_ERROR } svc_log_level;

/* Sets the format ("json" or "text") and the lowest level written ("debug", ...). Call once,
 * before other threads log. */
void svc_log_configure(const char *format, const char *level);

/* Changes the lowest level written (SIGHUP); any thread, any time. */
void svc_log_set_level(const char *level);

/* Writes an event line: {"time","level","event", ...fields}. fields is stolen (NULL for
 * none). level is "debug", "info", "warn" or "error". */
void svc_log_event(const char *level, const char *event, json_t *fields);

/* The access log: an api_request_logger (arg unused). Lines reach stdout within 50 ms. */
void svc_log_request(const api_request_summary *summary, void *arg);

/* Lines dropped so far because stdout could not keep up (or failed). Thread-safe. */
unsigned long long svc_log_dropped(void);

/* Waits until every line logged before the call has been written, or timeout seconds (a
 * stdout that nobody reads must not keep the process from exiting). */
void svc_log_flush(double timeout);

#endif
