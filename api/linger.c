/* Lingering close of connections answered before their body was read. See linger.h. */
#include "api/linger.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/clock.h"

/* The epoll data of the eventfd that wakes the thread; sockets use their slot index. */
#define WAKE_TAG UINT64_MAX

typedef struct linger_slot {
    int fd;         /* -1 when free */
    size_t bytes;   /* discarded so far */
    double started; /* monotonic */
    double last;    /* monotonic: when data last came */
} linger_slot;

struct api_linger {
    size_t max_bytes;
    int epfd, wakefd;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock; /* guards slots and stopping */
    bool stopping;
    linger_slot slots[API_LINGER_CONNECTIONS];
};

/* Closes a slot's socket: the client has what it needs, or gets no more time. Lock held. */
static void slot_close(api_linger *lg, linger_slot *s)
{
    epoll_ctl(lg->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
}

/* Reads and discards what the client sent, at most DRAIN_ROUND bytes a round so that the
 * lock is held briefly (epoll reports the socket again while data is waiting); closes at
 * the client's end, on an error, or past the byte limit. Lock held (reads do not block). */
#define DRAIN_ROUND (256 * 1024)

static void slot_drain(api_linger *lg, linger_slot *s, double now)
{
    static char sink[64 * 1024]; /* only this thread writes it, and nobody reads it */
    for (size_t round = 0; round < DRAIN_ROUND;) {
        ssize_t n = recv(s->fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n > 0) {
            s->bytes += (size_t)n;
            s->last = now;
            round += (size_t)n;
            if (s->bytes > lg->max_bytes) {
                slot_close(lg, s);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        slot_close(lg, s); /* the client closed (0) or the connection failed */
        return;
    }
}

static double slot_deadline(const linger_slot *s)
{
    double idle = s->last + API_LINGER_IDLE, total = s->started + API_LINGER_TIME;
    return idle < total ? idle : total;
}

static void *linger_thread(void *arg)
{
    api_linger *lg = arg;
    struct epoll_event events[64];
    for (;;) {
        pthread_mutex_lock(&lg->lock);
        if (lg->stopping) {
            pthread_mutex_unlock(&lg->lock);
            break;
        }
        double now = rt_clock_monotonic(), next = 0;
        for (size_t i = 0; i < API_LINGER_CONNECTIONS; i++) {
            linger_slot *s = &lg->slots[i];
            if (s->fd < 0)
                continue;
            double d = slot_deadline(s);
            if (d <= now)
                slot_close(lg, s);
            else if (next == 0 || d < next)
                next = d;
        }
        pthread_mutex_unlock(&lg->lock);

        int timeout_ms = next == 0 ? -1 : (int)((next - now) * 1000) + 1;
        int n = epoll_wait(lg->epfd, events, 64, timeout_ms);
        if (n < 0 && errno != EINTR)
            break; /* cannot happen with valid descriptors; the sockets are closed in free */
        now = rt_clock_monotonic();
        pthread_mutex_lock(&lg->lock);
        for (int i = 0; i < n; i++) {
            if (events[i].data.u64 == WAKE_TAG) {
                uint64_t v;
                (void)!read(lg->wakefd, &v, sizeof(v));
                continue;
            }
            linger_slot *s = &lg->slots[events[i].data.u64];
            if (s->fd >= 0)
                slot_drain(lg, s, now);
        }
        pthread_mutex_unlock(&lg->lock);
    }
    return NULL;
}

static void wake(api_linger *lg)
{
    uint64_t one = 1;
    (void)!write(lg->wakefd, &one, sizeof(one));
}

api_linger *api_linger_new(size_t max_bytes)
{
    api_linger *lg = calloc(1, sizeof(*lg));
    if (!lg)
        return NULL;
    lg->max_bytes = max_bytes;
    lg->epfd = lg->wakefd = -1;
    for (size_t i = 0; i < API_LINGER_CONNECTIONS; i++)
        lg->slots[i].fd = -1;
    pthread_mutex_init(&lg->lock, NULL);
    if (max_bytes == 0)
        return lg; /* off */
    lg->epfd = epoll_create1(EPOLL_CLOEXEC);
    lg->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TAG};
    if (lg->epfd < 0 || lg->wakefd < 0 || epoll_ctl(lg->epfd, EPOLL_CTL_ADD, lg->wakefd, &ev) ||
        pthread_create(&lg->thread, NULL, linger_thread, lg) != 0) {
        api_linger_free(lg);
        return NULL;
    }
    lg->running = true;
    return lg;
}

void api_linger_free(api_linger *lg)
{
    if (!lg)
        return;
    if (lg->running) {
        pthread_mutex_lock(&lg->lock);
        lg->stopping = true;
        pthread_mutex_unlock(&lg->lock);
        wake(lg);
        pthread_join(lg->thread, NULL);
    }
    for (size_t i = 0; i < API_LINGER_CONNECTIONS; i++)
        if (lg->slots[i].fd >= 0)
            slot_close(lg, &lg->slots[i]);
    if (lg->wakefd >= 0)
        close(lg->wakefd);
    if (lg->epfd >= 0)
        close(lg->epfd);
    pthread_mutex_destroy(&lg->lock);
    free(lg);
}

void api_linger_connection(api_linger *lg, struct MHD_Connection *conn)
{
    if (!lg || !lg->running)
        return;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info || info->connect_fd < 0)
        return;
    pthread_mutex_lock(&lg->lock);
    linger_slot *s = NULL;
    for (size_t i = 0; i < API_LINGER_CONNECTIONS && !lg->stopping; i++) {
        if (lg->slots[i].fd < 0) {
            s = &lg->slots[i];
            break;
        }
    }
    int fd = s ? fcntl(info->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (fd >= 0) {
        /* The answer is sent: end our side now (libmicrohttpd would too), so the client
         * sees the end of the answer while we read what it still sends. */
        shutdown(fd, SHUT_WR);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
                                 .data.u64 = (uint64_t)(s - lg->slots)};
        if (epoll_ctl(lg->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0) {
        double now = rt_clock_monotonic();
        *s = (linger_slot){.fd = fd, .bytes = 0, .started = now, .last = now};
    }
    pthread_mutex_unlock(&lg->lock);
    if (fd >= 0)
        wake(lg); /* the thread recomputes its next deadline */
}
