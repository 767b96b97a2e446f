/* rt_cluster: this node's identity and the cluster's membership, in cluster mode
 * (RAYD_CLUSTER). Without it nothing here runs and nothing here is called.
 *
 * - Identity: the node's tag is a number from INCR on a Redis counter, in base62 ("1", "2",
 *   ... "A" ...), fixed for the life of the process. Once the node has its tag, every id
 *   it makes carries it (runtime/ref.h), so any node can tell an id's owner from the id.
 * - Heartbeat: every second the node writes node:<tag> (a Redis hash: url, epoch,
 *   started, queued, running, memory; its C modules only when the record is made) with a
 *   3 s expiry. A node whose record is gone is dead. The hash `nodes` maps every tag ever seen to "<last seen ms> <url>", so that an
 *   id of a dead node (410) can be told from an id of a node nobody knows (404).
 * - Membership: every second the node reads `nodes` and the records of the recent ones. A
 *   node that dies is seen dead by the others within 3 s (expiry) + 1 s (scan).
 * - Redis unreachable: the last known membership stays as it was (nobody is declared dead
 *   for want of Redis); after reconnecting, or after finding its own record gone (Redis
 *   lost its data), a node declares another dead only once that one's record has had one
 *   expiry period to come back. Nodes known before stay known (dead, not unknown) even
 *   when Redis forgot them.
 * - The node has joined once it has written its record twice and read the others';
 *   /readyz answers 503 until then.
 *
 * Thread-safety: every function may be called from any thread. The membership table has
 * one mutex; lookups copy out what they need. The Redis work runs on the thread of
 * runtime/cluster_redis.c. */
#ifndef RAYD_RUNTIME_CLUSTER_H
#define RAYD_RUNTIME_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "runtime/cluster_command.h"
#include "runtime/object_store.h"
#include "runtime/ref.h"
#include "runtime/scheduler.h"

#define RT_CLUSTER_URL_MAX 256        /* longest advertised URL, with its NUL */
#define RT_CLUSTER_HEARTBEAT 1.0      /* seconds between heartbeats and scans */
#define RT_CLUSTER_RECORD_TTL_MS 3000 /* a heartbeat record's expiry */

typedef struct rt_cluster rt_cluster;

/* A node's load, from its heartbeat. */
typedef struct rt_cluster_load {
    size_t queued;  /* jobs (tasks, actor calls) waiting for a worker */
    size_t running; /* workers busy */
    size_t memory;  /* bytes in the object store */
} rt_cluster_load;

/* Runs on the Redis thread after every successful heartbeat and scan, with the connected
 * hiredis context (blocking commands with the 1 s timeout): the actor directory
 * (runtime/cluster_actors.h) restarts dead nodes' actors here. rejoined is true when this
 * node's own record had expired (Redis lost its data, or this node stalled past the
 * expiry): what it held may have been taken over meanwhile. Returns 0, or -1 with why
 * (the connection is then made again). */
struct redisContext;
typedef int (*rt_cluster_tick_fn)(struct redisContext *rc, bool rejoined, void *arg, char *why,
                                  size_t why_size);

/* Called with one line about a change (joined, a node up or down, Redis lost or back), on
 * the Redis thread. level is "info" or "warn". Strings are borrowed for the call. */
typedef void (*rt_cluster_log_fn)(const char *level, const char *message, void *arg);

typedef struct rt_cluster_config {
    const char *redis_url;      /* redis://[[user]:password@]host[:port][/db]; borrowed */
    const char *redis_password; /* wins over the URL's when not NULL; borrowed */
    rt_store *store;            /* borrowed: load figures */
    rt_scheduler *scheduler;    /* borrowed: load figures */
    rt_cluster_log_fn log;      /* may be NULL */
    void *log_arg;
    const char *modules; /* this node's C modules as JSON (cluster_modules.h; rt_modules_list
                          * without paths), carried by its record; NULL: none. Copied */
} rt_cluster_config;

/* Sets the tick hook (before rt_cluster_start). */
void rt_cluster_on_tick(rt_cluster *cluster, rt_cluster_tick_fn fn, void *arg);

/* Whether this node holds its lease: its heartbeat record was last written less than the
 * record's expiry ago, less a margin (RT_CLUSTER_LEASE_MARGIN), by this node's monotonic
 * clock, and the work after a rejoin is done. Another node may take over what this node
 * holds only once its record is gone, so while this is true nothing was taken over. Cheap:
 * one atomic load. */
#define RT_CLUSTER_LEASE_MARGIN 0.5
bool rt_cluster_lease_held(const rt_cluster *cluster);

/* This node's tag ("" until joined). Borrowed: fixed for the life of the process. */
const char *rt_cluster_tag(const rt_cluster *cluster);

/* Makes the cluster object; checks the Redis URL but does not connect yet. Returns NULL
 * with a one-line reason in err (err_size bytes). */
rt_cluster *rt_cluster_new(const rt_cluster_config *config, char *err, size_t err_size);

/* Starts joining: the Redis thread connects (retrying with backoff until it can), takes a
 * tag, and heartbeats from then on. advertise_url (copied; http:// or https://, shorter
 * than RT_CLUSTER_URL_MAX) is how the other nodes reach this one. Returns 0, or -1 when the
 * thread cannot start or the URL is too long. */
int rt_cluster_start(rt_cluster *cluster, const char *advertise_url);

/* Runs fn(arg) on the Redis thread after each heartbeat once joined (registrations poll
 * their version so). fn must not block: it queues commands (rt_cluster_command). Set
 * before rt_cluster_start. */
void rt_cluster_on_joined_tick(rt_cluster *cluster, void (*fn)(void *arg), void *arg);

/* Stops heartbeating and removes this node's record (peers see it gone at their next
 * scan), then frees everything. NULL accepted. */
void rt_cluster_free(rt_cluster *cluster);

/* Whether this node has joined (has its tag, wrote its record, read the others'). */
bool rt_cluster_joined(const rt_cluster *cluster);

/* Whether Redis answers now (a heartbeat went through since the last failure). Cheap: one
 * atomic load. */
bool rt_cluster_redis_up(const rt_cluster *cluster);

/* Who owns an id. */
typedef enum rt_owner {
    RT_OWNER_SELF = 0, /* this node, or an id without a tag (made by a node alone) */
    RT_OWNER_ALIVE,    /* another node, alive: its URL is copied out */
    RT_OWNER_DEAD,     /* another node whose heartbeat stopped: its objects are lost */
    RT_OWNER_UNKNOWN   /* a tag no node has: the id was never made by this cluster */
} rt_owner;

/* Finds the owner of id. tag receives the owner's tag ("" for ids without one); url
 * (url_size bytes, may be NULL) the owner's URL when ALIVE or DEAD. Cheap for this node's
 * own ids (no lock). */
rt_owner rt_cluster_owner(rt_cluster *cluster, const char *id, char tag[RT_NODE_TAG_SIZE],
                          char *url, size_t url_size);

/* The same for a tag (RT_OWNER_SELF for this node's own tag). */
rt_owner rt_cluster_owner_of_tag(rt_cluster *cluster, const char *tag, char *url,
                                 size_t url_size);

/* One node as the membership table has it. */
typedef struct rt_cluster_node {
    char tag[RT_NODE_TAG_SIZE];
    char url[RT_CLUSTER_URL_MAX];
    bool alive;
    bool self;
    long long epoch;   /* counts the node's (re)joins, cluster-wide increasing */
    double started_at; /* wall clock seconds; 0 when unknown */
    rt_cluster_load load;
} rt_cluster_node;

/* A snapshot of this node and the cluster. */
typedef struct rt_cluster_info {
    bool joined;
    bool redis_up;
    char tag[RT_NODE_TAG_SIZE]; /* "" until joined */
    char url[RT_CLUSTER_URL_MAX];
    long long epoch;
    char redis_error[256];      /* why Redis is unreachable, when it is */
} rt_cluster_info;

void rt_cluster_get_info(rt_cluster *cluster, rt_cluster_info *out);

/* Every node known (this one first, then by tag number): a new array in *nodes (free()),
 * and the count. 0 and NULL when out of memory. */
size_t rt_cluster_nodes(rt_cluster *cluster, rt_cluster_node **nodes);

/* ---- C modules (per node: cluster_modules.h) ---- */

/* The modules node tag loaded (this node's own too), as its record carries them: a new JSON
 * array of {"name", "functions", "classes"}, or NULL when not known: the node is unknown,
 * or its record has not been read with them yet (or carries none: a rayd before modules
 * were recorded). */
json_t *rt_cluster_node_modules(rt_cluster *cluster, const char *tag);

/* Whether node tag's modules, by its record, provide name as a function (is_class false)
 * or an actor class. False for this node and for nodes whose modules are not known. */
bool rt_cluster_node_provides(rt_cluster *cluster, const char *tag, const char *name,
                              bool is_class);

/* The live nodes other than this one whose modules provide name as a function (is_class
 * false) or a class: a new {"module": the first one's module, "nodes": [{"node": tag,
 * "url", "module"}]}, or NULL when none does (or out of memory). */
json_t *rt_cluster_module_providers(rt_cluster *cluster, const char *name, bool is_class);

/* Runs one Redis command for a request handler without blocking it (cluster_command.h):
 * done(answer, arg) is called once, on the command thread, when it returns 0. -1 when the
 * queue is full or the node is stopping (done never called). */
int rt_cluster_command(rt_cluster *cluster, int argc, const char *const *argv,
                       rt_redis_done_fn done, void *arg);

/* Fails the commands still queued and takes no more (server stop: no request may stay
 * suspended on Redis). NULL accepted. */
void rt_cluster_commands_close(rt_cluster *cluster);

#endif
