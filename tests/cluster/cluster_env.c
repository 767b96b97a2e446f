/* The cluster tests' view of what run.sh started. See cluster_env.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/cluster/cluster_env.h"

static void set_url(rayd_server *s, const char *url)
{
    memset(s, 0, sizeof(*s));
    s->pid = -1;
    s->out_fd = -1;
    snprintf(s->base_url, sizeof(s->base_url), "%s", url);
    const char *colon = strrchr(url, ':');
    s->port = colon ? atoi(colon + 1) : 0;
}

static int load(cluster_env *env, bool allow_down);

int cluster_env_load(cluster_env *env)
{
    return load(env, false);
}

int cluster_env_load_alive(cluster_env *env)
{
    return load(env, true);
}

static int load(cluster_env *env, bool allow_down)
{
    memset(env, 0, sizeof(*env));
    const char *nodes = getenv("RAYD_CLUSTER_NODES"), *pids = getenv("RAYD_CLUSTER_PIDS"),
               *lb = getenv("RAYD_CLUSTER_LB");
    if (!nodes || !pids || !lb) {
        fprintf(stderr, "cluster tests: run them with tests/cluster/run.sh "
                        "(RAYD_CLUSTER_NODES, RAYD_CLUSTER_PIDS, RAYD_CLUSTER_LB)\n");
        return -1;
    }
    char urls[3][64];
    long p[3];
    if (sscanf(nodes, "%63s %63s %63s", urls[0], urls[1], urls[2]) != 3 ||
        sscanf(pids, "%ld %ld %ld", &p[0], &p[1], &p[2]) != 3) {
        fprintf(stderr, "cluster tests: RAYD_CLUSTER_NODES or RAYD_CLUSTER_PIDS malformed\n");
        return -1;
    }
    for (int i = 0; i < CLUSTER_NODES; i++) {
        set_url(&env->node[i], urls[i]);
        env->pid[i] = (pid_t)p[i];
    }
    set_url(&env->lb, lb);
    const char *redis = getenv("RAYD_CLUSTER_REDIS");
    long rpid = 0;
    if (!redis || sscanf(redis, "%ld %d", &rpid, &env->redis_port) != 2) {
        fprintf(stderr, "cluster tests: RAYD_CLUSTER_REDIS (\"pid port\") missing\n");
        return -1;
    }
    env->redis_pid = (pid_t)rpid;
    /* A test before this one may have stopped Redis and started another on the same port
     * (RAYD_CLUSTER_REDIS_RESTART): that one is paused and resumed from now on. */
    const char *restarted = getenv("RAYD_CLUSTER_REDIS_PIDFILE");
    FILE *pidfile = restarted ? fopen(restarted, "r") : NULL;
    if (pidfile) {
        if (fscanf(pidfile, "%ld", &rpid) == 1 && rpid > 0)
            env->redis_pid = (pid_t)rpid;
        fclose(pidfile);
    }
    const char *logs = getenv("RAYD_CLUSTER_LOGS");
    if (logs)
        sscanf(logs, "%511s %511s %511s", env->log[0], env->log[1], env->log[2]);
    for (int i = 0; i < CLUSTER_NODES; i++) {
        http_opts o = {.path = "/v1/status", .soft = true};
        http_resp *r = http_request_opts(&env->node[i], &o);
        json_t *cluster = r->json ? json_object_get(r->json, "cluster") : NULL;
        json_t *tag = json_object_get(cluster, "node");
        if (allow_down && r->status == 0) { /* a node a test killed */
            env->tag[i][0] = '\0';
            http_resp_free(r);
            continue;
        }
        if (r->status != 200 || !json_is_string(tag)) {
            fprintf(stderr, "cluster tests: %s/v1/status has no cluster.node (status %ld)\n",
                    urls[i], r->status);
            http_resp_free(r);
            return -1;
        }
        snprintf(env->tag[i], sizeof(env->tag[i]), "%s", json_string_value(tag));
        http_resp_free(r);
    }
    return 0;
}

char *cluster_redis_cli(const cluster_env *env, const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "redis-cli -p %d %s 2>&1", env->redis_port, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    char line[1024] = "";
    if (!fgets(line, sizeof(line), p))
        line[0] = '\0';
    pclose(p);
    line[strcspn(line, "\r\n")] = '\0';
    return strdup(line);
}

void cluster_ref_tag(const char *ref, char *tag)
{
    tag[0] = '\0';
    size_t len = strlen(ref);
    if (len < 25)
        return;
    size_t tag_len = len - 2 - 22;
    if (tag_len > 11 || ref[1 + tag_len] != '-')
        return;
    memcpy(tag, ref + 1, tag_len);
    tag[tag_len] = '\0';
}

http_resp *cluster_status(const rayd_server *node)
{
    http_resp *r = http_get(node, "/v1/status");
    assert_status(r, 200);
    return r;
}

json_t *cluster_status_node(const http_resp *status, const char *tag)
{
    json_t *nodes = json_object_get(json_object_get(status->json, "cluster"), "nodes");
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        json_t *t = json_object_get(n, "tag");
        if (json_is_string(t) && strcmp(json_string_value(t), tag) == 0)
            return n;
    }
    return NULL;
}

long long cluster_store_stat(const rayd_server *node, const char *name)
{
    http_resp *r = cluster_status(node);
    long long v = json_int(json_member(r->json, "object_store"), name);
    http_resp_free(r);
    return v;
}

json_t *cluster_log_event(const cluster_env *env, int i, const char *event, const char *key,
                          const char *value)
{
    FILE *f = env->log[i][0] ? fopen(env->log[i], "r") : NULL;
    if (!f)
        return NULL;
    json_t *found = NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while (!found && (len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n')
            break; /* a line still being written */
        json_t *j = json_loadb(line, (size_t)len, 0, NULL);
        const char *ev = json_string_value(json_object_get(j, "event"));
        const char *v = key ? json_string_value(json_object_get(j, key)) : NULL;
        if (ev && strcmp(ev, event) == 0 && (!key || (v && strcmp(v, value) == 0)))
            found = json_incref(j);
        json_decref(j);
    }
    free(line);
    fclose(f);
    return found;
}

pid_t cluster_start_node(const cluster_env *env, const char *log_name, const char *const *args,
                         rayd_server *node, cluster_env *log_env)
{
    memset(log_env, 0, sizeof(*log_env));
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", env->log[0]);
    char *slash = strrchr(dir, '/');
    snprintf(log_env->log[0], sizeof(log_env->log[0]), "%.*s/%s",
             slash ? (int)(slash - dir) : 1, slash ? dir : ".", log_name);
    char redis[64];
    snprintf(redis, sizeof(redis), "redis://127.0.0.1:%d", env->redis_port);
    const char *argv[64] = {rayd_bin(), "--bind", "127.0.0.1", "--port", "0"};
    size_t argc = 5;
    for (size_t i = 0; args && args[i] && argc + 1 < sizeof(argv) / sizeof(argv[0]); i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_env->log[0], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
            _exit(127);
        setenv("RAYD_CLUSTER", redis, 1);
        execv(rayd_bin(), (char *const *)argv);
        _exit(127);
    }
    if (pid < 0) {
        fprintf(stderr, "cannot fork another rayd\n");
        return -1;
    }
    memset(node, 0, sizeof(*node));
    node->pid = -1;
    node->out_fd = -1;
    double deadline = now_s() + 10;
    json_t *listening = NULL;
    while (!(listening = cluster_log_event(log_env, 0, "listening", NULL, NULL))) {
        if (now_s() > deadline || waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "another rayd did not start (%s)\n", log_env->log[0]);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return -1;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    node->port = (int)json_integer_value(json_object_get(listening, "port"));
    json_decref(listening);
    snprintf(node->base_url, sizeof(node->base_url), "http://127.0.0.1:%d", node->port);
    return pid;
}
