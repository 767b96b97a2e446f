/* The in-process test endpoint (stub_endpoint.h): an accept thread, one thread per
 * connection, and a "gate" pipe whose write end is closed to release every held call at
 * once (each held call polls its own copy of the read end together with its socket). */
#include "tests/api/support/stub_endpoint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define HEAD_MAX 16384

static const char ANSWER[] = "{\"result\":\"done\",\"state\":{\"n\":1}}";

struct stub_endpoint {
    int listen_fd;
    int port;
    pthread_t acceptor;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* counters, threads */
    int gate[2];            /* lock: held calls wait for gate[1] to close */
    int conns[MAX_CONNS];   /* lock: open connections, -1 when free */
    size_t threads;         /* lock: connection threads running */
    bool stopping;          /* lock */
    stub_counts counts;     /* lock */
};

typedef struct conn_arg {
    stub_endpoint *stub;
    int fd;
    int slot;
} conn_arg;

static void changed_locked(stub_endpoint *s)
{
    pthread_cond_broadcast(&s->changed);
}

/* Reads one request; returns 1 with the body in *body (new), 0 on a clean close, -1 on
 * an error. */
static int read_request(int fd, char **body)
{
    char head[HEAD_MAX + 1];
    size_t n = 0;
    char *end = NULL;
    while (!end) {
        if (n == HEAD_MAX)
            return -1;
        ssize_t k = recv(fd, head + n, HEAD_MAX - n, 0);
        if (k == 0 && n == 0)
            return 0;
        if (k <= 0)
            return -1;
        n += (size_t)k;
        head[n] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - head) + 4;
    size_t length = 0;
    for (char *line = strstr(head, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n"))
        if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
            length = strtoul(line + 17, NULL, 10);
    char *b = malloc(length + 1);
    if (!b)
        return -1;
    size_t have = n - head_len < length ? n - head_len : length;
    memcpy(b, head + head_len, have);
    while (have < length) {
        ssize_t k = recv(fd, b + have, length - have, 0);
        if (k <= 0) {
            free(b);
            return -1;
        }
        have += (size_t)k;
    }
    b[length] = '\0';
    *body = b;
    return 1;
}

/* Waits until the gate (a copy of its read end, closed here) opens (1) or the client
 * hangs up (0). */
static int hold(int fd, int gate)
{
    if (gate < 0)
        return 1;
    int released = -1;
    while (released < 0) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = gate, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            released = 0;
        } else if (p[1].revents) {
            released = 1;
        } else if (p[0].revents) {
            char c;
            if (recv(fd, &c, 1, MSG_PEEK) <= 0)
                released = 0; /* the client closed: a cancelled call */
            else
                released = 1; /* rayd never pipelines; answer and go on */
        }
    }
    close(gate);
    return released;
}

static void *conn_main(void *arg)
{
    conn_arg *c = arg;
    stub_endpoint *s = c->stub;
    for (;;) {
        char *body = NULL;
        if (read_request(c->fd, &body) <= 0)
            break;
        bool held = strstr(body, "\"method\":\"__init__\"") == NULL;
        free(body);
        pthread_mutex_lock(&s->lock);
        s->counts.received++;
        int gate = -1;
        if (held) {
            s->counts.held++;
            /* The gate of this moment: a release from now on opens it. */
            if (!s->stopping && s->gate[0] >= 0)
                gate = fcntl(s->gate[0], F_DUPFD_CLOEXEC, 0);
        }
        changed_locked(s);
        pthread_mutex_unlock(&s->lock);
        if (held) {
            int released = hold(c->fd, gate);
            pthread_mutex_lock(&s->lock);
            s->counts.held--;
            if (!released)
                s->counts.hangups++;
            changed_locked(s);
            pthread_mutex_unlock(&s->lock);
            if (!released)
                break;
        }
        char out[256];
        int len = snprintf(out, sizeof(out),
                           "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           "Content-Length: %zu\r\n\r\n%s",
                           sizeof(ANSWER) - 1, ANSWER);
        if (send(c->fd, out, (size_t)len, MSG_NOSIGNAL) != len)
            break;
        pthread_mutex_lock(&s->lock);
        s->counts.answered++;
        changed_locked(s);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_lock(&s->lock);
    s->conns[c->slot] = -1;
    close(c->fd);
    s->threads--;
    changed_locked(s);
    pthread_mutex_unlock(&s->lock);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    stub_endpoint *s = arg;
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL; /* shut down by stub_stop */
        }
        conn_arg *c = malloc(sizeof(*c));
        pthread_mutex_lock(&s->lock);
        int slot = -1;
        for (int i = 0; i < MAX_CONNS && slot < 0 && !s->stopping; i++)
            if (s->conns[i] < 0)
                slot = i;
        pthread_t th;
        if (c && slot >= 0) {
            c->stub = s;
            c->fd = fd;
            c->slot = slot;
            s->conns[slot] = fd;
            s->threads++;
            if (pthread_create(&th, NULL, conn_main, c) == 0) {
                pthread_detach(th);
                c = NULL;
                fd = -1;
            } else {
                s->conns[slot] = -1;
                s->threads--;
            }
        }
        pthread_mutex_unlock(&s->lock);
        free(c);
        if (fd >= 0)
            close(fd);
    }
}

stub_endpoint *stub_start(void)
{
    stub_endpoint *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    for (int i = 0; i < MAX_CONNS; i++)
        s->conns[i] = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->changed, &attr);
    pthread_condattr_destroy(&attr);
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (s->listen_fd < 0 || pipe2(s->gate, O_CLOEXEC) != 0 ||
        bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(s->listen_fd, 1024) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&sa, &sl) != 0 ||
        pthread_create(&s->acceptor, NULL, accept_main, s) != 0) {
        fprintf(stderr, "stub_start: %s\n", strerror(errno));
        if (s->listen_fd >= 0)
            close(s->listen_fd);
        free(s);
        return NULL;
    }
    s->port = ntohs(sa.sin_port);
    return s;
}

int stub_port(const stub_endpoint *s)
{
    return s->port;
}

/* Opens the gate for everything held now, and sets a new one up. Lock held. */
static void release_locked(stub_endpoint *s)
{
    close(s->gate[1]);
    close(s->gate[0]); /* the held calls poll their own copies */
    if (pipe2(s->gate, O_CLOEXEC) != 0)
        s->gate[0] = s->gate[1] = -1;
}

void stub_release(stub_endpoint *s)
{
    pthread_mutex_lock(&s->lock);
    release_locked(s);
    pthread_mutex_unlock(&s->lock);
}

void stub_stop(stub_endpoint *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    release_locked(s);
    for (int i = 0; i < MAX_CONNS; i++)
        if (s->conns[i] >= 0)
            shutdown(s->conns[i], SHUT_RDWR);
    pthread_mutex_unlock(&s->lock);
    shutdown(s->listen_fd, SHUT_RDWR);
    pthread_join(s->acceptor, NULL);
    pthread_mutex_lock(&s->lock);
    while (s->threads > 0)
        pthread_cond_wait(&s->changed, &s->lock);
    pthread_mutex_unlock(&s->lock);
    close(s->listen_fd);
    if (s->gate[0] >= 0) {
        close(s->gate[0]);
        close(s->gate[1]);
    }
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

stub_counts stub_get_counts(stub_endpoint *s)
{
    pthread_mutex_lock(&s->lock);
    stub_counts c = s->counts;
    pthread_mutex_unlock(&s->lock);
    return c;
}

bool stub_wait(stub_endpoint *s, size_t received, size_t hangups, double timeout_s)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)timeout_s;
    until.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    int timed_out = 0;
    while ((s->counts.received < received || s->counts.hangups < hangups) && !timed_out)
        timed_out = pthread_cond_timedwait(&s->changed, &s->lock, &until) == ETIMEDOUT;
    bool ok = s->counts.received >= received && s->counts.hangups >= hangups;
    pthread_mutex_unlock(&s->lock);
    return ok;
}
