/* rt_histogram: a fixed-bucket latency histogram in seconds, shaped for Prometheus
 * (cumulative "le" buckets, a sum and a count). Recording is lock-free: a few relaxed
 * atomic adds. Thread-safe. */
#ifndef RAYD_RUNTIME_HISTOGRAM_H
#define RAYD_RUNTIME_HISTOGRAM_H

#include <stdint.h>

/* Upper bounds of the buckets, in seconds, smallest first; the +Inf bucket is implicit. */
#define RT_HISTOGRAM_BUCKETS 16
extern const double rt_histogram_bounds[RT_HISTOGRAM_BUCKETS];

typedef struct rt_histogram {
    uint64_t counts[RT_HISTOGRAM_BUCKETS + 1]; /* per bucket, not cumulative; last is +Inf */
    uint64_t sum_ns;
    uint64_t count;
} rt_histogram;

/* Records one observation. h must be zero-initialised before first use. */
void rt_histogram_observe(rt_histogram *h, double seconds);

/* Copies a snapshot: each field read atomically, count equal to the sum of the buckets
 * read (the sum may lag by observations in flight). */
void rt_histogram_read(const rt_histogram *h, rt_histogram *out);

#endif
