/* rayd's entry point: read the configuration, build the runtime, serve HTTP, reload what
 * can change on SIGHUP, and stop cleanly on SIGTERM or SIGINT. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api/live.h"
#include "api/park.h"
#include "api/registrations.h"
#include "api/server.h"
#include "runtime/clock.h"
#include "runtime/cluster.h"
#include "runtime/cluster_actors.h"
#include "runtime/cluster_fetch.h"
#include "runtime/cluster_names.h"
#include "runtime/cluster_peer.h"
#include "runtime/events.h"
#include "runtime/module.h"
#include "service/allocator.h"
#include "service/cli.h"
#include "service/config.h"
#include "service/log.h"
#include "service/reload.h"

/* Raises the open-file limit to its hard maximum: each connection is a descriptor. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* True while tasks or actor calls are queued or running. */
static int work_in_flight(const api_context *ctx)
{
    rt_tasks_stats ts;
    rt_scheduler_stats ss;
    rt_tasks_get_stats(ctx->tasks, &ts);
    rt_scheduler_get_stats(ctx->scheduler, &ss);
    return ts.by_state[RT_TASK_RUNNING] > 0 || ts.by_state[RT_TASK_PENDING_NODE_ASSIGNMENT] > 0 ||
           ss.busy > 0 || ss.queued > 0;
}

/* Graceful drain, as a load balancer expects: /readyz turns 503 at once, new work is
 * refused with 503, parked requests are answered now with what there is, and running work
 * gets drain_timeout seconds to finish. A second signal ends the process at once. */
static void drain(api_context *ctx, const sigset_t *signals, double drain_timeout, int sig)
{
    __atomic_store_n(&ctx->lifecycle, API_DRAINING, __ATOMIC_RELEASE);
    svc_log_event("info", "draining",
                  json_pack("{s:s,s:f}", "signal", strsignal(sig), "drain_timeout", drain_timeout));
    api_parking_wake_all(ctx->parking);
    double deadline = rt_clock_monotonic() + drain_timeout;
    while (work_in_flight(ctx) && rt_clock_monotonic() < deadline) {
        struct timespec tick = {0, 50 * 1000 * 1000};
        int again = sigtimedwait(signals, NULL, &tick);
        if (again > 0) {
            svc_log_event("warn", "stopped at once", json_pack("{s:s}", "signal", strsignal(again)));
            svc_log_flush(0.5);
            _exit(1);
        }
    }
    if (work_in_flight(ctx))
        svc_log_event("warn", "drain timeout: cancelling running work", NULL);
}

/* Cluster mode's news (joined, a node up or down, Redis lost or back) as log lines. */
static void cluster_log(const char *level, const char *message, void *arg)
{
    (void)arg;
    svc_log_event(level, "cluster", json_pack("{s:s}", "detail", message));
}

/* The cluster as the actors' name hook sees it: set once made, cleared (under the lock)
 * before it is freed, while workers may still end actors. */
typedef struct names_hook {
    pthread_mutex_t lock;
    rt_cluster *cluster;
    rt_actor_dir *dir; /* the actor directory, set and cleared with cluster */
} names_hook;

/* Cluster mode: a named actor died or was killed here, so its name is freed in Redis too
 * (compare-and-delete: only if it still names this actor). Only queues a command. */
static void actor_name_freed(const char *name, const char *actor_id, void *arg)
{
    names_hook *hook = arg;
    pthread_mutex_lock(&hook->lock);
    if (hook->cluster)
        rt_cluster_name_release(hook->cluster, name, actor_id, NULL, NULL);
    pthread_mutex_unlock(&hook->lock);
}

/* Cluster mode: a restartable actor died or was killed here, so its directory record goes
 * (only queues a command). */
static void actor_ended(const char *actor_id, void *arg)
{
    names_hook *hook = arg;
    pthread_mutex_lock(&hook->lock);
    if (hook->dir)
        rt_actor_dir_ended(hook->dir, actor_id);
    pthread_mutex_unlock(&hook->lock);
}

/* Cluster mode: a restartable actor restarted here after a fatal method error: its record
 * counts it, so that a restart elsewhere respects max_restarts. */
static void actor_restarted(const char *actor_id, unsigned restarts, void *arg)
{
    names_hook *hook = arg;
    pthread_mutex_lock(&hook->lock);
    if (hook->dir)
        rt_actor_dir_restarted(hook->dir, actor_id, restarts);
    pthread_mutex_unlock(&hook->lock);
}

/* Cluster mode: whether this node may run its restartable actors' calls now. The cluster
 * is read without the lock: it is freed only after the actors stopped running calls. */
static void *g_lease_cluster;
static bool actor_lease_held(void *arg)
{
    (void)arg;
    rt_cluster *cluster = __atomic_load_n((rt_cluster **)&g_lease_cluster, __ATOMIC_ACQUIRE);
    return !cluster || rt_cluster_lease_held(cluster);
}

/* The URL other nodes reach this one by: RAYD_ADVERTISE_URL, else the bind address (or,
 * binding every address, the host name) and the port listened on. */
static void advertise_url(const svc_config *config, unsigned port, char *out, size_t size)
{
    if (config->advertise_url) {
        snprintf(out, size, "%s", config->advertise_url);
        return;
    }
    const char *bind = config->api.bind;
    char host[256];
    if (strcmp(bind, "0.0.0.0") == 0 || strcmp(bind, "::") == 0) {
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(out, size, "http://%.200s:%u", host, port);
    } else if (strchr(bind, ':')) {
        snprintf(out, size, "http://[%.200s]:%u", bind, port);
    } else {
        snprintf(out, size, "http://%.200s:%u", bind, port);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && svc_cli_is_command(argv[1]))
        return svc_cli_main(argc, argv); /* the command line client, not the daemon */
    svc_config config;
    switch (svc_config_load(&config, argc, argv, stdout, stderr)) {
    case SVC_CONFIG_EXIT_OK: return 0;
    case SVC_CONFIG_ERROR: return 2;
    case SVC_CONFIG_OK: break;
    }
    svc_log_configure(config.log_format, config.log_level);
    rt_events_set_sink(svc_log_event); /* before modules load: "module loaded" is one */
    raise_fd_limit();
    svc_allocator_configure();

    /* Signals are taken synchronously by the main thread below; every other thread
     * inherits the blocked mask. SIGPIPE is ignored: a vanished client is not fatal. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigset_t main_signals = stop_signals; /* and SIGHUP: reload (only before draining) */
    sigaddset(&main_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &main_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    rt_store_config store_config = {.memory_limit = config.api.memory_limit,
                                    .max_tombstones = config.api.max_tombstones,
                                    .result_ttl = config.result_ttl};
    rt_spill *spill = NULL;
    if (strcmp(config.on_full, "evict") == 0) {
        store_config.on_full = RT_ON_FULL_EVICT;
    } else if (strcmp(config.on_full, "refuse") == 0) {
        store_config.on_full = RT_ON_FULL_REFUSE;
    } else {
        rt_spill_config spill_config = {.dir = config.spill_dir,
                                        .disk_limit = config.spill_limit};
        char spill_err[PATH_MAX + 128];
        if (rt_spill_open(&spill_config, &spill, spill_err, sizeof(spill_err)) != RT_OK) {
            fprintf(stderr, "rayd: %s\n", spill_err);
            return 2;
        }
        store_config.on_full = RT_ON_FULL_SPILL;
        store_config.spill = spill;
    }
    rt_store *store = rt_store_new(&store_config);
    rt_registry *registry = rt_registry_new();
    rt_scheduler *scheduler = rt_scheduler_new(config.api.workers);
    rt_tasks_config tasks_config = {.max_pending = config.api.max_pending_tasks,
                                    .max_kept = config.api.max_task_records};
    rt_tasks *tasks = store && registry && scheduler
                          ? rt_tasks_new(store, registry, scheduler, &tasks_config)
                          : NULL;
    rt_remote *remote = rt_remote_new(config.api.max_body);
    api_live *live = api_live_new();
    svc_reloader reloader;
    rt_cluster *cluster = NULL;
    static names_hook hook = {PTHREAD_MUTEX_INITIALIZER, NULL};
    rt_actors_config actors_config = {.max_kept_dead = config.api.max_dead_actors,
                                      .name_freed = actor_name_freed,
                                      .name_freed_arg = &hook,
                                      .ended = actor_ended,
                                      .restarted = actor_restarted,
                                      .lease_held = actor_lease_held,
                                      .hooks_arg = &hook};
    rt_actors *actors = tasks ? rt_actors_new(store, scheduler, &actors_config) : NULL;
    rt_sessions_config sessions_config = {.max_sessions = config.api.max_sessions,
                                          .max_ttl = config.api.session_max_ttl};
    rt_sessions *sessions = actors ? rt_sessions_new(store, tasks, actors, &sessions_config)
                                   : NULL;
    if (!actors || !sessions || !remote || !live ||
        svc_reloader_init(&reloader, argc, argv, &config, live) != 0 ||
        rt_builtins_register(registry) != RT_OK ||
        rt_builtin_classes_register(actors) != RT_OK) {
        fprintf(stderr, "rayd: cannot start the runtime (out of memory or threads)\n");
        return 1;
    }
    char module_err[512];
    if (rt_modules_load(config.modules.items, config.modules.count, registry, actors,
                        module_err, sizeof(module_err)) != RT_OK) {
        fprintf(stderr, "rayd: %s\n", module_err);
        rt_remote_free(remote);
        rt_scheduler_free(scheduler);
        rt_sessions_free(sessions);
        rt_actors_free(actors);
        rt_tasks_free(tasks);
        rt_registry_free(registry);
        rt_store_free(store);
        rt_spill_close(spill);
        api_live_free(live);
        svc_config_release(&config);
        return 2;
    }
    rt_peer *peer = NULL;
    rt_fetch *fetch = NULL;
    rt_actor_dir *actor_dir = NULL;
    if (config.cluster) {
        /* The modules go into this node's heartbeat record: the others learn them. */
        json_t *modules = rt_modules_list(false);
        char *modules_text = modules ? json_dumps(modules, JSON_COMPACT) : NULL;
        json_decref(modules);
        rt_cluster_config cluster_config = {
            .redis_url = config.cluster,
            .redis_password = config.cluster_password,
            .store = store,
            .scheduler = scheduler,
            .log = cluster_log,
            .modules = modules_text,
        };
        char cluster_err[256];
        cluster = modules_text
                      ? rt_cluster_new(&cluster_config, cluster_err, sizeof(cluster_err))
                      : NULL;
        if (!modules_text)
            snprintf(cluster_err, sizeof(cluster_err), "out of memory");
        free(modules_text);
        peer = cluster ? rt_peer_new(config.api.max_body) : NULL;
        fetch = peer ? rt_fetch_new(store, cluster, peer, config.api.cluster_token) : NULL;
        actor_dir = fetch ? rt_actor_dir_new(cluster, actors, fetch) : NULL;
        if (actor_dir)
            rt_cluster_on_tick(cluster, rt_actor_dir_tick, actor_dir);
        if (!cluster || !peer || !fetch || !actor_dir) {
            fprintf(stderr, "rayd: RAYD_CLUSTER: %s\n",
                    cluster ? "cannot start the peer client" : cluster_err);
            return 2;
        }
    }
    api_context ctx = {
        .config = config.api,
        .cluster = cluster,
        .peer = peer,
        .fetch = fetch,
        .actor_dir = actor_dir,
        .store = store,
        .registry = registry,
        .scheduler = scheduler,
        .tasks = tasks,
        .actors = actors,
        .sessions = sessions,
        .remote = remote,
        .live = live,
        .version = svc_version(),
        .started_wall = rt_clock_wall(),
        .started_mono = rt_clock_monotonic(),
        .allocator_stats = svc_allocator_stats,
        .log_request = svc_log_request,
        .log_dropped = svc_log_dropped,
    };
    char err[256];
    api_server *server = api_server_start(&ctx, err, sizeof(err));
    if (!server) {
        fprintf(stderr, "rayd: %s\n", err);
        return 1;
    }
    char advertise[RT_CLUSTER_URL_MAX] = "";
    if (cluster) {
        advertise_url(&config, api_server_port(server), advertise, sizeof(advertise));
        rt_cluster_on_joined_tick(cluster, api_registrations_tick, &ctx); /* registrations' version */
        if (rt_cluster_start(cluster, advertise) != 0) {
            fprintf(stderr, "rayd: cannot start cluster mode (out of threads?)\n");
            return 1;
        }
        pthread_mutex_lock(&hook.lock);
        hook.cluster = cluster;
        hook.dir = actor_dir;
        pthread_mutex_unlock(&hook.lock);
        __atomic_store_n((rt_cluster **)&g_lease_cluster, cluster, __ATOMIC_RELEASE);
    }
    /* Ready before we say so: a client that waits for the listening line may go at once
     * (in cluster mode /readyz also waits for the node to join). */
    __atomic_store_n(&ctx.lifecycle, API_READY, __ATOMIC_RELEASE);
    json_t *listening = json_pack(
        "{s:s,s:i,s:s,s:i,s:i,s:I,s:I,s:f,s:s}", "address", config.api.bind, "port",
        (int)api_server_port(server), "version", svc_version(), "http_threads",
        (int)config.api.http_threads, "workers", (int)config.api.workers, "memory_limit",
        (json_int_t)config.api.memory_limit, "max_body", (json_int_t)config.api.max_body,
        "max_wait", config.api.max_wait, "allocator", svc_allocator_name());
    if (listening && api_server_admin_port(server))
        json_object_set_new(listening, "admin_port",
                            json_integer((json_int_t)api_server_admin_port(server)));
    svc_log_event("info", "listening", listening);
    if (!api_server_admin_port(server) && config.api.max_parked >= config.api.connection_limit)
        svc_log_event("warn", "parked requests can take every connection",
                      json_pack("{s:I,s:i,s:s}", "max_parked", (json_int_t)config.api.max_parked,
                                "connection_limit", (int)config.api.connection_limit, "hint",
                                "lower --max-parked, or give probes --admin-port"));
    if (cluster)
        svc_log_event("info", "cluster",
                      json_pack("{s:s,s:s}", "detail", "joining the cluster", "advertise_url",
                                advertise));

    /* The main thread's job from here: wait for a stop signal, reload on SIGHUP, and once
     * a second expire objects whose TTL has passed and sessions whose lease has. */
    int sig = 0;
    while (sig <= 0) {
        struct timespec tick = {1, 0};
        sig = sigtimedwait(&main_signals, NULL, &tick);
        if (sig == SIGHUP) {
            svc_reload(&reloader);
            sig = 0;
        }
        rt_sessions_expire(sessions, rt_clock_wall());
        rt_store_expire(store);
    }
    drain(&ctx, &stop_signals, config.drain_timeout, sig);
    /* Stop in dependency order, each part after what feeds it work:
     * 1. HTTP: parked requests are answered (counted down, not slept on), then
     *    libmicrohttpd stops; no request makes new work after this.
     * 2. Actors die (calls not run resolve to ActorDied) and tasks are cancelled (queued
     *    ones never run, running ones see their flag, remote attempts are aborted).
     * 3. The remote thread: posts are refused from here (the caller gets an error, not a
     *    freed handle), and calls in flight complete as cancelled on this thread.
     * 4. The workers run what those completions queued (their posts are refused) and
     *    stop; only then is anything freed, in the reverse order of creation. */
    api_server_stop(server); /* closes the peer client first: forwarded requests end */
    rt_fetch_free(fetch);     /* its polls ended with the peer client's close */
    pthread_mutex_lock(&hook.lock);
    hook.cluster = NULL;
    hook.dir = NULL;
    pthread_mutex_unlock(&hook.lock);
    /* Fenced actors' queued calls run unfenced from here on: they are killed below
     * before anything else runs them, and this node's record is gone (its actors are
     * restarted elsewhere). */
    __atomic_store_n((rt_cluster **)&g_lease_cluster, NULL, __ATOMIC_RELEASE);
    rt_actor_dir_close(actor_dir); /* remote calls still completing keep no state */
    rt_cluster_free(cluster); /* removes this node's record: peers see it gone at once */
    rt_peer_free(peer);
    rt_actors_stop(actors);
    rt_tasks_cancel_all(tasks);
    rt_remote_stop(remote);
    rt_scheduler_free(scheduler);
    rt_remote_free(remote);
    rt_actor_dir_free(actor_dir); /* after the last remote call that could keep a state */
    rt_sessions_free(sessions); /* nothing to clean up: everything is going */
    rt_actors_free(actors);
    rt_tasks_free(tasks);
    rt_registry_free(registry);
    rt_store_free(store);
    svc_reloader_release(&reloader);
    api_live_free(live);
    rt_spill_close(spill);
    svc_log_event("info", "stopped", NULL);
    svc_log_flush(2.0); /* bounded: a stdout nobody reads must not keep us from exiting */
    svc_config_release(&config);
    return 0;
}
