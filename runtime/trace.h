/* W3C Trace Context (traceparent) for rayd: a request's traceparent is accepted when valid,
 * and rayd's own span (a new parent-id in the caller's trace) is what it writes in its log
 * lines and passes on to remote functions and classes, so OpenTelemetry users can follow a
 * call from their client through rayd to the worker.
 *
 * Thread-safety: pure functions (the span id comes from getrandom). */
#ifndef RAYD_RUNTIME_TRACE_H
#define RAYD_RUNTIME_TRACE_H

#include <stdbool.h>

/* "00-" 32 hex "-" 16 hex "-" 2 hex, and the NUL. */
#define RT_TRACEPARENT_SIZE 56

/* When given is a valid traceparent (version 00, or a later version read as 00 as the
 * spec asks; lower-case hex; trace-id and parent-id not all zeros), writes into out a
 * version-00 traceparent with the same trace-id and flags and a new random parent-id (the
 * span rayd's work is), and returns true. Otherwise out is "" and false. given may be
 * NULL. */
bool rt_traceparent_child(const char *given, char out[RT_TRACEPARENT_SIZE]);

#endif
