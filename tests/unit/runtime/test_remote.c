/* Unit tests for runtime/remote.c's stop: a call in flight completes as cancelled on the
 * stopping thread before rt_remote_stop returns, a post made from that completion (an
 * actor's next call) is refused instead of lost, and posts after stop are refused. The
 * endpoint is a listening socket in this process that never answers. No HTTP server. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/clock.h"
#include "runtime/remote.h"

/* A port on 127.0.0.1 that accepts connections (the kernel's backlog) and never answers. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

typedef struct outcome {
    rt_remote *remote;
    char url[64];
    int calls;                 /* callbacks run */
    rt_remote_outcome first;
    pthread_t thread;          /* where the first ran */
    int repost_refused;        /* the post made from the callback returned NULL */
} outcome;

static void on_done(rt_remote_call *call, const rt_remote_result *result, void *arg)
{
    outcome *o = arg;
    if (o->calls++ == 0) {
        o->first = result->outcome;
        o->thread = pthread_self();
        /* as an actor's mailbox does: the next call is posted from the completion */
        rt_remote_call *again =
            rt_remote_post(o->remote, o->url, "{}", 2, 0, NULL, NULL, on_done, o);
        o->repost_refused = again == NULL;
    }
    rt_remote_call_free(call);
}

static void test_stop_completes_in_flight_and_refuses_posts(void **state)
{
    (void)state;
    int port;
    int fd = silent_listener(&port);
    outcome o = {0};
    o.remote = rt_remote_new(1 << 20);
    assert_non_null(o.remote);
    snprintf(o.url, sizeof(o.url), "http://127.0.0.1:%d/f", port);
    assert_int_equal(rt_remote_stopped(o.remote), 0);
    rt_remote_call *c = rt_remote_post(o.remote, o.url, "{}", 2, 0, NULL, NULL, on_done, &o);
    assert_non_null(c);
    /* wait until the I/O thread has taken it (connected: the listener's backlog has it) */
    double end = rt_clock_monotonic() + 10;
    int conn = -1;
    while (conn < 0 && rt_clock_monotonic() < end) {
        struct timeval tv = {0, 100000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        conn = accept(fd, NULL, NULL);
    }
    assert_true(conn >= 0);
    assert_int_equal(o.calls, 0);

    rt_remote_stop(o.remote);
    assert_int_equal(o.calls, 1); /* completed before stop returned ... */
    assert_int_equal(o.first, RT_REMOTE_CANCELLED);
    assert_true(pthread_equal(o.thread, pthread_self())); /* ... on this thread */
    assert_int_equal(o.repost_refused, 1);
    assert_int_equal(rt_remote_stopped(o.remote), 1);
    assert_int_equal(rt_remote_in_flight(o.remote), 0);
    /* later posts are refused too, and no callback runs for them */
    assert_null(rt_remote_post(o.remote, o.url, "{}", 2, 0, NULL, NULL, on_done, &o));
    rt_remote_stop(o.remote); /* again: nothing */
    assert_int_equal(o.calls, 1);
    rt_remote_free(o.remote);
    close(conn);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_completes_in_flight_and_refuses_posts),
    };
    return cmocka_run_group_tests_name("runtime/remote", tests, NULL, NULL);
}
