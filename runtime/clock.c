/* Monotonic and wall clocks, and RFC 3339 formatting. */
#include "runtime/clock.h"

#include <stdio.h>
#include <time.h>

double rt_clock_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double rt_clock_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *rt_clock_format(double wall_seconds, char *out, unsigned long out_size)
{
    time_t secs = (time_t)wall_seconds;
    int millis = (int)((wall_seconds - (double)secs) * 1000.0);
    if (millis < 0)
        millis = 0;
    if (millis > 999)
        millis = 999;
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, out_size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    return out;
}
