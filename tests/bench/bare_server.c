/*
 * bare_server: the benchmark baseline. A libmicrohttpd server configured like rayd
 * (epoll internal thread pool, suspend/resume allowed, explicit connection limit,
 * connection timeout, a 256 KiB per-connection memory limit, listen backlog 1024) that does
 * nothing: it answers `{}` (application/json) to every request and, for requests with a body
 * (POST), reads the body and throws it away, so upload throughput can be measured.
 *
 *   bare_server [--port N] [--threads N] [--bind ADDR] [--connection-memory BYTES]
 *
 * --port 0 (the default) lets the kernel pick a port. Once listening it prints, like
 * rayd, one JSON line on stdout: {"event":"listening","port":N}. SIGTERM/SIGINT stop it.
 *
 * Built by tests/bench/run.sh: cc -O2 bare_server.c $(pkg-config --cflags --libs libmicrohttpd)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNECTION_LIMIT 1024u
#define CONNECTION_TIMEOUT_S 30u
#define CONNECTION_MEMORY_LIMIT ((size_t)256 * 1024)

static struct MHD_Response *g_empty_json;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* A marker stored in *con_cls once the request headers have been seen. */
static int g_seen;

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    if (*con_cls == NULL) {
        /* First call: headers only. Ask for the body (if any) by returning YES. */
        *con_cls = &g_seen;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* discard this chunk of the body */
        return MHD_YES;
    }
    return MHD_queue_response(conn, MHD_HTTP_OK, g_empty_json);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bare_server [--port N] [--threads N] [--bind ADDR] "
               "[--connection-memory BYTES (default 262144)]\n");
}

int main(int argc, char **argv)
{
    long port = 0, threads = 2;
    long long mem_limit = (long long)CONNECTION_MEMORY_LIMIT;
    const char *bind_addr = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        char *end = NULL;
        if (strcmp(a, "--port") == 0) {
            port = strtol(argv[++i], &end, 10);
            if (*end != '\0' || port < 0 || port > 65535) {
                fprintf(stderr, "bare_server: bad --port\n");
                return 2;
            }
        } else if (strcmp(a, "--threads") == 0) {
            threads = strtol(argv[++i], &end, 10);
            if (*end != '\0' || threads < 1 || threads > 256) {
                fprintf(stderr, "bare_server: bad --threads\n");
                return 2;
            }
        } else if (strcmp(a, "--connection-memory") == 0) {
            mem_limit = strtoll(argv[++i], &end, 10);
            if (*end != '\0' || mem_limit < 4096) {
                fprintf(stderr, "bare_server: bad --connection-memory\n");
                return 2;
            }
        } else if (strcmp(a, "--bind") == 0) {
            bind_addr = argv[++i];
        } else {
            usage(stderr);
            return 2;
        }
    }

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "bare_server: bad --bind\n");
        return 2;
    }

    static const char body[] = "{}";
    g_empty_json =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (g_empty_json == NULL || MHD_add_response_header(g_empty_json, MHD_HTTP_HEADER_CONTENT_TYPE,
                                                        "application/json") != MHD_YES) {
        fprintf(stderr, "bare_server: cannot create response\n");
        return 1;
    }

    unsigned int flags =
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)threads, MHD_OPTION_CONNECTION_LIMIT,
        CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)mem_limit, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        1024u, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "bare_server: cannot start on %s:%ld\n", bind_addr, port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned int bound = info != NULL ? info->port : (unsigned int)port;
    printf("{\"event\":\"listening\",\"address\":\"%s\",\"port\":%u}\n", bind_addr, bound);
    fflush(stdout);

    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_signal;
    sigemptyset(&act.sa_mask);
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    while (!g_stop)
        pause();

    MHD_stop_daemon(d);
    MHD_destroy_response(g_empty_json);
    return 0;
}
