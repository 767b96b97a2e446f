/* Structured logs: one JSON object per line on stdout, for people and for log shippers.
 * Thread-safe: each line is written with a single call under stdio's lock. */
#ifndef RAYD_SERVICE_LOG_H
#define RAYD_SERVICE_LOG_H

#include <jansson.h>

/* Writes {"time","level","event", ...fields}. fields is stolen (NULL for none). */
void svc_log_event(const char *level, const char *event, json_t *fields);

#endif
