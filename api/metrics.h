/* HTTP metrics and the Prometheus text exposition (format 0.0.4) of everything rayd
 * measures: requests by route, method and status, request durations by route, and the
 * runtime's figures read at scrape time. Recording is lock-free; thread-safe. */
#ifndef RAYD_API_METRICS_H
#define RAYD_API_METRICS_H

#include <stddef.h>

#include "api/context.h"

typedef struct api_metrics api_metrics;

api_metrics *api_metrics_new(void);
void api_metrics_free(api_metrics *metrics); /* NULL accepted */

/* Records one answered request. route is an index into the route table, or -1 when no
 * route matched. */
void api_metrics_record(api_metrics *metrics, int route, const char *method, unsigned status,
                        double seconds);

/* Requests answered so far: all of them, and those of the /dashboard routes (for
 * /v1/status, so that the dashboard's overview needs no /metrics scrape, and so that anyone
 * can see the dashboard costs nothing while no one looks: its count stands still). */
void api_metrics_request_totals(api_metrics *metrics, unsigned long long *all,
                                unsigned long long *dashboard);

/* The whole exposition text (malloc'd, *len bytes), or NULL when out of memory. */
char *api_metrics_render(api_metrics *metrics, const api_context *ctx, size_t *len);

#endif
