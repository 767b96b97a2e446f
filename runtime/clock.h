/* Time for the runtime: a monotonic clock for deadlines and a wall clock for display.
 * Both are seconds as doubles. Thread-safe. */
#ifndef RAYD_RUNTIME_CLOCK_H
#define RAYD_RUNTIME_CLOCK_H

/* Seconds on a monotonic clock (CLOCK_MONOTONIC); only differences mean anything. */
double rt_clock_monotonic(void);

/* Seconds since the Unix epoch (CLOCK_REALTIME). */
double rt_clock_wall(void);

/* Formats a wall-clock time as RFC 3339 UTC with milliseconds into out (at least 32 bytes):
 * "2026-11-25T22:36:30.123Z". Returns out. */
char *rt_clock_format(double wall_seconds, char *out, unsigned long out_size);

#endif
