/* A remote endpoint inside the test process, for remote functions and remote actor classes
 * whose calls must stay in flight exactly as long as a test wants: it answers each POST
 * with {"result":"done","state":{"n":1}}, but holds every call (except an actor's
 * "__init__") until the test releases it, so a test waits on what the endpoint saw
 * (stub_wait) instead of on a sleeping worker.
 *
 * It speaks just enough HTTP/1.1 for rayd's libcurl client (Content-Length bodies,
 * keep-alive) on 127.0.0.1, one thread per connection. A held call whose client hangs up
 * (rayd cancelled it) is counted as a hang-up and not answered.
 *
 * Thread-safety: every function may be called from any thread. */
#ifndef RAYD_TESTS_API_SUPPORT_STUB_ENDPOINT_H
#define RAYD_TESTS_API_SUPPORT_STUB_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct stub_endpoint stub_endpoint;

/* What the endpoint has seen so far. */
typedef struct stub_counts {
    size_t received; /* calls read (headers and body) */
    size_t held;     /* calls held now */
    size_t answered; /* answers written */
    size_t hangups;  /* held calls whose client closed the connection first */
} stub_counts;

/* Starts listening on an ephemeral port of 127.0.0.1. NULL on failure. */
stub_endpoint *stub_start(void);

/* The port it listens on. */
int stub_port(const stub_endpoint *stub);

/* Stops: releases held calls, closes every connection, waits for its threads, frees.
 * NULL accepted. */
void stub_stop(stub_endpoint *stub);

/* A snapshot of the counters. */
stub_counts stub_get_counts(stub_endpoint *stub);

/* Waits until at least `received` calls were read and at least `hangups` hang-ups seen,
 * or timeout_s passed (woken by the endpoint's threads, no polling). Returns true when
 * both held. */
bool stub_wait(stub_endpoint *stub, size_t received, size_t hangups, double timeout_s);

/* Answers every call held now. */
void stub_release(stub_endpoint *stub);

#endif
