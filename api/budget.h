/* The budget for memory that requests hold in flight (RAYD_BODY_BUDGET): bodies being
 * received, and what parked requests keep while they wait (their body, its parsed JSON,
 * their watchers). Per-request limits (RAYD_MAX_BODY, RAYD_MAX_PARKED) do not bound the
 * total: eight parallel 200 MiB uploads, or parked batch gets of 100,000 refs, would
 * otherwise hold gigabytes beside the object store's limit. A request takes its share
 * before the memory is allocated (a Content-Length at once, a chunked body as it grows,
 * a park when it parks) and gives it all back when it completes. What cannot get its
 * share is refused: 503 ServiceUnavailable with Retry-After while other requests hold the
 * budget, 413 when the body alone is larger than the whole budget.
 *
 * Thread-safety: the budget's counters are atomics; a request's share is touched by the
 * one MHD thread that serves it. */
#ifndef RAYD_API_BUDGET_H
#define RAYD_API_BUDGET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "api/request.h"

/* Takes bytes from the budget; false (nothing taken) when they do not fit. */
bool api_budget_take(api_budget *budget, size_t bytes);
/* Gives bytes back. */
void api_budget_give(api_budget *budget, size_t bytes);

/* Makes req hold at least total bytes of its context's budget (taking the difference).
 * 0, or -1 when the budget cannot give them (req's share is unchanged then). */
int api_budget_reserve(api_request *req, size_t total);

/* Gives back all req holds. Called when the request completes. */
void api_budget_release(api_request *req);

/* For a request about to park on nwatch refs: reserves what it keeps while parked (its
 * body, the parsed JSON, the park and its watchers). 0, or -1 after counting a refusal;
 * the caller answers 503. */
int api_budget_reserve_parked(api_request *req, size_t nwatch);

/* Counts a request refused for the budget (for /v1/status and /metrics). */
void api_budget_count_refusal(api_request *req);

/* Roughly the bytes jansson allocates for value (nodes, strings, tables). */
size_t api_json_cost(const json_t *value);

#endif
