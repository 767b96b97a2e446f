/* What tests/cluster/run.sh started, for the cluster test binaries: the three nodes, the
 * nginx in front of them, and the nodes' process ids (for kill -9).
 *
 * Environment (set by run.sh):
 *   RAYD_CLUSTER_NODES  "http://127.0.0.1:P1 http://127.0.0.1:P2 http://127.0.0.1:P3"
 *   RAYD_CLUSTER_PIDS   "pid1 pid2 pid3", in the same order
 *   RAYD_CLUSTER_LB     "http://127.0.0.1:PN" (nginx, round-robin)
 *   RAYD_CLUSTER_REDIS  "PID PORT" of the redis-server the nodes share
 *   RAYD_CLUSTER_LOGS   "log1 log2 log3": the files the nodes' stdout goes to, same order
 *   RAYD_CLUSTER_WORKER_PORT  a port the nodes may call (--remote-allow): a test starts the
 *                       example Python worker there (remote actor classes)
 *
 * Include the cmocka prerequisites and tests/api/support/harness.h before this header. */
#ifndef RAYD_TESTS_CLUSTER_ENV_H
#define RAYD_TESTS_CLUSTER_ENV_H

#include <sys/types.h>

#define CLUSTER_NODES 3

typedef struct cluster_env {
    rayd_server node[CLUSTER_NODES]; /* only base_url and port are set (pid -1: not ours) */
    pid_t pid[CLUSTER_NODES];
    rayd_server lb;
    char tag[CLUSTER_NODES][16];     /* each node's tag, from its /v1/status */
    pid_t redis_pid;                 /* the running redis-server (the restarted one once a test restarted it) */
    int redis_port;
    char log[CLUSTER_NODES][512];    /* each node's stdout file ("" when not given) */
} cluster_env;

/* Reads the environment and each node's tag. 0, or -1 after printing why. */
int cluster_env_load(cluster_env *env);
/* The same, but a node that does not answer (one a test killed) is no error: its tag is
 * left "". */
int cluster_env_load_alive(cluster_env *env);

/* Runs `redis-cli -p <port> <args>` and returns its first output line (new string,
 * free()), or NULL when it could not run. */
char *cluster_redis_cli(const cluster_env *env, const char *args);

/* The owner tag of a cluster id (<prefix><tag>-<22 characters>), copied into tag (16
 * bytes); "" when ref has no tag. */
void cluster_ref_tag(const char *ref, char *tag);

/* /v1/status of a node, parsed (new response; free with http_resp_free). Fails the test
 * unless it is a 200. */
http_resp *cluster_status(const rayd_server *node);

/* The node entry with this tag in a status's cluster.nodes (borrowed), or NULL. */
json_t *cluster_status_node(const http_resp *status, const char *tag);

/* A store figure of a node (/v1/status object_store.<name>). */
long long cluster_store_stat(const rayd_server *node, const char *name);

/* The first JSON line in node i's stdout file with "event": event and key's string value
 * equal to value (any line of the event when key is NULL) (new reference), or NULL when
 * there is none (yet). */
json_t *cluster_log_event(const cluster_env *env, int i, const char *event, const char *key,
                          const char *value);

/* Starts one more rayd in the cluster: `rayd --bind 127.0.0.1 --port 0 <args...>` (args
 * NULL-terminated, may be NULL) with RAYD_CLUSTER naming env's Redis and its stdout in the
 * file log_name next to env's logs (a file, not a pipe read later: its first lines come as
 * it joins). log_env->log[0] receives that file's path, for cluster_log_event(log_env, 0,
 * ...). Waits (10 s at most) until it logs its port and fills *node (base_url, port; pid
 * -1: not the harness's to stop). Returns its pid, or -1 after printing why (a process
 * that started is killed then). It has not necessarily joined yet (its /readyz says). */
pid_t cluster_start_node(const cluster_env *env, const char *log_name, const char *const *args,
                         rayd_server *node, cluster_env *log_env);

#endif
