/* RFC 9457 problem details: every error rayd answers is one of these, and a stored error
 * (rt_error) becomes one with its cause chain nested. Thread-safe. */
#ifndef RAYD_API_PROBLEM_H
#define RAYD_API_PROBLEM_H

#include <jansson.h>

#include "api/request.h"
#include "runtime/error.h"
#include "runtime/status.h"

/* Where each kind's page is served: a problem's "type" is this prefix and its title, a
 * URI reference relative to the server that answered (RFC 9457 section 3.1.1), so that it
 * resolves to a page rayd itself serves (GET /problems/{kind}). */
#define API_PROBLEM_TYPE_PREFIX "/problems/"

/* One kind of problem rayd answers with: the "title" of its problems and the last segment
 * of their "type". The table of kinds is the single source for the pages at
 * /problems/{kind}; tests/check_docs.sh checks that every title the code uses is in it. */
typedef struct api_problem_kind {
    const char *title;   /* "NotFound" */
    const char *status;  /* the HTTP status(es) it comes with, as text: "404" */
    const char *meaning; /* one or two sentences: what happened */
    const char *action;  /* what a client can do about it */
} api_problem_kind;

/* The table of kinds, sorted by title; *count receives its length. Static. */
const api_problem_kind *api_problem_kinds(size_t *count);

/* The kind with this title, or NULL. Static. */
const api_problem_kind *api_problem_kind_find(const char *title);

/* The HTML page describing a kind (new, free()); len receives its length. NULL when out of
 * memory. */
char *api_problem_kind_page(const api_problem_kind *kind, size_t *len);

/* The HTML index of every kind, linking each page (new, free()). NULL when out of
 * memory. */
char *api_problem_index_page(size_t *len);

/* A new problem object {"type","title","status","detail"} (new reference). title is the
 * error kind (one of api_problem_kinds); detail may be NULL. type is
 * API_PROBLEM_TYPE_PREFIX followed by title. */
json_t *api_problem_new(unsigned status, const char *title, const char *detail);

/* Causes nested at most; deeper ones are counted in "causes_omitted" on the last shown. */
#define API_PROBLEM_CAUSES_MAX 32

/* The problem object for a stored error, with its fields and a nested "cause" for each
 * error in the chain, up to API_PROBLEM_CAUSES_MAX deep (new reference). ref, if not NULL,
 * is added as "ref". */
json_t *api_problem_from_error(const rt_error *err, const char *ref);

/* The HTTP status of a stored error kind (424 for all of them). */
unsigned api_problem_status_of_kind(rt_error_kind kind);

/* Answers with a problem. extra (stolen, may be NULL) is merged into the body as
 * extension members. */
enum MHD_Result api_problem(api_request *req, unsigned status, const char *title,
                            const char *detail, json_t *extra);

/* printf-style detail. */
enum MHD_Result api_problemf(api_request *req, unsigned status, const char *title,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A request path as the problem's "instance" URI reference, percent-encoded where needed
 * (new reference, NULL when out of memory). */
json_t *api_problem_instance(const char *path);

/* Answers with a problem body already built (stolen), taking status from it. */
enum MHD_Result api_problem_send(api_request *req, json_t *problem);

/* Answers for a runtime status that is an error, with the matching HTTP status and title:
 * RT_ENOTFOUND 404, RT_ELOST 410, RT_EFULL 507, RT_EINVAL 400, RT_EEXIST 409,
 * RT_ELIMIT 429, RT_ESHUTDOWN 503, RT_ENOMEM 503, others 500. what names the thing. */
enum MHD_Result api_problem_status(api_request *req, rt_status status, const char *what);

#endif
