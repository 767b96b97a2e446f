/* The actor directory: restartable actors' records in Redis, restarts of dead nodes' actors,
 * fencing. See cluster_actors.h.
 *
 * DESIGN
 * - `lock` guards the table of actors held here (id -> incarnation and what a record needs)
 *   and nothing else; no call is made with it held.
 * - Scripts decide everything that two nodes could race on (a claim, a state write, a
 *   delete), each in one Lua script, so Redis runs it atomically; every write of a record is
 *   conditional on the node and incarnation that hold it.
 * - A deleted record leaves a tombstone ("gone", kept GONE_MS) so that a node coming back
 *   after a stall can tell "killed while I was away" (forget it here) from "Redis lost its
 *   data" (record it again). */
#include "runtime/cluster_actors.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/args.h"
#include "runtime/clock.h"
#include "runtime/events.h"
#include "runtime/hash.h"

#define BUCKETS 4096
#define DEAD_TRACKED 64    /* dead nodes whose death time is remembered */
#define CLAIMS_PER_TICK 64 /* ids looked at per dead node per heartbeat */
#define KEY_PREFIX "actor:"
#define SET_PREFIX "actors:on:"
#define KEY_SIZE (sizeof(KEY_PREFIX) + RT_REF_SIZE)
#define SET_SIZE (sizeof(SET_PREFIX) + RT_NODE_TAG_SIZE)

/* Deleting a record leaves a tombstone for an hour (see DESIGN). */
#define TOMBSTONE                                                                                  \
    "redis.call('DEL', KEYS[1]) redis.call('HSET', KEYS[1], 'gone', '1') "                         \
    "redis.call('PEXPIRE', KEYS[1], 3600000) "

/* KEYS[1] actor:<id>, KEYS[2] actors:on:<me>; ARGV[1] me, ARGV[2] "incarnation restarts
 * max_restarts", ARGV[3] class, ARGV[4] spec. Writes the record when there is none (a new
 * actor, or Redis lost it); answers "ok" when the record is (now) this node's, "gone" for a
 * tombstone, else "moved <node>". */
static const char RECORD[] =
    "local id = string.sub(KEYS[1], 7) "
    "local inc, r, m = string.match(ARGV[2], '^(%d+) (%d+) (%-?%d+)$') "
    "if redis.call('HGET', KEYS[1], 'gone') then return 'gone' end "
    "local n = redis.call('HGET', KEYS[1], 'node') "
    "if not n then "
    "  redis.call('HSET', KEYS[1], 'node', ARGV[1], 'incarnation', inc, 'restarts', r, "
    "             'max_restarts', m, 'class', ARGV[3], 'spec', ARGV[4]) "
    "  redis.call('SADD', KEYS[2], id) return 'ok' end "
    "if n == ARGV[1] and redis.call('HGET', KEYS[1], 'incarnation') == inc then "
    "  redis.call('SADD', KEYS[2], id) return 'ok' end "
    "return 'moved ' .. n";

/* KEYS[1] actor:<id>, KEYS[2] actors:on:<me>; ARGV[1] me, ARGV[2] incarnation. */
static const char FORGET[] =
    "if redis.call('HGET', KEYS[1], 'node') == ARGV[1] and "
    "   redis.call('HGET', KEYS[1], 'incarnation') == ARGV[2] then " TOMBSTONE
    "  redis.call('SREM', KEYS[2], string.sub(KEYS[1], 7)) return 1 end "
    "return 0";

/* KEYS[1] actor:<id>; ARGV[1] me, ARGV[2] incarnation, ARGV[3] field, ARGV[4] value. 1
 * written, 0 the record is another node's, -1 no record. */
static const char SET_FIELD[] =
    "local n = redis.call('HGET', KEYS[1], 'node') "
    "if not n then return -1 end "
    "if n == ARGV[1] and redis.call('HGET', KEYS[1], 'incarnation') == ARGV[2] then "
    "  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4]) return 1 end "
    "return 0";

/* KEYS[1] actor:<id>. */
static const char LOCATE[] = "local n = redis.call('HGET', KEYS[1], 'node') "
                             "if not n or n == '' then return false end return n";

/* KEYS[1] actor:<id>, KEYS[2] actors:on:<dead>, KEYS[3] actors:on:<me>, KEYS[4]
 * node:<dead>; ARGV[1] dead, ARGV[2] me. */
static const char CLAIM[] =
    "local id = string.sub(KEYS[1], 7) "
    "if redis.call('EXISTS', KEYS[4]) == 1 then return {'alive'} end "
    "redis.call('SREM', KEYS[2], id) "
    "if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] then return {'gone'} end "
    "local r = tonumber(redis.call('HGET', KEYS[1], 'restarts')) or 0 "
    "local m = tonumber(redis.call('HGET', KEYS[1], 'max_restarts')) or 0 "
    "if m >= 0 and r >= m then " TOMBSTONE " return {'dead', tostring(r)} end "
    "local inc = redis.call('HINCRBY', KEYS[1], 'incarnation', 1) "
    "redis.call('HSET', KEYS[1], 'node', ARGV[2], 'restarts', tostring(r + 1)) "
    "redis.call('SADD', KEYS[3], id) "
    "return {'claimed', tostring(inc), tostring(r + 1), "
    "        redis.call('HGET', KEYS[1], 'spec') or '', "
    "        redis.call('HGET', KEYS[1], 'state') or ''}";

typedef struct held {
    struct held *next;
    char id[RT_REF_SIZE];
    long long incarnation;
    char class_name[RT_ACTOR_NAME_MAX + 1];
    int max_restarts;
    char *spec; /* as kept in Redis, for recording it again */
} held;

typedef struct dead_node {
    char tag[RT_NODE_TAG_SIZE];
    double since; /* monotonic: first seen dead */
    bool drained; /* its set was found empty: nothing more to take (nobody adds to it) */
} dead_node;

struct rt_actor_dir {
    rt_cluster *cluster;
    rt_actors *actors;
    rt_fetch *fetch;
    pthread_mutex_t lock;
    held *buckets[BUCKETS]; /* lock */
    size_t nheld;           /* lock */
    int closed;             /* atomic: the cluster is going away */
    /* heartbeat thread only: */
    dead_node dead[DEAD_TRACKED];
    size_t ndead;
};

static void ignore(const rt_redis_answer *answer, void *arg)
{
    (void)answer;
    (void)arg;
}

static void actor_key(char *key, const char *id)
{
    snprintf(key, KEY_SIZE, KEY_PREFIX "%s", id);
}

static void set_key(char *key, const char *tag)
{
    snprintf(key, SET_SIZE, SET_PREFIX "%s", tag);
}

/* ---- the table of actors held here -------------------------------------------------- */

/* The entry of id (lock held), as the link that points at it. */
static held **find_held(rt_actor_dir *dir, const char *id)
{
    held **p = &dir->buckets[rt_hash_str(id) % BUCKETS];
    while (*p && strcmp((*p)->id, id) != 0)
        p = &(*p)->next;
    return p;
}

static void held_free(held *h)
{
    if (h) {
        free(h->spec);
        free(h);
    }
}

/* Adds (or replaces) the entry of id. spec copied. */
static void hold(rt_actor_dir *dir, const char *id, long long incarnation, const char *class_name,
                 int max_restarts, const char *spec)
{
    held *h = calloc(1, sizeof(*h));
    if (!h)
        return;
    h->spec = strdup(spec ? spec : "{}");
    if (!h->spec) {
        free(h);
        return;
    }
    snprintf(h->id, sizeof(h->id), "%s", id);
    h->incarnation = incarnation;
    snprintf(h->class_name, sizeof(h->class_name), "%s", class_name);
    h->max_restarts = max_restarts;
    pthread_mutex_lock(&dir->lock);
    held **p = find_held(dir, id);
    held *old = *p;
    if (old) {
        h->next = old->next;
    } else {
        h->next = NULL;
        dir->nheld++;
    }
    *p = h;
    pthread_mutex_unlock(&dir->lock);
    held_free(old);
}

/* Takes the entry of id out; returns it (the caller frees it), or NULL. */
static held *unhold(rt_actor_dir *dir, const char *id)
{
    pthread_mutex_lock(&dir->lock);
    held **p = find_held(dir, id);
    held *h = *p;
    if (h) {
        *p = h->next;
        dir->nheld--;
    }
    pthread_mutex_unlock(&dir->lock);
    return h;
}

/* The incarnation of id held here, or 0 when not held. */
static long long incarnation_of(rt_actor_dir *dir, const char *id)
{
    pthread_mutex_lock(&dir->lock);
    held *h = *find_held(dir, id);
    long long inc = h ? h->incarnation : 0;
    pthread_mutex_unlock(&dir->lock);
    return inc;
}

bool rt_actor_dir_holds(rt_actor_dir *dir, const char *id)
{
    return dir && incarnation_of(dir, id) > 0;
}

/* ---- records -------------------------------------------------------------------------- */

char *rt_actor_dir_spec_text(const rt_actor_spec *spec, size_t *len)
{
    json_t *j =
        json_pack("{s:s,s:O,s:O,s:o,s:i,s:I}", "class", spec->class_name, "args",
                  spec->args ? spec->args : json_array(), "kwargs",
                  spec->kwargs ? spec->kwargs : json_object(), "name",
                  spec->name ? json_string(spec->name) : json_null(), "max_restarts",
                  spec->max_restarts, "max_pending_calls", (json_int_t)spec->max_pending_calls);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    *len = text ? strlen(text) : 0;
    if (text && *len > RT_ACTOR_DIR_SPEC_MAX) {
        free(text);
        return NULL;
    }
    return text;
}

int rt_actor_dir_record(rt_actor_dir *dir, const char *actor_id, const char *class_name,
                        int max_restarts, const char *spec_text, rt_redis_done_fn done, void *arg)
{
    char key[KEY_SIZE], set[SET_SIZE], counts[64];
    actor_key(key, actor_id);
    set_key(set, rt_cluster_tag(dir->cluster));
    snprintf(counts, sizeof(counts), "1 0 %d", max_restarts);
    /* Held before it is recorded: an end that comes first still deletes the record, as
     * the command thread runs commands in order. */
    hold(dir, actor_id, 1, class_name, max_restarts, spec_text);
    /* EVAL with the spec would take nine arguments, one more than rt_cluster_command
     * carries: class and spec travel together, and the script splits them. */
    size_t clen = strlen(class_name);
    char *both = malloc(clen + 1 + strlen(spec_text) + 1);
    if (!both) {
        held_free(unhold(dir, actor_id));
        return -1;
    }
    memcpy(both, class_name, clen);
    both[clen] = '\n';
    strcpy(both + clen + 1, spec_text);
    static const char RECORD_SPLIT[] =
        "local cut = string.find(ARGV[3], '\\n', 1, true) "
        "ARGV[4] = string.sub(ARGV[3], cut + 1) ARGV[3] = string.sub(ARGV[3], 1, cut - 1) ";
    char script[sizeof(RECORD_SPLIT) + sizeof(RECORD)];
    snprintf(script, sizeof(script), "%s%s", RECORD_SPLIT, RECORD);
    const char *args[] = {"EVAL", script, "2", key, set, rt_cluster_tag(dir->cluster),
                          counts, both};
    int rc = rt_cluster_command(dir->cluster, 8, args, done, arg);
    free(both);
    if (rc != 0)
        held_free(unhold(dir, actor_id));
    return rc;
}

int rt_actor_dir_locate(rt_actor_dir *dir, const char *actor_id, rt_redis_done_fn done, void *arg)
{
    char key[KEY_SIZE];
    actor_key(key, actor_id);
    const char *argv[] = {"EVAL", LOCATE, "1", key};
    return rt_cluster_command(dir->cluster, 4, argv, done, arg);
}

/* Writes one field of a record this node holds (command thread). */
static int set_field(rt_actor_dir *dir, const char *id, long long incarnation, const char *field,
                     const char *value, rt_redis_done_fn done, void *arg)
{
    char key[KEY_SIZE], inc[24];
    actor_key(key, id);
    snprintf(inc, sizeof(inc), "%lld", incarnation);
    const char *argv[] = {"EVAL", SET_FIELD, "1",  key, rt_cluster_tag(dir->cluster),
                          inc,    field,     value};
    return rt_cluster_command(dir->cluster, 8, argv, done, arg);
}

typedef struct keep_call {
    rt_state_keep_done_fn done;
    void *arg;
} keep_call;

static void state_written(const rt_redis_answer *a, void *arg)
{
    keep_call *k = arg;
    if (a->type == RT_REDIS_INTEGER && a->integer == 1)
        k->done(RT_STATE_KEPT, NULL, k->arg);
    else if (a->type == RT_REDIS_INTEGER && a->integer == 0)
        k->done(RT_STATE_FENCED, NULL, k->arg);
    else if (a->type == RT_REDIS_INTEGER) /* no record: killed, or Redis lost it */
        k->done(RT_STATE_NOT_KEPT, NULL, k->arg);
    else
        k->done(RT_STATE_UNAVAILABLE,
                a->type == RT_REDIS_FAILED ? a->why
                : a->str                   ? a->str
                                           : "an unexpected answer",
                k->arg);
    free(k);
}

int rt_actor_dir_keep_state(void *p, const char *actor_id, const char *state, size_t len,
                            rt_state_keep_done_fn done, void *arg)
{
    rt_actor_dir *dir = p;
    if (__atomic_load_n(&dir->closed, __ATOMIC_ACQUIRE)) {
        done(RT_STATE_UNAVAILABLE, "this node is stopping", arg);
        return 0;
    }
    long long inc = incarnation_of(dir, actor_id);
    if (!inc) { /* not restartable here: nothing reads it */
        done(RT_STATE_NOT_KEPT, NULL, arg);
        return 0;
    }
    if (len > RT_ACTOR_DIR_STATE_MAX) {
        char why[96];
        snprintf(why, sizeof(why), "%zu bytes; at most %d", len, RT_ACTOR_DIR_STATE_MAX);
        done(RT_STATE_TOO_BIG, why, arg);
        return 0;
    }
    if (!rt_cluster_redis_up(dir->cluster)) {
        done(RT_STATE_UNAVAILABLE, "Redis is unreachable", arg);
        return 0;
    }
    keep_call *k = malloc(sizeof(*k));
    if (!k)
        return -1;
    k->done = done;
    k->arg = arg;
    (void)len; /* state is NUL-terminated JSON text */
    if (set_field(dir, actor_id, inc, "state", state, state_written, k) != 0) {
        free(k);
        return -1;
    }
    return 0;
}

void rt_actor_dir_ended(rt_actor_dir *dir, const char *actor_id)
{
    held *h = unhold(dir, actor_id);
    if (!h)
        return;
    char key[KEY_SIZE], set[SET_SIZE], inc[24];
    actor_key(key, actor_id);
    set_key(set, rt_cluster_tag(dir->cluster));
    snprintf(inc, sizeof(inc), "%lld", h->incarnation);
    const char *argv[] = {"EVAL", FORGET, "2", key, set, rt_cluster_tag(dir->cluster), inc};
    /* Lost when Redis does not answer: the record then names a live node that no longer
     * has the actor; calls to it answer 410, and its node deletes it at its next rejoin. */
    rt_cluster_command(dir->cluster, 7, argv, ignore, NULL);
    held_free(h);
}

void rt_actor_dir_restarted(rt_actor_dir *dir, const char *actor_id, unsigned restarts)
{
    long long inc = incarnation_of(dir, actor_id);
    if (!inc)
        return;
    char count[24];
    snprintf(count, sizeof(count), "%u", restarts);
    set_field(dir, actor_id, inc, "restarts", count, ignore, NULL);
}

/* ---- the heartbeat thread: rejoins and restarts ----------------------------------------- */

/* A reply's error (or none): fills why; -1 when the connection failed. */
static int reply_check(redisContext *rc, redisReply *r, const char *what, char *why, size_t n)
{
    if (r)
        return 0;
    snprintf(why, n, "%s: %s", what, rc->errstr[0] ? rc->errstr : "no answer");
    return -1;
}

/* After this node's record had expired: every actor held here is checked against its
 * record. One claimed by another node meanwhile (or killed there) is forgotten here; one
 * whose record Redis lost is recorded again. */
static int check_held(rt_actor_dir *dir, redisContext *rc, char *why, size_t n)
{
    pthread_mutex_lock(&dir->lock);
    size_t count = dir->nheld, k = 0;
    held *copy = calloc(count + 1, sizeof(*copy));
    for (size_t b = 0; copy && b < BUCKETS; b++)
        for (held *h = dir->buckets[b]; h && k < count; h = h->next) {
            copy[k] = *h;
            copy[k].spec = strdup(h->spec);
            k++;
        }
    pthread_mutex_unlock(&dir->lock);
    if (!copy)
        return 0; /* out of memory: checked at the next rejoin */
    int failed = 0;
    const char *me = rt_cluster_tag(dir->cluster);
    for (size_t i = 0; i < k && !failed; i++) {
        held *h = &copy[i];
        rt_actor_info info;
        if (rt_actor_get(dir->actors, h->id, &info) != RT_OK) {
            held_free(unhold(dir, h->id));
            continue;
        }
        unsigned restarts = info.restarts;
        rt_actor_info_release(&info);
        char key[KEY_SIZE], set[SET_SIZE], counts[80];
        actor_key(key, h->id);
        set_key(set, me);
        snprintf(counts, sizeof(counts), "%lld %u %d", h->incarnation, restarts, h->max_restarts);
        const char *argv[] = {
            "EVAL", RECORD, "2", key, set, me, counts, h->class_name, h->spec ? h->spec : "{}"};
        redisReply *r = redisCommandArgv(rc, 9, argv, NULL);
        if (reply_check(rc, r, "EVAL (check an actor)", why, n) != 0) {
            failed = 1;
            break;
        }
        if (r->type == REDIS_REPLY_STRING && strcmp(r->str, "ok") != 0) {
            char reason[160];
            snprintf(reason, sizeof(reason),
                     strncmp(r->str, "moved ", 6) == 0
                         ? "was restarted on node %s while this node was taken for dead"
                         : "was %s while this node was taken for dead",
                     strncmp(r->str, "moved ", 6) == 0 ? r->str + 6 : "killed or died");
            held_free(unhold(dir, h->id));
            rt_actor_forget(dir->actors, h->id, reason);
            rt_event_emit("warn", "actor moved",
                          json_pack("{s:s,s:s}", "actor_id", h->id, "detail", reason));
        }
        freeReplyObject(r);
    }
    for (size_t i = 0; i < k; i++)
        free(copy[i].spec);
    free(copy);
    return failed ? -1 : 0;
}

/* This thread's entry for dead node tag, made the first time it is seen dead. */
static dead_node *dead_entry(rt_actor_dir *dir, const char *tag, double now)
{
    for (size_t i = 0; i < dir->ndead; i++)
        if (strcmp(dir->dead[i].tag, tag) == 0)
            return &dir->dead[i];
    size_t slot =
        dir->ndead < DEAD_TRACKED ? dir->ndead++ : (size_t)(rt_hash_str(tag) % DEAD_TRACKED);
    snprintf(dir->dead[slot].tag, sizeof(dir->dead[slot].tag), "%s", tag);
    dir->dead[slot].since = now;
    dir->dead[slot].drained = false;
    return &dir->dead[slot];
}

static void forget_dead(rt_actor_dir *dir, const char *tag)
{
    for (size_t i = 0; i < dir->ndead; i++)
        if (strcmp(dir->dead[i].tag, tag) == 0) {
            dir->dead[i] = dir->dead[--dir->ndead];
            return;
        }
}

/* Whether this node is the one id goes to among the live nodes (rendezvous hashing: the
 * highest hash of id and tag). */
static bool preferred(const char *id, const rt_cluster_node *nodes, size_t n)
{
    uint32_t best = 0;
    bool mine = false, any = false;
    for (size_t i = 0; i < n; i++) {
        if (!nodes[i].alive)
            continue;
        char both[RT_REF_SIZE + RT_NODE_TAG_SIZE + 2];
        snprintf(both, sizeof(both), "%s/%s", id, nodes[i].tag);
        uint32_t h = rt_hash_str(both);
        if (!any || h > best || (h == best && nodes[i].self)) {
            best = h;
            mine = nodes[i].self;
            any = true;
        }
    }
    return mine;
}

/* A stand-in for v when it is a ref another node owns. */
static void want_ref(rt_actor_dir *dir, json_t *v)
{
    const char *ref = json_string_value(json_object_get(v, "$ref"));
    char tag[RT_NODE_TAG_SIZE];
    if (dir->fetch && rt_args_is_ref(v) && ref && rt_ref_valid(ref))
        rt_fetch_want(dir->fetch, ref, tag);
}

/* Makes again here an actor this node just claimed. */
static void restart_here(rt_actor_dir *dir, const char *id, const char *dead_tag, long long inc,
                         unsigned restarts, const char *spec_text, const char *state_text)
{
    json_t *spec = json_loads(spec_text, 0, NULL);
    json_t *state = state_text[0] ? json_loads(state_text, JSON_DECODE_ANY, NULL) : NULL;
    const char *class_name = json_string_value(json_object_get(spec, "class"));
    rt_actor_spec s = {
        .class_name = class_name,
        .args = json_object_get(spec, "args"),
        .kwargs = json_object_get(spec, "kwargs"),
        .name = json_string_value(json_object_get(spec, "name")),
        .max_restarts = (int)json_integer_value(json_object_get(spec, "max_restarts")),
        .max_pending_calls = (long)json_integer_value(json_object_get(spec, "max_pending_calls")),
        .actor_id = id,
        .fenced = true,
        .restarting = true,
        .restarts = restarts,
    };
    if (s.max_pending_calls == 0)
        s.max_pending_calls = -1;
    const rt_actor_class *cls = class_name ? rt_actors_get_class(dir->actors, class_name) : NULL;
    if (state && rt_remote_class_keeps_state(cls))
        s.resume_state = state; /* else its constructor runs again */
    rt_actor_class_drop(cls);
    /* Ref arguments other nodes own get stand-ins, as at creation (a dead node's end up
     * ObjectLost, and the constructor fails with that). */
    json_t *parts[2] = {s.args, s.kwargs};
    for (int p = 0; p < 2; p++) {
        size_t i;
        const char *k;
        json_t *v;
        if (json_is_array(parts[p])) {
            json_array_foreach(parts[p], i, v) want_ref(dir, v);
        } else if (json_is_object(parts[p])) {
            json_object_foreach(parts[p], k, v) want_ref(dir, v);
        }
    }
    rt_actor_info info;
    bool created = false;
    char err[256] = "its creation spec could not be read";
    rt_status st = class_name ? rt_actor_create(dir->actors, &s, &info, &created, err, sizeof(err))
                              : RT_EINVAL;
    if (st == RT_OK)
        rt_actor_info_release(&info);
    if (st == RT_OK && created) {
        hold(dir, id, inc, class_name, s.max_restarts, spec_text);
        rt_event_emit("warn", "actor restarted",
                      json_pack("{s:s,s:s,s:I,s:i,s:s,s:s,s:b}", "actor_id", id, "class",
                                class_name, "restarts", (json_int_t)restarts, "max_restarts",
                                s.max_restarts, "reason", "node_died", "node", dead_tag,
                                "state_resumed", s.resume_state != NULL));
    } else {
        /* Could not be made here: it is dead (its record goes; its name is found stale). */
        hold(dir, id, inc, class_name ? class_name : "", s.max_restarts, spec_text);
        rt_actor_dir_ended(dir, id);
        rt_event_emit("warn", "actor died",
                      json_pack("{s:s,s:s?,s:s,s:s}", "actor_id", id, "class", class_name,
                                "error_kind", "ActorDied", "detail", err));
    }
    json_decref(spec);
    json_decref(state);
}

/* Claims and restarts the actors of dead node tag that go to this node. */
static int take_over(rt_actor_dir *dir, redisContext *rc, const char *tag, bool fallback,
                     bool *drained, const rt_cluster_node *nodes, size_t nnodes, char *why,
                     size_t n)
{
    char set[SET_SIZE], my_set[SET_SIZE], record[sizeof("node:") + RT_NODE_TAG_SIZE];
    const char *me = rt_cluster_tag(dir->cluster);
    set_key(set, tag);
    set_key(my_set, me);
    snprintf(record, sizeof(record), "node:%s", tag);
    char count[16];
    snprintf(count, sizeof(count), "%d", CLAIMS_PER_TICK);
    const char *pick[] = {"SRANDMEMBER", set, count};
    redisReply *ids = redisCommandArgv(rc, 3, pick, NULL);
    if (reply_check(rc, ids, "SRANDMEMBER", why, n) != 0)
        return -1;
    *drained = ids->type == REDIS_REPLY_ARRAY && ids->elements == 0;
    int failed = 0;
    for (size_t i = 0; ids->type == REDIS_REPLY_ARRAY && i < ids->elements && !failed; i++) {
        const char *id = ids->element[i]->str;
        if (!id || !rt_ref_valid(id) || (!fallback && !preferred(id, nodes, nnodes)))
            continue;
        char key[KEY_SIZE];
        actor_key(key, id);
        const char *get_class[] = {"HGET", key, "class"};
        redisReply *c = redisCommandArgv(rc, 3, get_class, NULL);
        if (reply_check(rc, c, "HGET", why, n) != 0) {
            failed = 1;
            break;
        }
        /* Restarted only where its class is known (registrations are per node). */
        bool known = c->type == REDIS_REPLY_STRING && rt_actors_find_class(dir->actors, c->str);
        bool no_record = c->type == REDIS_REPLY_NIL;
        freeReplyObject(c);
        if (!known && !no_record)
            continue;
        const char *claim[] = {"EVAL", CLAIM, "4", key, set, my_set, record, tag, me};
        redisReply *r = redisCommandArgv(rc, 9, claim, NULL);
        if (reply_check(rc, r, "EVAL (claim an actor)", why, n) != 0) {
            failed = 1;
            break;
        }
        const char *verdict =
            r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0]->str : NULL;
        if (verdict && strcmp(verdict, "claimed") == 0 && r->elements >= 5) {
            restart_here(dir, id, tag, strtoll(r->element[1]->str, NULL, 10),
                         (unsigned)strtoul(r->element[2]->str, NULL, 10),
                         r->element[3]->str ? r->element[3]->str : "",
                         r->element[4]->str ? r->element[4]->str : "");
        } else if (verdict && strcmp(verdict, "dead") == 0) {
            rt_event_emit("warn", "actor died",
                          json_pack("{s:s,s:s,s:s,s:s}", "actor_id", id, "error_kind", "ActorDied",
                                    "node", tag, "detail",
                                    "its node died and it has no restarts left "
                                    "(max_restarts)"));
        } else if (verdict && strcmp(verdict, "alive") == 0) {
            freeReplyObject(r);
            break; /* the node is back: nothing of it to take */
        }
        freeReplyObject(r);
    }
    freeReplyObject(ids);
    return failed ? -1 : 0;
}

int rt_actor_dir_tick(struct redisContext *rc, bool rejoined, void *arg, char *why, size_t n)
{
    rt_actor_dir *dir = arg;
    if (rejoined && check_held(dir, rc, why, n) != 0)
        return -1;
    rt_cluster_node *nodes = NULL;
    size_t nnodes = rt_cluster_nodes(dir->cluster, &nodes);
    double now = rt_clock_monotonic();
    int failed = 0;
    for (size_t i = 0; i < nnodes && !failed; i++) {
        if (nodes[i].self)
            continue;
        if (nodes[i].alive) {
            forget_dead(dir, nodes[i].tag);
            continue;
        }
        dead_node *d = dead_entry(dir, nodes[i].tag, now);
        if (d->drained) /* one SRANDMEMBER per dead node, until its set is empty */
            continue;
        bool fallback = now - d->since >= RT_ACTOR_DIR_FALLBACK;
        failed = take_over(dir, rc, nodes[i].tag, fallback, &d->drained, nodes, nnodes, why, n);
    }
    free(nodes);
    return failed ? -1 : 0;
}

/* ---- life ----------------------------------------------------------------------------- */

rt_actor_dir *rt_actor_dir_new(rt_cluster *cluster, rt_actors *actors, rt_fetch *fetch)
{
    rt_actor_dir *dir = calloc(1, sizeof(*dir));
    if (!dir)
        return NULL;
    dir->cluster = cluster;
    dir->actors = actors;
    dir->fetch = fetch;
    pthread_mutex_init(&dir->lock, NULL);
    return dir;
}

void rt_actor_dir_close(rt_actor_dir *dir)
{
    if (dir)
        __atomic_store_n(&dir->closed, 1, __ATOMIC_RELEASE);
}

void rt_actor_dir_free(rt_actor_dir *dir)
{
    if (!dir)
        return;
    for (size_t b = 0; b < BUCKETS; b++)
        for (held *h = dir->buckets[b], *next; h; h = next) {
            next = h->next;
            held_free(h);
        }
    pthread_mutex_destroy(&dir->lock);
    free(dir);
}
