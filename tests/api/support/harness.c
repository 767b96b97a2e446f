/* API test harness: runs the real rayd binary and gives tests small libcurl helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/api/support/harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---------------------------------------------------------------- small utilities */

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_s(double secs)
{
    struct timespec ts;
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *d = xmalloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

static bool verbose(void)
{
    const char *v = getenv("RAYD_TEST_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

const char *rayd_bin(void)
{
    const char *b = getenv("RAYD_BIN");
    return (b && *b) ? b : "build/rayd";
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Environment = environ with env_add applied (same NAME replaced). New array; the strings
 * are borrowed. */
static char **build_env(const char *const *env_add)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    if (env_add)
        while (env_add[k])
            k++;
    char **env = xmalloc((n + k + 1) * sizeof *env);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (size_t j = 0; j < k; j++) {
            const char *eq = strchr(env_add[j], '=');
            size_t nl = eq ? (size_t)(eq - env_add[j]) : strlen(env_add[j]);
            if (strncmp(environ[i], env_add[j], nl) == 0 && environ[i][nl] == '=') {
                replaced = true;
                break;
            }
        }
        if (!replaced)
            env[m++] = environ[i];
    }
    for (size_t j = 0; j < k; j++)
        env[m++] = (char *)env_add[j];
    env[m] = NULL;
    return env;
}

/* Waits for pid up to timeout_s. Returns exit status, 128+signal, or -1 on timeout (the
 * child is then killed and reaped). */
static int wait_exit(pid_t pid, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            perror("harness: waitpid");
            return -1;
        }
        if (now_s() > deadline) {
            fprintf(stderr, "harness: pid %d did not exit within %.1f s: SIGKILL\n", (int)pid,
                    timeout_s);
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            return -1;
        }
        sleep_s(0.005);
    }
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* ---------------------------------------------------------------- server process */

static void *drain_main(void *arg)
{
    rayd_server *s = arg;
    char buf[8192];
    bool echo = verbose();
    for (;;) {
        pthread_mutex_lock(&s->out_lock);
        while (s->stalled)
            pthread_cond_wait(&s->out_unstalled, &s->out_lock);
        pthread_mutex_unlock(&s->out_lock);
        ssize_t n = read(s->out_fd, buf, sizeof buf);
        if (n > 0) {
            pthread_mutex_lock(&s->out_lock);
            if (s->capturing) {
                size_t need = s->captured_len + (size_t)n + 1;
                if (need > s->captured_cap) {
                    size_t cap = s->captured_cap ? s->captured_cap : 4096;
                    while (cap < need)
                        cap *= 2;
                    s->captured = xrealloc(s->captured, cap);
                    s->captured_cap = cap;
                }
                memcpy(s->captured + s->captured_len, buf, (size_t)n);
                s->captured_len += (size_t)n;
                s->captured[s->captured_len] = '\0';
            }
            pthread_mutex_unlock(&s->out_lock);
            if (echo) {
                ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
                (void)w;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    return NULL;
}

/* The member `key` of a JSON listening line (or of the JSON part of a text one), or -1. */
static int parse_port_key(const char *line, const char *key)
{
    json_error_t jerr;
    const char *brace = strchr(line, '{');
    json_t *j = brace ? json_loads(brace, JSON_DISABLE_EOF_CHECK, &jerr) : NULL;
    int port = -1;
    if (j) {
        json_t *p = json_object_get(j, key);
        if (json_is_integer(p))
            port = (int)json_integer_value(p);
        json_decref(j);
    }
    return port;
}

static int parse_port(const char *line)
{
    json_error_t jerr;
    json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, &jerr);
    int port = -1;
    if (j) {
        json_t *p = json_object_get(j, "port");
        if (json_is_integer(p))
            port = (int)json_integer_value(p);
        json_decref(j);
    }
    if (port < 0) {
        const char *p = strstr(line, "\"port\":");
        if (p)
            port = (int)strtol(p + 7, NULL, 10);
    }
    return port;
}

/* Can we connect to 127.0.0.1:port? */
static bool port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* A port the kernel says is free now (bound to 0 and released), or -1. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int start_impl(rayd_server *s, const char *const *args, const char *const *env_add,
                      int fixed_port);

int rayd_start(rayd_server *s, const char *const *args, const char *const *env_add)
{
    return start_impl(s, args, env_add, 0);
}

int rayd_start_no_log(rayd_server *s, const char *const *args, const char *const *env_add)
{
    pthread_once(&global_once, global_init);
    int port = free_port();
    if (port <= 0) {
        fprintf(stderr, "harness: no free port\n");
        return -1;
    }
    return start_impl(s, args, env_add, port);
}

static int start_impl(rayd_server *s, const char *const *args, const char *const *env_add,
                      int fixed_port)
{
    pthread_once(&global_once, global_init);
    memset(s, 0, sizeof *s);
    s->pid = -1;
    s->out_fd = -1;
    pthread_mutex_init(&s->out_lock, NULL);
    pthread_cond_init(&s->out_unstalled, NULL);
    if (rayd_test_url_set()) { /* a server (or a balancer) someone else started */
        const char *url = getenv("RAYD_TEST_URL");
        const char *colon = strrchr(url, ':');
        s->shared = true;
        s->port = colon ? atoi(colon + 1) : 80;
        snprintf(s->base_url, sizeof s->base_url, "%s", url);
        return 0;
    }

    const char *bin = rayd_bin();
    size_t nargs = 0;
    if (args)
        while (args[nargs])
            nargs++;
    const char **argv = xmalloc((nargs + 6) * sizeof *argv);
    size_t a = 0;
    argv[a++] = bin;
    argv[a++] = "--bind";
    argv[a++] = "127.0.0.1";
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", fixed_port);
    argv[a++] = "--port";
    argv[a++] = port_arg;
    for (size_t i = 0; i < nargs; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    char **envp = build_env(env_add);

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("harness: pipe2");
        free(argv);
        free(envp);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("harness: fork");
        close(fds[0]);
        close(fds[1]);
        free(argv);
        free(envp);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], STDOUT_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        execve(bin, (char *const *)argv, envp);
        fprintf(stderr, "harness: exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    free(argv);
    free(envp);
    s->pid = pid;
    s->out_fd = fds[0];

    /* Read lines until the listening event (or, with a fixed port, until it accepts). */
    bool echo = verbose();
    double deadline = now_s() + 10.0;
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    int port = -1;
    const char *why = "timed out waiting for the listening line";
    while (fixed_port > 0 && port < 0 && now_s() < deadline) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            why = "the server exited before it listened";
            s->pid = -1;
            break;
        }
        if (port_accepts(fixed_port))
            port = fixed_port;
        else
            sleep_s(0.01);
    }
    if (fixed_port > 0 && port < 0 && s->pid > 0)
        why = "timed out waiting for the port to accept";
    while (fixed_port <= 0 && port < 0) {
        double left = deadline - now_s();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = s->out_fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        if (len + 2048 > cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        ssize_t n = read(s->out_fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            why = "server closed stdout (exited?) before listening";
            break;
        }
        if (echo) {
            ssize_t w = write(STDERR_FILENO, buf + len, (size_t)n);
            (void)w;
        }
        len += (size_t)n;
        buf[len] = '\0';
        /* Examine complete lines. */
        char *line = buf;
        char *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            if (strstr(line, "\"event\":\"listening\"") ||
                (strstr(line, " listening {") && strstr(line, "\"port\":"))) { /* text */
                port = parse_port(line);
                s->admin_port = parse_port_key(line, "admin_port");
                if (port <= 0) {
                    why = "listening line without a port";
                    port = -2;
                }
                break;
            }
            size_t have = strlen(s->early), add = strlen(line);
            if (have + add + 2 <= sizeof s->early) {
                memcpy(s->early + have, line, add);
                memcpy(s->early + have + add, "\n", 2);
            }
            line = nl + 1;
        }
        if (port == -2)
            break;
        if (port < 0) {
            size_t rest = len - (size_t)(line - buf);
            memmove(buf, line, rest);
            len = rest;
            buf[len] = '\0';
        }
    }
    free(buf);
    if (port <= 0) {
        fprintf(stderr, "harness: %s did not start: %s\n", bin, why);
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            int st = wait_exit(s->pid, 5);
            fprintf(stderr, "harness: exit status %d\n", st);
        }
        close(s->out_fd);
        s->out_fd = -1;
        s->pid = -1;
        return -1;
    }
    s->port = port;
    snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%d", port);
    if (s->admin_port > 0)
        snprintf(s->admin_url, sizeof s->admin_url, "http://127.0.0.1:%d", s->admin_port);
    if (pthread_create(&s->drainer, NULL, drain_main, s) == 0)
        s->drainer_running = true;
    return 0;
}

/* Frees the capture buffer once the drainer has stopped. */
static void capture_release(rayd_server *s)
{
    pthread_mutex_lock(&s->out_lock);
    free(s->captured);
    s->captured = NULL;
    s->captured_len = s->captured_cap = 0;
    s->capturing = false;
    pthread_mutex_unlock(&s->out_lock);
}

/* RAYD_TEST_FILTER: cmocka's test filter (one glob pattern of test names), set before main
 * runs the group. RAYD_TEST_SKIP is applied by rayd_run_group_tests. */
__attribute__((constructor)) static void test_filters_from_env(void)
{
    const char *only = getenv("RAYD_TEST_FILTER");
    if (only && *only)
        cmocka_set_test_filter(only);
}

/* Whether name matches one of the comma-separated globs in list. */
static bool matches_any(const char *list, const char *name)
{
    char pattern[256];
    while (*list) {
        size_t len = strcspn(list, ",");
        if (len > 0 && len < sizeof pattern) {
            memcpy(pattern, list, len);
            pattern[len] = '\0';
            if (fnmatch(pattern, name, 0) == 0)
                return true;
        }
        list += len + (list[len] == ',');
    }
    return false;
}

int rayd_run_group_tests(const char *group, const struct CMUnitTest *tests, size_t n,
                         CMFixtureFunction setup, CMFixtureFunction teardown)
{
    const char *skip = getenv("RAYD_TEST_SKIP");
    struct CMUnitTest *kept = xmalloc((n + 1) * sizeof *kept);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip && *skip && matches_any(skip, tests[i].name))
            printf("[ SKIPPED  ] %s (RAYD_TEST_SKIP)\n", tests[i].name);
        else
            kept[k++] = tests[i];
    }
    fflush(stdout);
    int failed = _cmocka_run_group_tests(group, kept, k, setup, teardown);
    free(kept);
    return failed;
}

bool rayd_test_url_set(void)
{
    const char *url = getenv("RAYD_TEST_URL");
    return url && *url;
}

/* RAYD_EXIT_LOG: one line "pid=P how=signal|wait sig=S status=X" per server that ended
 * (tests/valgrind/run.sh matches them to the valgrind logs, named by pid). */
static void exit_log(pid_t pid, const char *how, int sig, int status)
{
    const char *path = getenv("RAYD_EXIT_LOG");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    fprintf(f, "pid=%d how=%s sig=%d status=%d\n", (int)pid, how, sig, status);
    fclose(f);
}

int rayd_stop_signal(rayd_server *s, int sig)
{
    if (s->shared)
        return 0; /* RAYD_TEST_URL: not ours to stop */
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    int st = wait_exit(s->pid, 10.0);
    exit_log(s->pid, "signal", sig, st);
    s->pid = -1;
    rayd_stdout_stall(s, false); /* the drainer reads on to the end */
    if (s->drainer_running) {
        pthread_join(s->drainer, NULL);
        s->drainer_running = false;
    }
    if (s->out_fd >= 0) {
        close(s->out_fd);
        s->out_fd = -1;
    }
    capture_release(s);
    if (st != 0)
        fprintf(stderr, "harness: rayd (port %d) exit status %d after signal %d\n", s->port, st,
                sig);
    return st;
}

int rayd_wait_exit(rayd_server *s, double timeout_s)
{
    if (s->pid <= 0)
        return -1;
    int st = wait_exit(s->pid, timeout_s);
    exit_log(s->pid, "wait", 0, st);
    s->pid = -1;
    rayd_stdout_stall(s, false); /* the drainer reads on to the end */
    if (s->drainer_running) {
        pthread_join(s->drainer, NULL);
        s->drainer_running = false;
    }
    if (s->out_fd >= 0) {
        close(s->out_fd);
        s->out_fd = -1;
    }
    capture_release(s);
    return st;
}

void rayd_stdout_stall(rayd_server *s, bool stall)
{
    pthread_mutex_lock(&s->out_lock);
    s->stalled = stall;
    if (!stall)
        pthread_cond_broadcast(&s->out_unstalled);
    pthread_mutex_unlock(&s->out_lock);
}

void rayd_capture_stdout(rayd_server *s, bool on)
{
    pthread_mutex_lock(&s->out_lock);
    s->capturing = on;
    pthread_mutex_unlock(&s->out_lock);
}

char *rayd_stdout_text(rayd_server *s)
{
    pthread_mutex_lock(&s->out_lock);
    char *copy = xstrdup(s->captured ? s->captured : "");
    pthread_mutex_unlock(&s->out_lock);
    return copy;
}

void rayd_stdout_clear(rayd_server *s)
{
    pthread_mutex_lock(&s->out_lock);
    s->captured_len = 0;
    if (s->captured)
        s->captured[0] = '\0';
    pthread_mutex_unlock(&s->out_lock);
}

char *rayd_stdout_wait_line(rayd_server *s, const char *needle, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    for (;;) {
        char *found = NULL;
        pthread_mutex_lock(&s->out_lock);
        const char *line = s->captured ? s->captured : "";
        const char *nl;
        while (!found && (nl = strchr(line, '\n')) != NULL) {
            size_t n = (size_t)(nl - line);
            const char *hit = strstr(line, needle);
            if (hit && hit + strlen(needle) <= nl) {
                found = xmalloc(n + 1);
                memcpy(found, line, n);
                found[n] = '\0';
            }
            line = nl + 1;
        }
        pthread_mutex_unlock(&s->out_lock);
        if (found || now_s() > deadline)
            return found;
        sleep_s(0.005);
    }
}

int rayd_stop(rayd_server *s)
{
    return rayd_stop_signal(s, SIGTERM);
}

int rayd_stop_clean(rayd_server *s)
{
    int st = rayd_stop(s);
    if (st != 0) {
        fprintf(stderr, "rayd exit status %d (want 0)\n", st);
        return -1;
    }
    return 0;
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sbuf_add(sbuf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static char *sbuf_take(sbuf *b)
{
    if (!b->p)
        return xstrdup("");
    return b->p;
}

int rayd_run(const char *const *args, const char *const *env_add, double timeout_s, char **out,
             char **err)
{
    pthread_once(&global_once, global_init);
    const char *bin = rayd_bin();
    size_t nargs = 0;
    if (args)
        while (args[nargs])
            nargs++;
    const char **argv = xmalloc((nargs + 2) * sizeof *argv);
    argv[0] = bin;
    for (size_t i = 0; i < nargs; i++)
        argv[i + 1] = args[i];
    argv[nargs + 1] = NULL;
    char **envp = build_env(env_add);

    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
        perror("harness: pipe2");
        abort();
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("harness: fork");
        abort();
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(po[1], STDOUT_FILENO);
        dup2(pe[1], STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        execve(bin, (char *const *)argv, envp);
        fprintf(stderr, "harness: exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    free(argv);
    free(envp);

    sbuf bo = {0}, be = {0};
    struct pollfd pf[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2;
    double deadline = now_s() + timeout_s;
    bool timed_out = false;
    while (open_fds > 0) {
        double left = deadline - now_s();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        int pr = poll(pf, 2, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[4096];
            ssize_t n = read(pf[i].fd, buf, sizeof buf);
            if (n > 0) {
                sbuf_add(i == 0 ? &bo : &be, buf, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                close(pf[i].fd);
                pf[i].fd = -1;
                open_fds--;
            }
        }
    }
    int st;
    if (timed_out) {
        fprintf(stderr, "harness: %s did not exit within %.1f s: SIGKILL\n", bin, timeout_s);
        kill(pid, SIGKILL);
        wait_exit(pid, 5);
        st = -1;
    } else {
        st = wait_exit(pid, deadline - now_s() + 1.0);
    }
    for (int i = 0; i < 2; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    char *o = sbuf_take(&bo), *e = sbuf_take(&be);
    if (verbose())
        fprintf(stderr, "harness: rayd_run exit %d\n--- stdout\n%s--- stderr\n%s---\n", st, o, e);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    return st;
}

/* ---------------------------------------------------------------- HTTP */

typedef struct resp_build {
    http_resp *r;
    size_t cap;
    size_t hcap;
} resp_build;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    resp_build *b = ctx;
    size_t n = size * nmemb;
    http_resp *r = b->r;
    if (r->body_len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (r->body_len + n + 1 > cap)
            cap *= 2;
        r->body = xrealloc(r->body, cap);
        b->cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

static void clear_headers(http_resp *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    r->n_headers = 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ctx)
{
    resp_build *b = ctx;
    http_resp *r = b->r;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        clear_headers(r); /* a new (final or interim) response starts */
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon)
        return n;
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1;
    const char *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (r->n_headers == b->hcap) {
        b->hcap = b->hcap ? b->hcap * 2 : 16;
        r->headers = xrealloc(r->headers, b->hcap * sizeof *r->headers);
    }
    http_header *h = &r->headers[r->n_headers++];
    h->name = xmalloc(nl + 1);
    memcpy(h->name, data, nl);
    h->name[nl] = '\0';
    size_t vl = (size_t)(end - v);
    h->value = xmalloc(vl + 1);
    memcpy(h->value, v, vl);
    h->value[vl] = '\0';
    return n;
}

const char *http_header_get(const http_resp *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static bool mime_eq(const char *ct, const char *mime)
{
    if (!ct)
        return false;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return strlen(mime) == n && strncasecmp(ct, mime, n) == 0;
}

bool http_ct_is(const http_resp *r, const char *mime)
{
    return mime_eq(http_header_get(r, "Content-Type"), mime);
}

static bool ct_is_json(const char *ct)
{
    if (!ct)
        return false;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return true;
    return n >= 5 && strncasecmp(ct + n - 5, "+json", 5) == 0;
}

static bool has_header(const char *const *headers, const char *name)
{
    size_t nl = strlen(name);
    if (!headers)
        return false;
    for (size_t i = 0; headers[i]; i++)
        if (strncasecmp(headers[i], name, nl) == 0 &&
            (headers[i][nl] == ':' || headers[i][nl] == ';'))
            return true;
    return false;
}

/* ---------------------------------------------------------------- contract recorder */

/* Opt-in (RAYD_CONTRACT_LOG=<file>): every response http_request_opts gets is appended to
 * the file as one JSON line, for tests/contract/validate.mjs to check against the spec. */
#define CONTRACT_BODY_MAX (1024 * 1024)

static pthread_mutex_t contract_lock = PTHREAD_MUTEX_INITIALIZER;
static int contract_fd = -1;

static char *base64_encode(const unsigned char *in, size_t n)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = xmalloc((n + 2) / 3 * 4 + 1), *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        *o++ = tbl[v >> 18 & 63];
        *o++ = tbl[v >> 12 & 63];
        *o++ = tbl[v >> 6 & 63];
        *o++ = tbl[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
        *o++ = tbl[v >> 18 & 63];
        *o++ = tbl[v >> 12 & 63];
        *o++ = i + 1 < n ? tbl[v >> 6 & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

/* {lower-case name: value}; a repeated header's values are joined with ", ". */
static json_t *contract_headers(const http_header *h, size_t n)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(h[i].name);
        char *name = xmalloc(nl + 1);
        for (size_t k = 0; k <= nl; k++)
            name[k] = (char)tolower((unsigned char)h[i].name[k]);
        json_t *old = json_object_get(obj, name);
        const char *v = h[i].value;
        json_t *val;
        if (json_is_string(old)) {
            size_t len = strlen(json_string_value(old)) + strlen(v) + 3;
            char *joined = xmalloc(len);
            snprintf(joined, len, "%s, %s", json_string_value(old), v);
            val = json_string(joined);
            free(joined);
        } else {
            val = json_string(v);
        }
        if (val)
            json_object_set_new(obj, name, val);
        free(name);
    }
    return obj;
}

void http_contract_record(const char *method, const char *path,
                          const char *const *request_headers, const http_resp *r)
{
    const char *file = getenv("RAYD_CONTRACT_LOG");
    if (!file || !*file || !r || r->status == 0)
        return;
    json_t *line = json_object();
    size_t plen = strcspn(path, "?");
    json_object_set_new(line, "method", json_string(method ? method : "GET"));
    json_t *p = json_stringn(path, plen);
    json_object_set_new(line, "path", p ? p : json_string("(not UTF-8)"));
    if (path[plen] == '?') {
        json_t *q = json_string(path + plen + 1);
        if (q)
            json_object_set_new(line, "query", q);
    }
    json_object_set_new(line, "status", json_integer(r->status));
    const char *ct = http_header_get(r, "Content-Type");
    json_object_set_new(line, "content_type", ct ? json_string(ct) : json_null());
    json_object_set_new(line, "headers", contract_headers(r->headers, r->n_headers));
    if (r->body_len > CONTRACT_BODY_MAX) {
        json_object_set_new(line, "body_omitted", json_true());
        json_object_set_new(line, "body_length", json_integer((json_int_t)r->body_len));
    } else {
        json_t *b = json_stringn(r->body ? r->body : "", r->body_len); /* NULL: not UTF-8 */
        if (b) {
            json_object_set_new(line, "body", b);
        } else {
            char *b64 = base64_encode((const unsigned char *)r->body, r->body_len);
            json_object_set_new(line, "body_base64", json_string(b64));
            free(b64);
        }
    }
    /* What the test sent, to tell the request in a failure report. */
    if (request_headers) {
        json_t *rh = json_object();
        for (size_t i = 0; request_headers[i]; i++) {
            const char *h = request_headers[i], *colon = strchr(h, ':');
            if (!colon)
                continue;
            const char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            if (!*v)
                continue; /* "Name:" only suppresses a curl default */
            char name[128];
            size_t nl = (size_t)(colon - h) < sizeof name - 1 ? (size_t)(colon - h)
                                                               : sizeof name - 1;
            for (size_t k = 0; k < nl; k++)
                name[k] = (char)tolower((unsigned char)h[k]);
            name[nl] = '\0';
            json_t *val = json_string(v);
            if (val)
                json_object_set_new(rh, name, val);
        }
        json_object_set_new(line, "request_headers", rh);
    }
    json_object_set_new(line, "test", json_string(program_invocation_short_name));

    char *text = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(line);
    if (!text)
        return;
    size_t len = strlen(text);
    text[len] = '\n'; /* one write() per line: the NUL becomes the newline */
    pthread_mutex_lock(&contract_lock);
    if (contract_fd < 0) /* opened once per process; O_APPEND keeps processes' lines whole */
        contract_fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (contract_fd >= 0) {
        size_t off = 0;
        while (off < len + 1) {
            ssize_t w = write(contract_fd, text + off, len + 1 - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
    }
    pthread_mutex_unlock(&contract_lock);
    free(text);
}

http_resp *http_request_opts(const rayd_server *s, const http_opts *o)
{
    pthread_once(&global_once, global_init);
    const char *method = o->method ? o->method : "GET";
    http_resp *r = xmalloc(sizeof *r);
    memset(r, 0, sizeof *r);
    resp_build b = {.r = r};

    CURL *c = o->handle;
    if (c)
        curl_easy_reset(c); /* keeps the connection cache */
    else
        c = curl_easy_init();
    if (!c)
        fail_msg("curl_easy_init failed");
    const char *base = o->base_url ? o->base_url : s->base_url;
    size_t ul = strlen(base) + strlen(o->path) + 1;
    char *url = xmalloc(ul);
    snprintf(url, ul, "%s%s", base, o->path);

    bool sends_body = o->has_body || o->read_fn || strcmp(method, "POST") == 0;
    struct curl_slist *hl = NULL;
    if (o->headers)
        for (size_t i = 0; o->headers[i]; i++)
            hl = curl_slist_append(hl, o->headers[i]);
    if (sends_body && !has_header(o->headers, "Content-Type"))
        hl = curl_slist_append(hl, "Content-Type:"); /* no curl default form type */
    if (!has_header(o->headers, "Expect"))
        hl = curl_slist_append(hl, "Expect:");

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->timeout_ms > 0 ? o->timeout_ms : 30000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &b);

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (o->read_fn) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, o->read_fn);
        curl_easy_setopt(c, CURLOPT_READDATA, o->read_ctx);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->upload_size);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (sends_body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body ? (const char *)o->body : "");
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }

    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (rc == CURLE_OK)
        http_contract_record(method, o->path, o->headers, r);
    if (!o->handle)
        curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    free(url);
    if (!r->body) {
        r->body = xmalloc(1);
        r->body[0] = '\0';
    }

    if (o->soft) {
        const char *ct = http_header_get(r, "Content-Type");
        if (rc != CURLE_OK) {
            if (!r->error[0])
                snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(rc));
            r->status = 0;
        } else if (!http_header_get(r, "X-Request-Id")) {
            snprintf(r->error, sizeof r->error, "response %ld without X-Request-Id", r->status);
        } else if (r->body_len > 0 && ct_is_json(ct)) {
            r->json = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, NULL);
            if (!r->json)
                snprintf(r->error, sizeof r->error, "%s body is not JSON", ct);
        }
        return r;
    }
    if (rc != CURLE_OK && !o->allow_transport_error) {
        char msg[CURL_ERROR_SIZE + 64];
        snprintf(msg, sizeof msg, "%s", r->error[0] ? r->error : curl_easy_strerror(rc));
        http_resp_free(r);
        fail_msg("%s %s: transport error: %s", method, o->path, msg);
    }
    if (r->status != 0) {
        const char *rid = http_header_get(r, "X-Request-Id");
        if (!rid || !*rid) {
            long st = r->status;
            http_resp_free(r);
            fail_msg("%s %s: response %ld without X-Request-Id", method, o->path, st);
        }
    }
    const char *ct = http_header_get(r, "Content-Type");
    if (r->body_len > 0 && ct_is_json(ct)) {
        json_error_t jerr;
        r->json = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &jerr);
        if (!r->json) {
            fprintf(stderr, "body: %.*s\n", (int)(r->body_len > 500 ? 500 : r->body_len), r->body);
            long st = r->status;
            http_resp_free(r);
            fail_msg("%s %s: %ld with Content-Type %s but the body is not JSON: %s (line %d)",
                     method, o->path, st, ct, jerr.text, jerr.line);
        }
    }
    return r;
}

http_resp *http_request(const rayd_server *s, const char *method, const char *path,
                        const char *const *headers, const void *body, size_t len)
{
    http_opts o = {.method = method,
                   .path = path,
                   .headers = headers,
                   .body = body,
                   .body_len = len,
                   .has_body = body != NULL};
    return http_request_opts(s, &o);
}

http_resp *http_get(const rayd_server *s, const char *path)
{
    return http_request(s, "GET", path, NULL, NULL, 0);
}

http_resp *http_head(const rayd_server *s, const char *path)
{
    return http_request(s, "HEAD", path, NULL, NULL, 0);
}

http_resp *http_delete(const rayd_server *s, const char *path)
{
    return http_request(s, "DELETE", path, NULL, NULL, 0);
}

http_resp *http_post_json(const rayd_server *s, const char *path, const char *json)
{
    const char *h[] = {"Content-Type: application/json", NULL};
    return http_request(s, "POST", path, h, json, strlen(json));
}

http_resp *http_post_bytes(const rayd_server *s, const char *path, const char *content_type,
                           const void *body, size_t len)
{
    char ct[512];
    const char *h[] = {ct, NULL};
    if (content_type)
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    http_opts o = {.method = "POST",
                   .path = path,
                   .headers = content_type ? h : NULL,
                   .body = body ? body : "",
                   .body_len = len,
                   .has_body = true};
    return http_request_opts(s, &o);
}

void http_resp_free(http_resp *r)
{
    if (!r)
        return;
    clear_headers(r);
    free(r->headers);
    free(r->body);
    json_decref(r->json);
    free(r);
}

void assert_status(const http_resp *r, long status)
{
    if (r->status != status) {
        fprintf(stderr, "unexpected response body: %.*s\n",
                (int)(r->body_len > 800 ? 800 : r->body_len), r->body);
        fail_msg("status %ld, expected %ld", r->status, status);
    }
}

bool problem_ok(const http_resp *r, long status, const char *title, char *why, size_t n)
{
    const char *ct = http_header_get(r, "Content-Type");
    json_t *j = r->json;
    const char *got_title = json_is_object(j) && json_is_string(json_object_get(j, "title"))
                                ? json_string_value(json_object_get(j, "title"))
                                : "(none)";
    const char *detail = json_is_object(j) && json_is_string(json_object_get(j, "detail"))
                             ? json_string_value(json_object_get(j, "detail"))
                             : NULL;
    char want_type[256];
    snprintf(want_type, sizeof want_type, "/problems/%s", title);
    if (r->status != status) {
        snprintf(why, n, "status %ld %s, wanted %ld %s (detail: %s)", r->status, got_title, status,
                 title, detail ? detail : "-");
        return false;
    }
    if (!mime_eq(ct, "application/problem+json")) {
        snprintf(why, n, "Content-Type %s, wanted application/problem+json", ct ? ct : "(none)");
        return false;
    }
    if (!json_is_object(j)) {
        snprintf(why, n, "body is not a JSON object: %.200s", r->body);
        return false;
    }
    if (strcmp(got_title, title) != 0) {
        snprintf(why, n, "title %s, wanted %s (detail: %s)", got_title, title,
                 detail ? detail : "-");
        return false;
    }
    json_t *type = json_object_get(j, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), want_type) != 0) {
        snprintf(why, n, "type %s, wanted %s",
                 json_is_string(type) ? json_string_value(type) : "(missing)", want_type);
        return false;
    }
    json_t *st = json_object_get(j, "status");
    if (!json_is_integer(st) || json_integer_value(st) != status) {
        snprintf(why, n, "\"status\" member missing or not %ld", status);
        return false;
    }
    if (!detail || !*detail) {
        snprintf(why, n, "detail missing or empty");
        return false;
    }
    if (!json_is_string(json_object_get(j, "instance"))) {
        snprintf(why, n, "instance missing or not a string");
        return false;
    }
    return true;
}

void assert_problem(const http_resp *r, long status, const char *title)
{
    char why[512];
    if (!problem_ok(r, status, title, why, sizeof why)) {
        if (r->status != status)
            fprintf(stderr, "unexpected response body: %.800s\n", r->body);
        fail_msg("problem %ld %s: %s", status, title, why);
    }
}

/* ---------------------------------------------------------------- conveniences */

const char *json_str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        char *dump = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        fprintf(stderr, "in: %.600s\n", dump ? dump : "(null)");
        free(dump);
        fail_msg("member \"%s\" missing or not a string", key);
    }
    return json_string_value(v);
}

long long json_int(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) {
        char *dump = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        fprintf(stderr, "in: %.600s\n", dump ? dump : "(null)");
        free(dump);
        fail_msg("member \"%s\" missing or not an integer", key);
    }
    return (long long)json_integer_value(v);
}

double json_num(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v)) {
        char *dump = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        fprintf(stderr, "in: %.600s\n", dump ? dump : "(null)");
        free(dump);
        fail_msg("member \"%s\" missing or not a number", key);
    }
    return json_number_value(v);
}

json_t *json_member(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        char *dump = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        fprintf(stderr, "in: %.600s\n", dump ? dump : "(null)");
        free(dump);
        fail_msg("member \"%s\" missing", key);
    }
    return v;
}

bool is_valid_ref(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

void put_object(const rayd_server *s, const char *content_type, const void *body, size_t len,
                char *out_ref)
{
    http_resp *r = http_post_bytes(s, "/v1/objects", content_type, body, len);
    assert_status(r, 201);
    const char *ref = json_str(r->json, "ref");
    assert_true(is_valid_ref(ref));
    snprintf(out_ref, 65, "%s", ref);
    http_resp_free(r);
}

int raw_http(const rayd_server *s, const void *req, size_t len, double timeout_s, char **out)
{
    pthread_once(&global_once, global_init);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        fail_msg("connect: %s", strerror(e));
    }
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, (const char *)req + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* the server may answer and close early */
        sent += (size_t)n;
    }
    sbuf b = {0};
    double deadline = now_s() + timeout_s;
    for (;;) {
        /* Complete? headers + Content-Length bytes */
        if (b.p) {
            char *hend = strstr(b.p, "\r\n\r\n");
            if (hend) {
                size_t hlen = (size_t)(hend - b.p) + 4;
                const char *cl = strcasestr(b.p, "\r\nContent-Length:");
                if (cl && cl < hend) {
                    size_t want = (size_t)strtoull(cl + 17, NULL, 10);
                    if (b.len >= hlen + want)
                        break;
                }
            }
        }
        double left = deadline - now_s();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        sbuf_add(&b, buf, (size_t)n);
    }
    close(fd);
    char *text = sbuf_take(&b);
    int status = 0;
    if (strncmp(text, "HTTP/1.", 7) == 0 && strlen(text) > 12)
        status = atoi(text + 9);
    if (status != 0) {
        char *hend = strstr(text, "\r\n\r\n");
        const char *rid = strcasestr(text, "\r\nX-Request-Id:");
        if (!rid || (hend && rid > hend)) {
            fprintf(stderr, "response: %.500s\n", text);
            free(text);
            fail_msg("raw response %d without X-Request-Id", status);
        }
    }
    if (out)
        *out = text;
    else
        free(text);
    return status;
}
