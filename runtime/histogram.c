/* Lock-free fixed-bucket histograms. */
#include "runtime/histogram.h"

const double rt_histogram_bounds[RT_HISTOGRAM_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

void rt_histogram_observe(rt_histogram *h, double seconds)
{
    int i = 0;
    while (i < RT_HISTOGRAM_BUCKETS && seconds > rt_histogram_bounds[i])
        i++;
    __atomic_add_fetch(&h->counts[i], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&h->sum_ns, (uint64_t)(seconds > 0 ? seconds * 1e9 : 0), __ATOMIC_RELAXED);
    __atomic_add_fetch(&h->count, 1, __ATOMIC_RELAXED);
}

void rt_histogram_read(const rt_histogram *h, rt_histogram *out)
{
    /* The count is the sum of the buckets read, so that the +Inf bucket and _count agree
     * even while other threads record (Prometheus requires it). */
    out->count = 0;
    for (int i = 0; i <= RT_HISTOGRAM_BUCKETS; i++) {
        out->counts[i] = __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
        out->count += out->counts[i];
    }
    out->sum_ns = __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED);
}
