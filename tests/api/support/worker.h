/* The example remote worker as a child process of an API test, and free loopback ports
 * for it.
 *
 * Environment: RAYD_TEST_WORKER, the worker script (default examples/python/worker.py, run
 * with python3 from the repository root; a .js script runs with node, e.g.
 * examples/node/worker.js). RAYD_TEST_VERBOSE: the worker's output goes to stderr. */
#ifndef RAYD_TESTS_API_SUPPORT_WORKER_H
#define RAYD_TESTS_API_SUPPORT_WORKER_H

#include <stdbool.h>
#include <sys/types.h>

/* A loopback TCP port free at the time of the call, or -1. */
int free_port(void);

/* Whether something accepts TCP connections on 127.0.0.1:port. */
bool port_accepts(int port);

/* Starts the worker on port. With wait, returns once the port accepts (up to 10 s). The
 * child's pid, or -1 on failure (said on stderr). */
pid_t worker_start(int port, bool wait);

/* SIGTERM, then SIGKILL after 5 s; reaps the child. pid <= 0 is ignored. */
void worker_stop(pid_t pid);

#endif
