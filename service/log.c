/* Log lines in JSON or text, gathered in memory and written to stdout by one writer thread,
 * so that a slow or stuck stdout never holds up the threads that log. */
#include "service/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/request.h"
#include "runtime/clock.h"

static int log_text;                       /* 0: JSON lines, 1: text */
static int log_min = SVC_LOG_INFO; /* svc_log_level, atomic: SIGHUP may change it */

static svc_log_level level_of(const char *name)
{
    if (!name)
        return SVC_LOG_INFO;
    if (strcmp(name, "debug") == 0)
        return SVC_LOG_DEBUG;
    if (strcmp(name, "warn") == 0)
        return SVC_LOG_WARN;
    if (strcmp(name, "error") == 0)
        return SVC_LOG_ERROR;
    return SVC_LOG_INFO;
}

void svc_log_configure(const char *format, const char *level)
{
    log_text = format && strcmp(format, "text") == 0;
    svc_log_set_level(level);
}

void svc_log_set_level(const char *level)
{
    __atomic_store_n(&log_min, (int)level_of(level), __ATOMIC_RELAXED);
}

/* Lines are gathered in a buffer and written in batches (a write(2) per request was a large
 * part of a small request's cost) by one writer thread: every FLUSH_INTERVAL, at once when
 * the buffer is nearly full or an event line comes (someone may be waiting for it: the
 * listening line), and before exit (svc_log_flush). Whole lines only, so lines never
 * interleave, and in the order they were logged.
 *
 * The writer swaps the buffer for an empty one under the lock and writes outside it, so a
 * stdout that blocks (a pipe nobody reads, a slow terminal) blocks the writer alone. Lines
 * logged while both buffers are taken are dropped and counted (svc_log_dropped, the metric
 * rayd_log_lines_dropped_total): losing log lines is better than stalling every request. */
#define LOG_BUFFER_SIZE (256 * 1024)
#define LOG_FLUSH_AT (192 * 1024)
#define FLUSH_INTERVAL_NS (50 * 1000 * 1000)

static pthread_mutex_t buffer_lock = PTHREAD_MUTEX_INITIALIZER; /* guards what follows */
static pthread_cond_t writer_wake;  /* the writer waits here (made by start_writer) */
static pthread_cond_t written_cond; /* svc_log_flush waits here (made by start_writer) */
static char buffers[2][LOG_BUFFER_SIZE];
static char *filling = buffers[0];   /* lines gathered since the last swap */
static size_t filled, filled_lines;
static int urgent;                   /* write without waiting for the interval */
static unsigned long long appended;  /* bytes ever put in the buffer */
static unsigned long long written;   /* bytes ever handed to write(2) (or given up on) */
static unsigned long long dropped;   /* atomic: lines dropped, buffer full or stdout failed */
static pthread_once_t writer_once = PTHREAD_ONCE_INIT;
static int writer_started;           /* buffer_lock */

/* Writes data whole; false when stdout failed (closed, or an error). */
static int write_all(const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0; /* a closed stdout must not stop the server */
        data += n;
        len -= (size_t)n;
    }
    return 1;
}

unsigned long long svc_log_dropped(void)
{
    return __atomic_load_n(&dropped, __ATOMIC_RELAXED);
}

static void report_dropped(unsigned long long total, unsigned long long since);

static void *writer(void *arg)
{
    (void)arg;
    char *spare = buffers[1];
    unsigned long long reported = 0; /* dropped lines already reported */
    double reported_at = 0;
    int last_ok = 1;
    pthread_mutex_lock(&buffer_lock);
    for (;;) {
        if (!urgent && filled < LOG_FLUSH_AT) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += FLUSH_INTERVAL_NS;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&writer_wake, &buffer_lock, &ts);
        }
        urgent = 0;
        /* Once stdout took the last batch, say how many lines were lost (at most once a
         * second), in the buffer about to be emptied: the full one would drop it too. */
        unsigned long long total = svc_log_dropped();
        int report = last_ok && total != reported && rt_clock_monotonic() - reported_at >= 1;
        if (filled == 0 && !report)
            continue;
        char *batch = filling;
        size_t len = filled, lines = filled_lines;
        filling = spare;
        filled = filled_lines = 0;
        pthread_mutex_unlock(&buffer_lock);
        if (report) {
            report_dropped(total, total - reported);
            reported = total;
            reported_at = rt_clock_monotonic();
        }
        if (len) {
            last_ok = write_all(batch, len);
            if (!last_ok)
                __atomic_add_fetch(&dropped, lines, __ATOMIC_RELAXED);
        }
        spare = batch;
        pthread_mutex_lock(&buffer_lock);
        written += len;
        pthread_cond_broadcast(&written_cond);
    }
    return NULL;
}

static void start_writer(void)
{
    pthread_t t;
    sigset_t all, old;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&writer_wake, &attr);
    pthread_cond_init(&written_cond, &attr);
    pthread_condattr_destroy(&attr);
    sigfillset(&all); /* the main thread takes the signals */
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (pthread_create(&t, NULL, writer, NULL) == 0) {
        pthread_detach(t);
        pthread_mutex_lock(&buffer_lock);
        writer_started = 1;
        pthread_mutex_unlock(&buffer_lock);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Puts one whole line in the buffer, or drops it when the buffer is full. urgent: wake the
 * writer now. Without a writer thread (it could not start) the line is written here. */
static void buffer_line(const char *line, size_t len, int now)
{
    pthread_once(&writer_once, start_writer);
    pthread_mutex_lock(&buffer_lock);
    if (!writer_started) {
        write_all(line, len);
        pthread_mutex_unlock(&buffer_lock);
        return;
    }
    if (len > LOG_BUFFER_SIZE - filled) {
        pthread_mutex_unlock(&buffer_lock);
        __atomic_add_fetch(&dropped, 1, __ATOMIC_RELAXED);
        return;
    }
    memcpy(filling + filled, line, len);
    filled += len;
    filled_lines++;
    appended += len;
    if (now || filled >= LOG_FLUSH_AT) {
        urgent = 1;
        pthread_cond_signal(&writer_wake);
    }
    pthread_mutex_unlock(&buffer_lock);
}

void svc_log_flush(double timeout)
{
    pthread_mutex_lock(&buffer_lock);
    if (writer_started) {
        unsigned long long want = appended;
        urgent = 1;
        pthread_cond_signal(&writer_wake);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double end = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + timeout;
        ts.tv_sec = (time_t)end;
        ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
        while (written < want &&
               pthread_cond_timedwait(&written_cond, &buffer_lock, &ts) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&buffer_lock);
}

/* Event lines are rare and may be awaited (the listening line): the writer is woken at
 * once, and writes them after whatever request lines came before them. */
/* The warning that lines were dropped: since of them since the last one, total in all.
 * Called by the writer with no lock held. */
static void report_dropped(unsigned long long total, unsigned long long since)
{
    svc_log_event("warn", "log lines dropped",
                  json_pack("{s:I,s:I}", "dropped", (json_int_t)since, "total",
                            (json_int_t)total));
}

void svc_log_event(const char *level, const char *event, json_t *fields)
{
    /* The listening line is always written: with --port 0 it is the only way to learn the
     * port; so is the answer to a SIGHUP, which the operator is waiting for. */
    if ((int)level_of(level) < __atomic_load_n(&log_min, __ATOMIC_RELAXED) &&
        strcmp(event, "listening") != 0 && strcmp(event, "reloaded") != 0 &&
        strcmp(event, "reload failed") != 0) {
        json_decref(fields);
        return;
    }
    char now[40];
    rt_clock_format(rt_clock_wall(), now, sizeof(now));
    char *line = NULL;
    if (log_text) {
        char *rest = fields ? json_dumps(fields, JSON_COMPACT) : NULL;
        if (asprintf(&line, "%s %-5s %s %s\n", now, level, event, rest ? rest : "") < 0)
            line = NULL;
        free(rest);
    } else {
        json_t *obj = json_pack("{s:s,s:s,s:s}", "time", now, "level", level, "event", event);
        if (fields)
            json_object_update_missing(obj, fields);
        char *text = json_dumps(obj, JSON_COMPACT);
        json_decref(obj);
        if (text && asprintf(&line, "%s\n", text) < 0)
            line = NULL;
        free(text);
    }
    json_decref(fields);
    if (line) {
        buffer_line(line, strlen(line), 1);
        free(line);
    }
}

/* Formats the current time as rt_clock_format does, rebuilding the date and time part only
 * when the second changes (gmtime and the date formatting were a third of rayd's own
 * instructions per small request). Per thread, so no lock. */
static void format_now(char *out, size_t size)
{
    static __thread time_t cached_second = -1;
    static __thread char cached[40]; /* "2026-11-25T22:36:30" */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_second) {
        char full[40];
        rt_clock_format((double)ts.tv_sec, full, sizeof(full));
        memcpy(cached, full, 19);
        cached[19] = '\0';
        cached_second = ts.tv_sec;
    }
    int ms = (int)(ts.tv_nsec / 1000000);
    memcpy(out, cached, 19);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    out[24] = '\0';
    (void)size;
}

/* The JSON request line is put together by hand: snprintf was most of the logging's cost
 * per small request. */
typedef struct line_writer {
    char *at;
} line_writer;

static void put(line_writer *w, const char *s, size_t len)
{
    memcpy(w->at, s, len);
    w->at += len;
}

#define PUT_LITERAL(w, s) put((w), (s), sizeof(s) - 1)

/* Decimal digits of v; out has room for 20. */
static void put_uint(line_writer *w, unsigned long long v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *w->at++ = digits[--n];
}

/* Seconds with six decimals, as %.6f prints a duration (never negative, never huge). */
static void put_seconds(line_writer *w, double seconds)
{
    unsigned long long us = seconds > 0 ? (unsigned long long)(seconds * 1e6 + 0.5) : 0;
    put_uint(w, us / 1000000);
    *w->at++ = '.';
    unsigned long long frac = us % 1000000;
    for (unsigned long long div = 100000; div; div /= 10)
        *w->at++ = (char)('0' + frac / div % 10);
}

#define LOG_ID_MAX 256     /* bytes of a request id put in a line */
#define LOG_PATH_MAX 512   /* bytes of a path put in a line */
#define LOG_METHOD_MAX 32  /* bytes of a method put in a line */
#define LOG_ROUTE_MAX 64   /* bytes of a route pattern put in a line */

void svc_log_request(const api_request_summary *s, void *arg)
{
    (void)arg;
    if (__atomic_load_n(&log_min, __ATOMIC_RELAXED) > SVC_LOG_INFO)
        return;
    char now[40];
    format_now(now, sizeof(now));
    if (log_text) {
        char id[6 * LOG_ID_MAX + 1], path[6 * LOG_PATH_MAX + 1], line[8192];
        id[api_json_escape_into(id, s->request_id, LOG_ID_MAX)] = '\0';
        path[api_json_escape_into(path, s->path, LOG_PATH_MAX)] = '\0';
        const char *tp = s->traceparent ? s->traceparent : "";
        int n = snprintf(line, sizeof(line), "%s info  %s %s %u %.3f ms %zu B %s%s%s\n", now,
                         s->method, path, s->status, s->seconds * 1e3, s->bytes, id,
                         *tp ? " " : "", tp);
        if (n > 0)
            buffer_line(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1, 0);
        return;
    }
    /* 6 bytes per escaped byte, and room for the keys, the time, three numbers and a
     * traceparent (checked hex, written as is) */
    char line[6 * (LOG_ID_MAX + LOG_PATH_MAX + LOG_METHOD_MAX + LOG_ROUTE_MAX) + 256 + 80];
    line_writer w = {line};
    PUT_LITERAL(&w, "{\"time\":\"");
    put(&w, now, strlen(now));
    PUT_LITERAL(&w, "\",\"level\":\"info\",\"event\":\"request\",\"request_id\":\"");
    w.at += api_json_escape_into(w.at, s->request_id, LOG_ID_MAX);
    PUT_LITERAL(&w, "\",\"method\":\"");
    w.at += api_json_escape_into(w.at, s->method, LOG_METHOD_MAX);
    PUT_LITERAL(&w, "\",\"route\":\"");
    w.at += api_json_escape_into(w.at, s->route, LOG_ROUTE_MAX);
    PUT_LITERAL(&w, "\",\"path\":\"");
    w.at += api_json_escape_into(w.at, s->path, LOG_PATH_MAX);
    PUT_LITERAL(&w, "\",\"status\":");
    put_uint(&w, s->status);
    PUT_LITERAL(&w, ",\"duration_seconds\":");
    put_seconds(&w, s->seconds);
    PUT_LITERAL(&w, ",\"bytes\":");
    put_uint(&w, s->bytes);
    if (s->traceparent && s->traceparent[0]) {
        PUT_LITERAL(&w, ",\"traceparent\":\"");
        put(&w, s->traceparent, strnlen(s->traceparent, 55));
        *w.at++ = '"';
    }
    PUT_LITERAL(&w, "}\n");
    buffer_line(line, (size_t)(w.at - line), 0);
}
