/* Cluster mode: this node's tag, its heartbeat record, and the membership table built from
 * the others' records. See cluster.h for the model.
 *
 * DESIGN
 * - Threads: the Redis thread (cluster_redis.c) runs tick() every second: take a tag
 *   (once), write the heartbeat, read the others. Request threads only read the table.
 * - Locks: `lock` guards the member table, epoch, redis_up and redis_error. The tag is
 *   written once, before `joined` is published (release), and read after `joined` is seen
 *   (acquire), so this node's own ids are recognised without the lock.
 * - Redis keys: "nodes:counter" (INCR: tag numbers), "nodes:epoch" (INCR: join epochs),
 *   "nodes" (hash: tag -> "<last seen, ms since 1970> <url>", every tag ever seen, pruned
 *   after a week), "node:<tag>" (hash, 3 s expiry: url, epoch, started, queued, running,
 *   memory, modules).
 * - The "modules" field (cluster_modules.h) never changes during a process's life, so it is
 *   written only when the record is made (the first heartbeat, a rejoin), and the others
 *   read it once per node (HMGET of the other fields otherwise): the heartbeat stays small
 *   however many modules a node has.
 * - Tags are claimed with HSETNX on "nodes", so that a counter that went back (Redis lost
 *   its data) cannot hand out a tag a live node still has; a node that finds its record
 *   gone also puts the counter back above its own number and every tag it knows. */
#include "runtime/cluster.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"
#include "runtime/cluster_command.h"
#include "runtime/cluster_modules.h"
#include "runtime/cluster_redis.h"
#include "runtime/events.h"

#define KEY_NODES "nodes"
#define KEY_COUNTER "nodes:counter"
#define KEY_EPOCH "nodes:epoch"
#define RECORD_PREFIX "node:"
#define RECORD_FIELDS 6            /* url, epoch, started, queued, running, memory */
#define RECENT_MS 60000LL          /* tags seen this recently have their record read */
#define FORGET_MS (7LL * 24 * 3600 * 1000) /* tags silent this long are forgotten */
#define REDIS_TIMEOUT 1.0          /* seconds for connecting and for each command */
#define TAG_TRIES 1000
#define COMMANDS_QUEUED_MAX 10000 /* request handlers' Redis commands waiting at most */

/* Puts a counter back to at least ARGV[1] (after Redis lost its data). */
static const char RESTORE_COUNTER[] =
    "local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0 "
    "if v < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end return 0";

/* The fields a scan reads from a record (HMGET), by position; F_MODULES only while the
 * member's modules are not known. */
enum { F_URL, F_EPOCH, F_STARTED, F_QUEUED, F_RUNNING, F_MEMORY, F_MODULES, F_COUNT };
static const char *const FIELD_NAMES[F_COUNT] = {"url",     "epoch",  "started", "queued",
                                                 "running", "memory", "modules"};

typedef struct member {
    char tag[RT_NODE_TAG_SIZE];
    char url[RT_CLUSTER_URL_MAX];
    bool alive;
    long long epoch;
    double started_at;
    rt_cluster_load load;
    double dead_since; /* monotonic time it was first seen dead; 0 while alive */
    json_t *modules;   /* from its record (cluster_modules.h), NULL until read; owned by the
                        * table, and carried from one table to the next as the same pointer */
} member;

struct rt_cluster {
    rt_cluster_config config;
    rt_redis_url url;
    rt_redis *redis;
    rt_redis_commands *commands; /* request handlers' commands (cluster_command.h) */
    char advertise[RT_CLUSTER_URL_MAX];
    double started_wall;
    char *modules_text; /* this node's modules, as its record carries them */
    json_t *modules;    /* the same, parsed; read-only after rt_cluster_new */

    /* Identity: tag and tag_number are written by the Redis thread before `joined`. */
    char tag[RT_NODE_TAG_SIZE];
    unsigned long long tag_number;
    int joined;           /* atomic */
    bool has_tag;         /* Redis thread */
    bool wrote_record;    /* Redis thread: a heartbeat was written with this tag */
    bool redis_was_up;    /* Redis thread: the connection came up at least once */
    int ticks;            /* Redis thread: heartbeats written before joining */
    double grace_from;    /* Redis thread: when Redis came back or was found emptied */
    bool rejoined;        /* Redis thread: the record had expired; the tick hook not told yet */
    rt_cluster_tick_fn on_tick; /* set before start */
    void *on_tick_arg;
    long long lease_until_ns; /* atomic: monotonic ns until which the lease is held */
    void (*on_joined_tick)(void *arg); /* set before start: after each heartbeat once joined */
    void *on_joined_tick_arg;

    pthread_mutex_t lock;
    member *members; /* lock: every other node known, by tag */
    size_t nmembers; /* lock */
    long long epoch; /* lock */
    bool redis_up;   /* lock; also mirrored in redis_up_now */
    int redis_up_now; /* atomic: redis_up, read without the lock */
    char redis_error[256]; /* lock */
};

static void say(rt_cluster *c, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(rt_cluster *c, const char *level, const char *fmt, ...)
{
    if (!c->config.log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->config.log(level, line, c->config.log_arg);
}

static long long wall_ms(void)
{
    return (long long)(rt_clock_wall() * 1000.0);
}

/* ---- Redis helpers (Redis thread) --------------------------------------------------- */

/* Checks a reply: NULL (the connection failed) or an error reply fill why and give -1. */
static int reply_ok(redisContext *rc, redisReply *r, const char *what, char *why, size_t n)
{
    if (!r) {
        snprintf(why, n, "%s: %s", what, rc->errstr[0] ? rc->errstr : "no answer");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, n, "%s: %s", what, r->str ? r->str : "error");
        return -1;
    }
    return 0;
}

/* One command whose answer must be an integer. 0 with *out, or -1 with why. */
static int command_integer(redisContext *rc, int argc, const char **argv, long long *out,
                           char *why, size_t n)
{
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    if (reply_ok(rc, r, argv[0], why, n) != 0) {
        freeReplyObject(r);
        return -1;
    }
    int ok = r->type == REDIS_REPLY_INTEGER;
    if (ok)
        *out = r->integer;
    else
        snprintf(why, n, "%s: not an integer answer", argv[0]);
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static unsigned long long tag_number(const char *tag)
{
    unsigned long long n = 0;
    for (const char *p = tag; *p; p++) {
        int d = *p >= '0' && *p <= '9'   ? *p - '0'
                : *p >= 'A' && *p <= 'Z' ? *p - 'A' + 10
                                         : *p - 'a' + 36;
        n = n * 62 + (unsigned long long)d;
    }
    return n;
}

/* "<ms> <url>": the value of this node in the "nodes" hash. */
static void seen_value(const rt_cluster *c, char *out, size_t n)
{
    snprintf(out, n, "%lld %s", wall_ms(), c->advertise);
}

/* ---- joining: a tag and an epoch ------------------------------------------------------ */

static int take_tag(rt_cluster *c, redisContext *rc, char *why, size_t n)
{
    char seen[RT_CLUSTER_URL_MAX + 32];
    seen_value(c, seen, sizeof(seen));
    for (int tries = 0; tries < TAG_TRIES; tries++) {
        long long number;
        const char *incr[] = {"INCR", KEY_COUNTER};
        if (command_integer(rc, 2, incr, &number, why, n) != 0)
            return -1;
        char tag[RT_NODE_TAG_SIZE];
        rt_ref_tag_from_number((unsigned long long)number, tag);
        const char *claim[] = {"HSETNX", KEY_NODES, tag, seen};
        long long claimed;
        if (command_integer(rc, 4, claim, &claimed, why, n) != 0)
            return -1;
        if (!claimed)
            continue; /* a live node still has it: the counter went back */
        long long epoch;
        const char *incr_epoch[] = {"INCR", KEY_EPOCH};
        if (command_integer(rc, 2, incr_epoch, &epoch, why, n) != 0)
            return -1;
        memcpy(c->tag, tag, sizeof(tag));
        c->tag_number = (unsigned long long)number;
        pthread_mutex_lock(&c->lock);
        c->epoch = epoch;
        pthread_mutex_unlock(&c->lock);
        rt_ref_set_node_tag(tag); /* every id made from now on carries it */
        c->has_tag = true;
        return 0;
    }
    snprintf(why, n, "no free node tag after %d tries", TAG_TRIES);
    return -1;
}

/* ---- the heartbeat ------------------------------------------------------------------ */

static void local_load(rt_cluster *c, rt_cluster_load *load)
{
    memset(load, 0, sizeof(*load));
    if (c->config.scheduler) {
        rt_scheduler_stats ss;
        rt_scheduler_get_stats(c->config.scheduler, &ss);
        load->queued = ss.queued + ss.delayed;
        load->running = ss.busy;
    }
    if (c->config.store) {
        rt_store_stats st;
        rt_store_get_stats(c->config.store, &st);
        load->memory = st.bytes;
    }
}

/* After the record was found gone (Redis restarted, or this node was silent past the
 * expiry and others took it for dead): a new epoch, and the counter put back. */
/* Puts counter back to at least value. 0, or -1 with why. */
static int restore_counter(redisContext *rc, const char *counter, unsigned long long value,
                           char *why, size_t n)
{
    char text[24];
    snprintf(text, sizeof(text), "%llu", value);
    const char *restore[] = {"EVAL", RESTORE_COUNTER, "1", counter, text};
    redisReply *r = redisCommandArgv(rc, 5, restore, NULL);
    int failed = reply_ok(rc, r, "EVAL", why, n);
    freeReplyObject(r);
    return failed;
}

static int rejoin(rt_cluster *c, redisContext *rc, const char *key, char *why, size_t n)
{
    /* Both counters may have gone back with Redis's data: never hand out a number again
     * (for the epoch, none this node has seen on any node). */
    pthread_mutex_lock(&c->lock);
    long long old_epoch = c->epoch;
    unsigned long long top_tag = c->tag_number; /* nor a tag of a node known, dead ones too */
    for (size_t i = 0; i < c->nmembers; i++) {
        if (c->members[i].epoch > old_epoch)
            old_epoch = c->members[i].epoch;
        if (tag_number(c->members[i].tag) > top_tag)
            top_tag = tag_number(c->members[i].tag);
    }
    pthread_mutex_unlock(&c->lock);
    if (restore_counter(rc, KEY_COUNTER, top_tag, why, n) != 0 ||
        restore_counter(rc, KEY_EPOCH, (unsigned long long)old_epoch, why, n) != 0)
        return -1;
    long long epoch;
    const char *incr_epoch[] = {"INCR", KEY_EPOCH};
    if (command_integer(rc, 2, incr_epoch, &epoch, why, n) != 0)
        return -1;
    char epoch_text[24];
    snprintf(epoch_text, sizeof(epoch_text), "%lld", epoch);
    /* The record was made again by the heartbeat without its modules: they go back too. */
    const char *set[] = {"HSET", key, "epoch", epoch_text, "modules", c->modules_text};
    long long ignored;
    if (command_integer(rc, 6, set, &ignored, why, n) != 0)
        return -1;
    pthread_mutex_lock(&c->lock);
    c->epoch = epoch;
    pthread_mutex_unlock(&c->lock);
    c->rejoined = true;
    say(c, "warn",
        "node %s: its heartbeat record had expired (Redis restarted, or this node stalled); "
        "rejoined with epoch %lld",
        c->tag, epoch);
    return 0;
}

static int heartbeat(rt_cluster *c, redisContext *rc, char *why, size_t n)
{
    char key[sizeof(RECORD_PREFIX) + RT_NODE_TAG_SIZE];
    snprintf(key, sizeof(key), RECORD_PREFIX "%s", c->tag);
    rt_cluster_load load;
    local_load(c, &load);
    pthread_mutex_lock(&c->lock);
    long long epoch = c->epoch;
    pthread_mutex_unlock(&c->lock);
    char epoch_text[24], started[32], queued[24], running[24], memory[24], ttl[16];
    char seen[RT_CLUSTER_URL_MAX + 32];
    snprintf(epoch_text, sizeof(epoch_text), "%lld", epoch);
    snprintf(started, sizeof(started), "%.3f", c->started_wall);
    snprintf(queued, sizeof(queued), "%zu", load.queued);
    snprintf(running, sizeof(running), "%zu", load.running);
    snprintf(memory, sizeof(memory), "%zu", load.memory);
    snprintf(ttl, sizeof(ttl), "%d", RT_CLUSTER_RECORD_TTL_MS);
    seen_value(c, seen, sizeof(seen));
    const char *record[] = {"HSET",    key,        "url",    c->advertise, "epoch",
                            epoch_text, "started", started,  "queued",     queued,
                            "running", running,    "memory", memory,       "modules",
                            c->modules_text};
    /* The modules go with the first record only (a rejoin writes them again itself). */
    int record_argc = c->wrote_record ? 14 : 16;
    const char *expire[] = {"PEXPIRE", key, ttl};
    const char *nodes[] = {"HSET", KEY_NODES, c->tag, seen};
    /* One round trip for the three. */
    redisAppendCommandArgv(rc, record_argc, record, NULL);
    redisAppendCommandArgv(rc, 3, expire, NULL);
    redisAppendCommandArgv(rc, 4, nodes, NULL);
    long long added = -1;
    int failed = 0;
    for (int i = 0; i < 3; i++) {
        redisReply *r = NULL;
        if (redisGetReply(rc, (void **)&r) != REDIS_OK)
            r = NULL;
        if (!failed && reply_ok(rc, r, i == 0 ? "HSET" : i == 1 ? "PEXPIRE" : "HSET", why,
                                n) != 0)
            failed = 1;
        if (i == 0 && r && r->type == REDIS_REPLY_INTEGER)
            added = r->integer;
        freeReplyObject(r);
        if (!r)
            return -1; /* the connection is gone: no more replies to read */
    }
    if (failed)
        return -1;
    if (c->wrote_record && added == RECORD_FIELDS) {
        /* The others' records are likely gone too: give them time to come back. */
        c->grace_from = rt_clock_monotonic();
        if (rejoin(c, rc, key, why, n) != 0)
            return -1;
    }
    c->wrote_record = true;
    return 0;
}

/* ---- reading the others ------------------------------------------------------------- */

static bool valid_tag(const char *tag)
{
    size_t len = strlen(tag);
    if (len == 0 || len > RT_NODE_TAG_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = tag[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')))
            return false;
    }
    return true;
}

/* A record's field in an HMGET answer (fields in FIELD_NAMES order), or NULL. */
static const char *record_field(const redisReply *r, int field)
{
    if (r->type != REDIS_REPLY_ARRAY || (size_t)field >= r->elements)
        return NULL;
    const redisReply *v = r->element[field];
    return v->type == REDIS_REPLY_STRING ? v->str : NULL;
}

static size_t parse_size(const char *s)
{
    return s ? (size_t)strtoull(s, NULL, 10) : 0;
}

static const member *find_member(const member *list, size_t n, const char *tag)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].tag, tag) == 0)
            return &list[i];
    return NULL;
}

/* Fills m from its record (an HMGET answer, modules included when asked for). The modules
 * m had are kept unless another process has the tag now (another start time). */
static void member_from_record(member *m, const redisReply *r, bool asked_modules)
{
    const char *url = record_field(r, F_URL), *epoch = record_field(r, F_EPOCH),
               *started = record_field(r, F_STARTED);
    if (url)
        snprintf(m->url, sizeof(m->url), "%s", url);
    m->epoch = epoch ? strtoll(epoch, NULL, 10) : 0;
    double was_started = m->started_at;
    m->started_at = started ? strtod(started, NULL) : 0;
    m->load.queued = parse_size(record_field(r, F_QUEUED));
    m->load.running = parse_size(record_field(r, F_RUNNING));
    m->load.memory = parse_size(record_field(r, F_MEMORY));
    if (asked_modules) {
        const char *text = record_field(r, F_MODULES);
        const redisReply *v = text ? r->element[F_MODULES] : NULL;
        m->modules = v ? rt_cluster_modules_parse(v->str, v->len) : NULL; /* NULL: ask again */
    } else if (m->started_at != was_started) {
        m->modules = NULL; /* read again at the next scan */
    }
}

/* Releases the modules of list's members that keep (another table) does not carry over
 * (the same tag with the same pointer). */
static void drop_modules(const member *list, size_t n, const member *keep, size_t nkeep)
{
    for (size_t i = 0; i < n; i++) {
        const member *kept = find_member(keep, nkeep, list[i].tag);
        if (!kept || kept->modules != list[i].modules)
            json_decref(list[i].modules);
    }
}

/* Emits the lifecycle events "node joined" and "node left" for who came and who went
 * between two tables (rate-limited like every lifecycle event, so a flapping Redis cannot
 * flood stdout). No lock held. */
static void log_changes(const member *old, size_t nold, const member *now, size_t nnow)
{
    for (size_t i = 0; i < nnow; i++) {
        const member *was = find_member(old, nold, now[i].tag);
        bool was_alive = was && was->alive;
        if (now[i].alive && !was_alive)
            rt_event_emit("info", "node joined",
                          json_pack("{s:s,s:s}", "node", now[i].tag, "url", now[i].url));
        else if (!now[i].alive && was_alive)
            rt_event_emit("warn", "node left",
                          json_pack("{s:s,s:s,s:s}", "node", now[i].tag, "url", now[i].url,
                                    "detail", "its heartbeat record is gone (stopped, or "
                                              "silent for longer than its expiry); the "
                                              "objects it owned are lost"));
    }
}

/* Reads "nodes" and the records of recent tags (one pipelined round trip), and replaces
 * the member table. */
static int scan(rt_cluster *c, redisContext *rc, char *why, size_t n)
{
    const char *getall[] = {"HGETALL", KEY_NODES};
    redisReply *all = redisCommandArgv(rc, 2, getall, NULL);
    if (reply_ok(rc, all, "HGETALL nodes", why, n) != 0) {
        freeReplyObject(all);
        return -1;
    }
    size_t pairs = all->type == REDIS_REPLY_ARRAY ? all->elements / 2 : 0;
    member *next = calloc(pairs + 1, sizeof(*next));
    long *plan = calloc(pairs + 1, sizeof(*plan)); /* per reply: member index, or -1 */
    bool *present = calloc(3 * (pairs + 1), sizeof(*present));
    if (!next || !plan || !present) {
        free(next);
        free(plan);
        free(present);
        freeReplyObject(all);
        return 0; /* out of memory: keep the table as it is until the next scan */
    }
    bool *asked = present + pairs + 1;          /* member i's record was asked for */
    bool *with_modules = present + 2 * (pairs + 1); /* and its modules with it */
    long long now = wall_ms();
    size_t nnext = 0, nplan = 0;
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *k = all->element[2 * i], *v = all->element[2 * i + 1];
        if (!k->str || !v->str || !valid_tag(k->str) || strcmp(k->str, c->tag) == 0)
            continue;
        char *url_start = NULL;
        long long seen = strtoll(v->str, &url_start, 10);
        if (url_start && *url_start == ' ')
            url_start++;
        if (now - seen > FORGET_MS) {
            const char *forget[] = {"HDEL", KEY_NODES, k->str};
            redisAppendCommandArgv(rc, 3, forget, NULL);
            plan[nplan++] = -1;
            continue;
        }
        member *m = &next[nnext];
        snprintf(m->tag, sizeof(m->tag), "%s", k->str);
        snprintf(m->url, sizeof(m->url), "%s", url_start ? url_start : "");
        /* Only this thread writes the table, so it reads it without the lock. */
        const member *old = find_member(c->members, c->nmembers, m->tag);
        if (old) { /* what was known stays until a record says otherwise */
            m->dead_since = old->dead_since;
            m->alive = old->alive;
            m->epoch = old->epoch;
            m->started_at = old->started_at;
            m->load = old->load;
            m->modules = old->modules;
        }
        /* A tag silent for a minute and not alive here is dead without asking. */
        if (now - seen <= RECENT_MS || m->alive) {
            char key[sizeof(RECORD_PREFIX) + RT_NODE_TAG_SIZE];
            snprintf(key, sizeof(key), RECORD_PREFIX "%s", m->tag);
            const char *get[2 + F_COUNT] = {"HMGET", key};
            for (int f = 0; f < F_COUNT; f++)
                get[2 + f] = FIELD_NAMES[f];
            with_modules[nnext] = !m->modules;
            redisAppendCommandArgv(rc, with_modules[nnext] ? 2 + F_COUNT : 1 + F_COUNT, get,
                                   NULL);
            plan[nplan++] = (long)nnext;
            asked[nnext] = true;
        } else {
            m->alive = false;
        }
        nnext++;
    }
    freeReplyObject(all);
    for (size_t i = 0; i < nplan; i++) {
        redisReply *r = NULL;
        if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r) {
            snprintf(why, n, "HMGET node:*: %s", rc->errstr[0] ? rc->errstr : "no answer");
            drop_modules(next, nnext, c->members, c->nmembers);
            free(next);
            free(plan);
            free(present);
            return -1;
        }
        if (plan[i] >= 0 && record_field(r, F_URL)) { /* a record that is gone: all nil */
            present[plan[i]] = true;
            member_from_record(&next[plan[i]], r, with_modules[plan[i]]);
        }
        freeReplyObject(r);
    }
    /* After a reconnection, or once this node's own record was found gone, records get one
     * expiry period to be written again (Redis may have restarted empty, or lost its data)
     * before their nodes are taken for dead. */
    bool grace = rt_clock_monotonic() - c->grace_from <
                 RT_CLUSTER_RECORD_TTL_MS / 1000.0 + RT_CLUSTER_HEARTBEAT;
    for (size_t i = 0; i < nnext; i++)
        if (asked[i])
            next[i].alive = present[i] || (grace && next[i].alive);
    free(plan);
    free(present);
    /* Nodes this node knew that are missing from "nodes" (Redis restarted empty) are not
     * forgotten: in the grace period they stay as they were until they write themselves
     * back; after it they are dead (their objects answer 410, not 404) for a week. */
    double now_mono = rt_clock_monotonic();
    size_t missing = 0;
    for (size_t i = 0; i < c->nmembers; i++)
        missing += !find_member(next, nnext, c->members[i].tag);
    if (missing) {
        member *grown = realloc(next, (nnext + missing) * sizeof(*next));
        for (size_t i = 0; grown && i < c->nmembers; i++) {
            const member *old = &c->members[i];
            if (find_member(grown, nnext, old->tag) ||
                (old->dead_since > 0 && now_mono - old->dead_since > FORGET_MS / 1000.0))
                continue;
            grown[nnext] = *old;
            grown[nnext].alive = old->alive && grace;
            nnext++;
        }
        if (grown)
            next = grown;
    }
    for (size_t i = 0; i < nnext; i++) {
        if (next[i].alive)
            next[i].dead_since = 0;
        else if (next[i].dead_since == 0)
            next[i].dead_since = now_mono;
    }

    pthread_mutex_lock(&c->lock);
    member *old = c->members;
    size_t nold = c->nmembers;
    c->members = next;
    c->nmembers = nnext;
    pthread_mutex_unlock(&c->lock);
    log_changes(old, nold, next, nnext);
    drop_modules(old, nold, next, nnext);
    free(old);
    return 0;
}

/* ---- the Redis thread's callbacks ------------------------------------------------------ */

static int tick(redisContext *rc, int fresh, void *arg, char *why, size_t n)
{
    rt_cluster *c = arg;
    if (fresh) /* Redis may be back from a restart: records get time to reappear */
        c->grace_from = rt_clock_monotonic();
    if (!c->has_tag && take_tag(c, rc, why, n) != 0)
        return -1;
    /* The record written now expires no earlier than this moment plus its expiry. */
    double written_from = rt_clock_monotonic();
    if (heartbeat(c, rc, why, n) != 0 || scan(c, rc, why, n) != 0)
        return -1;
    if (c->on_tick) {
        /* After a rejoin, the lease is held again only once the hook has checked what
         * this node held (rejoined stays set until the hook succeeds). */
        if (c->on_tick(rc, c->rejoined, c->on_tick_arg, why, n) != 0)
            return -1;
    }
    c->rejoined = false;
    long long until = (long long)((written_from + RT_CLUSTER_RECORD_TTL_MS / 1000.0 -
                                   RT_CLUSTER_LEASE_MARGIN) * 1e9);
    __atomic_store_n(&c->lease_until_ns, until, __ATOMIC_RELEASE);
    /* Joined after the second heartbeat: by then every other node has scanned once since
     * this node's record appeared, so they know its tag when its ids reach them. */
    if (!__atomic_load_n(&c->joined, __ATOMIC_RELAXED) && ++c->ticks >= 2) {
        __atomic_store_n(&c->joined, 1, __ATOMIC_RELEASE);
        pthread_mutex_lock(&c->lock);
        long long epoch = c->epoch;
        size_t others = c->nmembers;
        pthread_mutex_unlock(&c->lock);
        say(c, "info", "joined the cluster as node %s (%s), epoch %lld; %zu other node%s known",
            c->tag, c->advertise, epoch, others, others == 1 ? "" : "s");
    }
    if (c->on_joined_tick && __atomic_load_n(&c->joined, __ATOMIC_RELAXED))
        c->on_joined_tick(c->on_joined_tick_arg);
    return 0;
}

static int leave(redisContext *rc, int fresh, void *arg, char *why, size_t n)
{
    (void)fresh;
    rt_cluster *c = arg;
    if (!c->has_tag)
        return 0;
    char key[sizeof(RECORD_PREFIX) + RT_NODE_TAG_SIZE];
    snprintf(key, sizeof(key), RECORD_PREFIX "%s", c->tag);
    char seen[RT_CLUSTER_URL_MAX + 32];
    seen_value(c, seen, sizeof(seen));
    const char *del[] = {"DEL", key};
    const char *nodes[] = {"HSET", KEY_NODES, c->tag, seen};
    long long ignored;
    if (command_integer(rc, 2, del, &ignored, why, n) != 0 ||
        command_integer(rc, 4, nodes, &ignored, why, n) != 0)
        return -1;
    say(c, "info", "left the cluster: node %s's record removed", c->tag);
    return 0;
}

static void redis_state(int up, const char *why, void *arg)
{
    rt_cluster *c = arg;
    pthread_mutex_lock(&c->lock);
    c->redis_up = up;
    __atomic_store_n(&c->redis_up_now, up ? 1 : 0, __ATOMIC_RELEASE);
    snprintf(c->redis_error, sizeof(c->redis_error), "%s", up ? "" : why);
    pthread_mutex_unlock(&c->lock);
    if (up) {
        say(c, "info", "%s Redis at %s:%u", c->redis_was_up ? "reconnected to" : "connected to",
            c->url.host, c->url.port);
        c->redis_was_up = true;
    } else {
        say(c, "warn",
            "Redis unreachable (%s): serving what is known, retrying", why);
    }
}

/* ---- public ------------------------------------------------------------------------- */

rt_cluster *rt_cluster_new(const rt_cluster_config *config, char *err, size_t err_size)
{
    rt_cluster *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    c->config = *config;
    if (rt_redis_url_parse(config->redis_url, &c->url, err, err_size) != 0) {
        free(c);
        return NULL;
    }
    if (config->redis_password) {
        if (strlen(config->redis_password) >= sizeof(c->url.password)) {
            snprintf(err, err_size, "the Redis password is too long");
            free(c);
            return NULL;
        }
        snprintf(c->url.password, sizeof(c->url.password), "%s", config->redis_password);
    }
    const char *modules = config->modules ? config->modules : "[]";
    c->modules_text = strdup(modules);
    c->modules = rt_cluster_modules_parse(modules, strlen(modules));
    if (!c->modules_text || !c->modules) {
        snprintf(err, err_size, "this node's module list is not one a record can carry");
        free(c->modules_text);
        json_decref(c->modules);
        free(c);
        return NULL;
    }
    c->config.redis_url = NULL; /* borrowed strings are not kept */
    c->config.redis_password = NULL;
    c->config.modules = NULL;
    c->started_wall = rt_clock_wall();
    pthread_mutex_init(&c->lock, NULL);
    snprintf(c->redis_error, sizeof(c->redis_error), "not connected yet");
    return c;
}

void rt_cluster_on_joined_tick(rt_cluster *c, void (*fn)(void *arg), void *arg)
{
    c->on_joined_tick = fn;
    c->on_joined_tick_arg = arg;
}

int rt_cluster_start(rt_cluster *c, const char *advertise_url)
{
    if (strlen(advertise_url) >= sizeof(c->advertise))
        return -1;
    snprintf(c->advertise, sizeof(c->advertise), "%s", advertise_url);
    rt_redis_config rc = {
        .url = c->url,
        .period = RT_CLUSTER_HEARTBEAT,
        .timeout = REDIS_TIMEOUT,
        .tick = tick,
        .leave = leave,
        .state = redis_state,
        .arg = c,
    };
    c->redis = rt_redis_start(&rc);
    c->commands = rt_redis_commands_start(&c->url, REDIS_TIMEOUT, COMMANDS_QUEUED_MAX);
    return c->redis && c->commands ? 0 : -1;
}

void rt_cluster_on_tick(rt_cluster *c, rt_cluster_tick_fn fn, void *arg)
{
    c->on_tick = fn;
    c->on_tick_arg = arg;
}

bool rt_cluster_lease_held(const rt_cluster *c)
{
    long long until = __atomic_load_n(&c->lease_until_ns, __ATOMIC_ACQUIRE);
    return until > 0 && rt_clock_monotonic() * 1e9 < (double)until;
}

const char *rt_cluster_tag(const rt_cluster *c)
{
    return rt_cluster_joined(c) ? c->tag : "";
}

int rt_cluster_command(rt_cluster *c, int argc, const char *const *argv, rt_redis_done_fn done,
                       void *arg)
{
    return rt_redis_command(c->commands, argc, argv, done, arg);
}

void rt_cluster_commands_close(rt_cluster *c)
{
    if (c)
        rt_redis_commands_close(c->commands);
}

void rt_cluster_free(rt_cluster *c)
{
    if (!c)
        return;
    rt_redis_stop(c->redis);
    rt_redis_commands_free(c->commands);
    for (size_t i = 0; i < c->nmembers; i++)
        json_decref(c->members[i].modules);
    free(c->members);
    free(c->modules_text);
    json_decref(c->modules);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

bool rt_cluster_joined(const rt_cluster *c)
{
    return __atomic_load_n(&c->joined, __ATOMIC_ACQUIRE) != 0;
}

bool rt_cluster_redis_up(const rt_cluster *c)
{
    return __atomic_load_n(&c->redis_up_now, __ATOMIC_ACQUIRE) != 0;
}

rt_owner rt_cluster_owner(rt_cluster *c, const char *id, char tag[RT_NODE_TAG_SIZE], char *url,
                          size_t url_size)
{
    if (url && url_size)
        url[0] = '\0';
    if (rt_ref_owner(id, tag) == 0) {
        tag[0] = '\0';
        return RT_OWNER_SELF;
    }
    return rt_cluster_owner_of_tag(c, tag, url, url_size);
}

rt_owner rt_cluster_owner_of_tag(rt_cluster *c, const char *tag, char *url, size_t url_size)
{
    if (url && url_size)
        url[0] = '\0';
    if (rt_cluster_joined(c) && strcmp(tag, c->tag) == 0)
        return RT_OWNER_SELF;
    rt_owner owner = RT_OWNER_UNKNOWN;
    pthread_mutex_lock(&c->lock);
    const member *m = find_member(c->members, c->nmembers, tag);
    if (m) {
        owner = m->alive ? RT_OWNER_ALIVE : RT_OWNER_DEAD;
        if (url && url_size)
            snprintf(url, url_size, "%s", m->url);
    }
    pthread_mutex_unlock(&c->lock);
    return owner;
}

void rt_cluster_get_info(rt_cluster *c, rt_cluster_info *out)
{
    memset(out, 0, sizeof(*out));
    out->joined = rt_cluster_joined(c);
    if (out->joined)
        memcpy(out->tag, c->tag, sizeof(out->tag));
    pthread_mutex_lock(&c->lock);
    snprintf(out->url, sizeof(out->url), "%s", c->advertise);
    out->epoch = c->epoch;
    out->redis_up = c->redis_up;
    snprintf(out->redis_error, sizeof(out->redis_error), "%s", c->redis_error);
    pthread_mutex_unlock(&c->lock);
}

static int cmp_node(const void *a, const void *b)
{
    const rt_cluster_node *x = a, *y = b;
    if (x->self != y->self)
        return x->self ? -1 : 1;
    unsigned long long nx = tag_number(x->tag), ny = tag_number(y->tag);
    return nx < ny ? -1 : nx > ny;
}

size_t rt_cluster_nodes(rt_cluster *c, rt_cluster_node **nodes)
{
    *nodes = NULL;
    bool joined = rt_cluster_joined(c);
    rt_cluster_load load;
    if (joined)
        local_load(c, &load);
    pthread_mutex_lock(&c->lock);
    size_t n = c->nmembers + (joined ? 1 : 0);
    rt_cluster_node *out = calloc(n + 1, sizeof(*out));
    if (!out) {
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    size_t k = 0;
    if (joined) {
        rt_cluster_node *self = &out[k++];
        memcpy(self->tag, c->tag, sizeof(self->tag));
        snprintf(self->url, sizeof(self->url), "%s", c->advertise);
        self->alive = true;
        self->self = true;
        self->epoch = c->epoch;
        self->started_at = c->started_wall;
        self->load = load;
    }
    for (size_t i = 0; i < c->nmembers; i++) {
        const member *m = &c->members[i];
        rt_cluster_node *o = &out[k++];
        memcpy(o->tag, m->tag, sizeof(o->tag));
        memcpy(o->url, m->url, sizeof(o->url));
        o->alive = m->alive;
        o->epoch = m->epoch;
        o->started_at = m->started_at;
        o->load = m->load;
    }
    pthread_mutex_unlock(&c->lock);
    qsort(out, n, sizeof(*out), cmp_node);
    *nodes = out;
    return n;
}

json_t *rt_cluster_node_modules(rt_cluster *c, const char *tag)
{
    if (rt_cluster_joined(c) && strcmp(tag, c->tag) == 0)
        return json_deep_copy(c->modules);
    json_t *copy = NULL;
    pthread_mutex_lock(&c->lock);
    const member *m = find_member(c->members, c->nmembers, tag);
    if (m && m->modules)
        copy = json_deep_copy(m->modules); /* a copy: jansson's reads are not all thread-safe */
    pthread_mutex_unlock(&c->lock);
    return copy;
}

bool rt_cluster_node_provides(rt_cluster *c, const char *tag, const char *name, bool is_class)
{
    pthread_mutex_lock(&c->lock);
    const member *m = find_member(c->members, c->nmembers, tag);
    bool provides = m && rt_cluster_modules_find(m->modules, name, is_class) != NULL;
    pthread_mutex_unlock(&c->lock);
    return provides;
}

json_t *rt_cluster_module_providers(rt_cluster *c, const char *name, bool is_class)
{
    json_t *nodes = json_array(), *found = NULL;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->nmembers && nodes; i++) {
        const member *m = &c->members[i];
        const char *module = m->alive ? rt_cluster_modules_find(m->modules, name, is_class) : NULL;
        if (!module)
            continue;
        if (!found)
            found = json_pack("{s:s}", "module", module);
        json_array_append_new(nodes, json_pack("{s:s,s:s,s:s}", "node", m->tag, "url", m->url,
                                               "module", module));
    }
    pthread_mutex_unlock(&c->lock);
    if (found && nodes && json_array_size(nodes) > 0) {
        json_object_set_new(found, "nodes", nodes);
        return found;
    }
    json_decref(found);
    json_decref(nodes);
    return NULL;
}
