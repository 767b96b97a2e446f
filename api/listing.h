/* Listings (GET /v1/objects, GET /v1/tasks): one page of records, on one node or merged
 * across the cluster behind one cursor.
 *
 * A node alone answers from its own records with a cursor that is its creation order
 * (unchanged from before cluster mode). In cluster mode, without `?node=`, a page merges
 * every live node's records: each node is asked (over the peer route
 * GET /v1/cluster/list/{objects|tasks}) for one page from its own position, the pages are
 * merged by creation time, and the next cursor holds every node's position (see
 * listing.c). `?node=<tag>` lists one node only (relayed to it when it is another node).
 *
 * Each resource says how to list its own records with an api_list_kind.
 *
 * Thread-safety: as requests. */
#ifndef RAYD_API_LISTING_H
#define RAYD_API_LISTING_H

#include <stdint.h>

#include "api/request.h"

#define API_LIST_LIMIT_DEFAULT 100
#define API_LIST_LIMIT_MAX 1000

/* One page of local records, as a kind's `local` fills it. */
typedef struct api_list_page {
    json_t *items;  /* array of the records' JSON (owned) */
    uint64_t *seqs; /* per item: its position on this node (limit entries, owned); NULL
                       when not wanted (a node answering alone) */
    double *times;  /* per item: its creation time, wall clock seconds (owned); NULL
                       with seqs */
    size_t n;
    uint64_t next;  /* the cursor after this page, 0 when there is no more */
} api_list_page;

typedef struct api_list_kind {
    const char *key;       /* the page's member: "objects", "tasks" */
    const char *path;      /* "/v1/objects" */
    const char *peer_path; /* "/v1/cluster/list/objects" */
    const char *const *filters; /* query arguments passed on to other nodes, NULL-ended */
    /* Checks the filters; answers 400 itself and returns -1 on a bad one. */
    int (*check)(api_request *req);
    /* Lists up to limit local records after position `after` into page (items, and seqs
     * and times when not NULL, already allocated for limit entries); sets n and next. 0,
     * or -1 when out of memory. */
    int (*local)(api_request *req, uint64_t after, size_t limit, api_list_page *page);
} api_list_kind;

/* GET <kind->path>: the whole handler. */
enum MHD_Result api_list(api_request *req, const api_list_kind *kind);

/* GET <kind->peer_path>: this node's records with their positions and times, for a node
 * merging a page: {"items": [...], "seqs": [...], "times": [...], "next": N}. */
enum MHD_Result api_list_peer(api_request *req, const api_list_kind *kind);

#endif
