/* Unit tests for runtime/object_store.c: objects, states, watchers, eviction, pins, TTL,
 * listing, stats, secondary copies, and concurrent use. runtime/object_store.h is the contract. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "runtime/clock.h"
#include "runtime/object_store.h"

/* ---- helpers ---------------------------------------------------------------------- */

static void sleep_seconds(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static rt_store *new_store(size_t limit)
{
    rt_store_config cfg = {.memory_limit = limit};
    rt_store *s = rt_store_new(&cfg);
    assert_non_null(s);
    return s;
}

static rt_buf *make_buf(size_t size, char fill, const char *ct)
{
    rt_buf *b = rt_buf_new(size, ct);
    assert_non_null(b);
    memset(b->data, fill, size);
    return b;
}

/* Puts size bytes of fill and asserts success; returns the (now store-owned) buffer. */
static rt_buf *put_ok(rt_store *s, size_t size, char fill, char ref[RT_REF_SIZE])
{
    rt_buf *b = make_buf(size, fill, "application/octet-stream");
    assert_int_equal(rt_store_put(s, b, 0, ref), RT_OK);
    return b;
}

/* rt_store_get into a zeroed view. */
static rt_status get_view(rt_store *s, const char *ref, rt_object_view *v)
{
    memset(v, 0, sizeof(*v));
    return rt_store_get(s, ref, v);
}

static rt_status peek_view(rt_store *s, const char *ref, rt_object_view *v)
{
    memset(v, 0, sizeof(*v));
    return rt_store_peek(s, ref, v);
}

/* The state of ref by peek (no hit/miss, no LRU mark); -1 when unknown. */
static int peek_state(rt_store *s, const char *ref)
{
    rt_object_view v;
    rt_status st = peek_view(s, ref, &v);
    if (st == RT_ENOTFOUND)
        return -1;
    int state = (int)v.state;
    rt_object_view_release(&v);
    return state;
}

static int peek_lost_reason(rt_store *s, const char *ref)
{
    rt_object_view v;
    rt_status st = peek_view(s, ref, &v);
    if (st != RT_ELOST) {
        if (st == RT_OK)
            rt_object_view_release(&v);
        return -1;
    }
    int reason = (int)v.lost_reason;
    rt_object_view_release(&v);
    return reason;
}

static rt_store_stats stats_of(rt_store *s)
{
    rt_store_stats st;
    memset(&st, 0xab, sizeof(st));
    rt_store_get_stats(s, &st);
    return st;
}

static void unknown_ref(char ref[RT_REF_SIZE])
{
    rt_ref_generate(ref, 'o');
}

/* ---- names ------------------------------------------------------------------------ */

static void test_state_names(void **state)
{
    (void)state;
    assert_string_equal(rt_object_state_name(RT_OBJ_PENDING), "pending");
    assert_string_equal(rt_object_state_name(RT_OBJ_READY), "ready");
    assert_string_equal(rt_object_state_name(RT_OBJ_ERROR), "error");
    assert_string_equal(rt_object_state_name(RT_OBJ_LOST), "lost");
    for (int st = RT_OBJ_PENDING; st <= RT_OBJ_LOST; st++)
        assert_int_equal(rt_object_state_parse(rt_object_state_name((rt_object_state)st)), st);
    assert_int_equal(rt_object_state_parse("bogus"), -1);
    assert_int_equal(rt_object_state_parse(""), -1);
    assert_int_equal(rt_object_state_parse("readyx"), -1);
    rt_store_free(NULL);
}

/* ---- put / get / delete ----------------------------------------------------------- */

static void test_put_get_round_trip(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    const char bytes[] = "hello\0world\xff";
    rt_buf *b = rt_buf_from(bytes, sizeof(bytes), "text/plain; charset=utf-8");
    assert_non_null(b);
    char ref[RT_REF_SIZE];
    memset(ref, 0, sizeof(ref));
    double before = rt_clock_wall();
    assert_int_equal(rt_store_put(s, b, 0, ref), RT_OK);
    double after = rt_clock_wall();
    assert_true(rt_ref_valid(ref));
    assert_int_equal(strlen(ref), RT_REF_LEN);

    rt_object_view v;
    assert_int_equal(get_view(s, ref, &v), RT_OK);
    assert_string_equal(v.ref, ref);
    assert_int_equal(v.state, RT_OBJ_READY);
    assert_int_equal(v.lost_reason, RT_LOST_NONE);
    assert_non_null(v.buf); /* a copy: 13 bytes are kept inline (test_small_values_inline) */
    assert_null(v.error);
    assert_int_equal(v.size, sizeof(bytes));
    assert_int_equal(v.buf->size, sizeof(bytes));
    assert_memory_equal(v.buf->data, bytes, sizeof(bytes));
    assert_non_null(v.content_type);
    assert_string_equal(v.content_type, "text/plain; charset=utf-8");
    assert_ptr_equal(v.content_type, rt_content_type_intern("text/plain; charset=utf-8"));
    assert_true(v.created_at >= before - 0.001 && v.created_at <= after + 0.001);
    assert_true(v.expires_at == 0);
    assert_int_equal(v.pins, 0);
    assert_true(v.seq > 0);
    rt_object_view_release(&v);

    /* a second put gets a different ref and a later seq */
    char ref2[RT_REF_SIZE];
    put_ok(s, 3, 'z', ref2);
    assert_string_not_equal(ref, ref2);
    rt_object_view v2;
    assert_int_equal(get_view(s, ref2, &v2), RT_OK);
    assert_memory_equal(v2.buf->data, "zzz", 3);
    assert_string_equal(v2.content_type, "application/octet-stream");
    assert_int_equal(get_view(s, ref, &v), RT_OK);
    assert_true(v2.seq > v.seq);
    rt_object_view_release(&v);
    rt_object_view_release(&v2);
    rt_store_free(s);
}

/* Values of up to 32 bytes live in the object's record (memory per object, benchmark d);
 * readers get copies that outlive the object; larger values keep the caller's buffer. */
static void test_small_values_inline(void **state)
{
    (void)state;
    rt_store *s = new_store(100);
    char small[RT_REF_SIZE], big[RT_REF_SIZE], batch[2][RT_REF_SIZE];
    rt_buf *sb = make_buf(32, 's', "application/json");
    rt_buf_incref(sb); /* ours, to see that the store let its own go */
    assert_int_equal(rt_store_put(s, sb, 0, small), RT_OK);
    assert_int_equal(__atomic_load_n(&sb->refs, __ATOMIC_SEQ_CST), 1);
    rt_buf_decref(sb);
    rt_buf *bb = put_ok(s, 33, 'b', big);

    rt_object_view v1, v2, vb;
    assert_int_equal(get_view(s, small, &v1), RT_OK);
    assert_int_equal(get_view(s, small, &v2), RT_OK);
    assert_int_equal(get_view(s, big, &vb), RT_OK);
    assert_ptr_equal(vb.buf, bb); /* not copied */
    assert_ptr_not_equal(v1.buf, v2.buf); /* a copy each */
    assert_int_equal(v1.size, 32);
    assert_int_equal(v1.buf->size, 32);
    assert_int_equal(v1.buf->data[32], '\0');
    for (size_t i = 0; i < 32; i++)
        assert_int_equal(v1.buf->data[i], 's');
    assert_memory_equal(v1.buf->data, v2.buf->data, 32);
    assert_ptr_equal(v1.content_type, rt_content_type_intern("application/json"));
    assert_ptr_equal(v1.buf->content_type, v1.content_type);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.bytes, 65);

    /* A batch inlines too; deleting gives the bytes back; a view outlives the object. */
    rt_buf *bufs[2] = {make_buf(1, 'x', NULL), make_buf(20, 'y', "text/plain")};
    assert_int_equal(rt_store_put_many(s, bufs, 2, batch), RT_OK);
    assert_int_equal(stats_of(s).bytes, 86);
    assert_int_equal(rt_store_delete(s, small), RT_OK);
    assert_int_equal(stats_of(s).bytes, 54);
    assert_int_equal(v1.buf->data[31], 's'); /* ASan: the copy is the reader's */
    rt_object_view_release(&v1);
    rt_object_view_release(&v2);
    rt_object_view_release(&vb);
    assert_int_equal(get_view(s, batch[1], &v1), RT_OK);
    assert_int_equal(v1.size, 20);
    assert_string_equal(v1.content_type, "text/plain");
    assert_int_equal(v1.buf->data[19], 'y');
    rt_object_view_release(&v1);

    /* Eviction takes inline objects like any other (54 + 32 + 32 > 100): the unread one
     * of the batch goes first, and its bytes are given back. */
    char more[2][RT_REF_SIZE];
    put_ok(s, 32, 'm', more[0]);
    put_ok(s, 32, 'n', more[1]);
    assert_int_equal(peek_state(s, batch[0]), RT_OBJ_LOST);
    assert_int_equal(peek_state(s, more[1]), RT_OBJ_READY);
    st = stats_of(s);
    assert_true(st.evictions >= 1);
    assert_true(st.bytes <= 100);
    rt_store_free(s);
}

/* Cluster ids are longer (up to RT_REF_MADE_MAX characters) and a record is as long as
 * its ref: the longest ones round-trip, inline or not, pending or not, and expire. */
static void test_longest_refs(void **state)
{
    (void)state;
    assert_int_equal(rt_ref_set_node_tag("ABCDEFGHIJK"), 0);
    rt_store *s = new_store(0);
    char small[RT_REF_SIZE], big[RT_REF_SIZE], ttl[RT_REF_SIZE], pending[RT_REF_SIZE];
    put_ok(s, 16, 'a', small);
    put_ok(s, 100, 'b', big);
    assert_int_equal(rt_store_put(s, make_buf(8, 't', NULL), 0.01, ttl), RT_OK);
    assert_int_equal(rt_store_create_pending(s, pending), RT_OK);
    assert_int_equal(strlen(small), RT_REF_MADE_MAX);
    assert_int_equal(strlen(pending), RT_REF_MADE_MAX);
    assert_int_equal(rt_store_resolve(s, pending, make_buf(4, 'p', NULL)), RT_OK);
    const struct {
        const char *ref;
        size_t size;
        char fill;
    } want[] = {{small, 16, 'a'}, {big, 100, 'b'}, {pending, 4, 'p'}};
    for (size_t i = 0; i < 3; i++) {
        rt_object_view v;
        assert_int_equal(get_view(s, want[i].ref, &v), RT_OK);
        assert_string_equal(v.ref, want[i].ref);
        assert_int_equal(v.buf->size, want[i].size);
        for (size_t k = 0; k < want[i].size; k++)
            assert_int_equal(v.buf->data[k], want[i].fill);
        rt_object_view_release(&v);
    }
    sleep_seconds(0.05);
    assert_int_equal(rt_store_expire(s), 1);
    assert_int_equal(peek_state(s, ttl), RT_OBJ_LOST);
    assert_int_equal(peek_lost_reason(s, ttl), RT_LOST_EXPIRED);
    rt_store_free(s);
    assert_int_equal(rt_ref_set_node_tag(NULL), 0);
}

static void test_put_zero_bytes(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    rt_buf *b = rt_buf_new(0, "application/json");
    assert_non_null(b);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_put(s, b, 0, ref), RT_OK);
    rt_object_view v;
    assert_int_equal(get_view(s, ref, &v), RT_OK);
    assert_int_equal(v.state, RT_OBJ_READY);
    assert_non_null(v.buf);
    assert_int_equal(v.size, 0);
    assert_int_equal(v.buf->size, 0);
    assert_int_equal(v.buf->data[0], '\0');
    assert_string_equal(v.content_type, "application/json");
    rt_object_view_release(&v);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.bytes, 0);
    rt_store_free(s);
}

static void test_view_outlives_delete_and_store(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    put_ok(s, 64, 'q', ref);
    rt_object_view v, v2;
    assert_int_equal(get_view(s, ref, &v), RT_OK);
    assert_int_equal(get_view(s, ref, &v2), RT_OK);
    assert_int_equal(rt_store_delete(s, ref), RT_OK);
    /* the readers' references keep the bytes alive (ASan checks) */
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(v.buf->data[i], 'q');
    rt_object_view_release(&v);
    rt_store_free(s);
    assert_int_equal(v2.buf->size, 64);
    assert_int_equal(v2.buf->data[63], 'q');
    rt_object_view_release(&v2);
}

static void test_delete(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    put_ok(s, 10, 'd', ref);
    assert_int_equal(rt_store_delete(s, ref), RT_OK);
    rt_object_view v;
    assert_int_equal(get_view(s, ref, &v), RT_ELOST);
    assert_int_equal(v.state, RT_OBJ_LOST);
    assert_int_equal(v.lost_reason, RT_LOST_FREED);
    assert_string_equal(v.ref, ref);
    assert_null(v.buf);
    assert_null(v.error);
    assert_int_equal(v.size, 0);
    assert_null(v.content_type);
    rt_object_view_release(&v);
    assert_int_equal(rt_store_delete(s, ref), RT_ELOST);

    char unk[RT_REF_SIZE];
    unknown_ref(unk);
    assert_int_equal(rt_store_delete(s, unk), RT_ENOTFOUND);
    assert_int_equal(get_view(s, unk, &v), RT_ENOTFOUND);
    assert_int_equal(rt_store_peek(s, unk, &v), RT_ENOTFOUND);

    rt_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.tombstones, 1);
    rt_store_free(s);
}

/* Tombstones are bounded: beyond max_tombstones the oldest are forgotten (unknown refs),
 * counted in tombstones_forgotten, and the newest still answer RT_ELOST, after every
 * delete. 300 deletes make it near certain that some ref shares its shard with an older
 * tombstone (64 shards), which once sent that older one to the back of the line. */
static void test_tombstones_bounded(void **state)
{
    (void)state;
    enum { N = 300, KEEP = 3 };
    rt_store_config cfg = {.max_tombstones = KEEP};
    rt_store *s = rt_store_new(&cfg);
    assert_non_null(s);
    static char refs[N][RT_REF_SIZE];
    rt_object_view v;
    for (int i = 0; i < N; i++) {
        put_ok(s, 8, 'a', refs[i]);
        assert_int_equal(rt_store_delete(s, refs[i]), RT_OK);
        for (int k = i - KEEP; k >= 0 && k >= i - KEEP - 1; k--) {
            if (peek_view(s, refs[k], &v) != RT_ENOTFOUND)
                fail_msg("after %d deletes, tombstone %d of the oldest is still kept", i + 1, k);
            rt_object_view_release(&v);
        }
        for (int k = i; k >= 0 && k > i - KEEP; k--) {
            if (peek_view(s, refs[k], &v) != RT_ELOST)
                fail_msg("after %d deletes, tombstone %d of the newest %d is gone", i + 1, k, KEEP);
            rt_object_view_release(&v);
        }
    }
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.tombstones, KEEP);
    assert_int_equal(st.max_tombstones, KEEP);
    assert_int_equal(st.tombstones_forgotten, N - KEEP);
    rt_store_free(s);
    /* the default */
    s = new_store(0);
    assert_int_equal(stats_of(s).max_tombstones, 100000);
    rt_store_free(s);
}

static void test_delete_releases_room(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    char a[RT_REF_SIZE], b[RT_REF_SIZE];
    put_ok(s, 900, 'a', a);
    assert_int_equal(stats_of(s).bytes, 900);
    assert_int_equal(rt_store_delete(s, a), RT_OK);
    assert_int_equal(stats_of(s).bytes, 0);
    put_ok(s, 900, 'b', b);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.bytes, 900);
    rt_store_free(s);
}

/* ---- pending / resolve / fail ----------------------------------------------------- */

static void test_pending_resolve(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(s, ref), RT_OK);
    assert_true(rt_ref_valid(ref));
    rt_object_view v;
    assert_int_equal(get_view(s, ref, &v), RT_OK);
    assert_int_equal(v.state, RT_OBJ_PENDING);
    assert_null(v.buf);
    assert_null(v.error);
    assert_int_equal(v.size, 0);
    assert_null(v.content_type);
    uint64_t seq = v.seq;
    rt_object_view_release(&v);
    assert_int_equal(stats_of(s).pending, 1);

    rt_buf *b = rt_buf_from("{\"x\":1}", 7, "application/json");
    assert_non_null(b);
    assert_int_equal(rt_store_resolve(s, ref, b), RT_OK);
    assert_int_equal(get_view(s, ref, &v), RT_OK);
    assert_int_equal(v.state, RT_OBJ_READY);
    assert_ptr_equal(v.buf, b);
    assert_int_equal(v.size, 7);
    assert_memory_equal(v.buf->data, "{\"x\":1}", 7);
    assert_string_equal(v.content_type, "application/json");
    assert_true(v.seq == seq); /* creation order, not resolution order */
    rt_object_view_release(&v);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.bytes, 7);

    /* resolving twice: RT_ESTATE, and the caller keeps its buffer */
    rt_buf *b2 = rt_buf_from("again", 5, NULL);
    assert_non_null(b2);
    rt_buf_incref(b2);
    assert_int_equal(rt_store_resolve(s, ref, b2), RT_ESTATE);
    assert_int_equal(b2->refs, 2);
    rt_buf_decref(b2);
    rt_error *e = rt_error_new(RT_ERR_TASK_ERROR, "late", NULL, NULL);
    assert_int_equal(rt_store_fail(s, ref, e), RT_ESTATE);

    /* the value did not change */
    assert_int_equal(peek_view(s, ref, &v), RT_OK);
    assert_ptr_equal(v.buf, b);
    rt_object_view_release(&v);

    /* unknown refs */
    char unk[RT_REF_SIZE];
    unknown_ref(unk);
    rt_buf_incref(b2);
    assert_int_equal(rt_store_resolve(s, unk, b2), RT_ENOTFOUND);
    assert_int_equal(b2->refs, 2);
    rt_buf_decref(b2);
    assert_int_equal(rt_store_fail(s, unk, e), RT_ENOTFOUND);
    rt_buf_decref(b2);
    rt_error_decref(e);
    rt_store_free(s);
}

static void test_pending_fail(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(s, ref), RT_OK);
    rt_error *e = rt_error_new(RT_ERR_TASK_ERROR, "boom", NULL, NULL);
    assert_non_null(e);
    assert_int_equal(rt_store_fail(s, ref, e), RT_OK);
    rt_error_decref(e); /* borrowed: the store holds its own reference */

    rt_object_view v;
    assert_int_equal(get_view(s, ref, &v), RT_OK);
    assert_int_equal(v.state, RT_OBJ_ERROR);
    assert_non_null(v.error);
    assert_ptr_equal(v.error, e);
    assert_string_equal(rt_error_message(v.error), "boom");
    assert_int_equal(rt_error_kind_of(v.error), RT_ERR_TASK_ERROR);
    assert_null(v.buf);
    assert_int_equal(v.size, 0);
    assert_null(v.content_type);
    rt_object_view_release(&v);

    rt_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.bytes, rt_error_size(e)); /* errors count too */
    assert_int_equal(st.error_bytes, rt_error_size(e));

    /* resolve / fail after fail */
    rt_buf *b = rt_buf_from("x", 1, NULL);
    rt_buf_incref(b);
    assert_int_equal(rt_store_resolve(s, ref, b), RT_ESTATE);
    assert_int_equal(b->refs, 2);
    rt_buf_decref(b);
    rt_buf_decref(b);

    /* fail on a READY object */
    char r2[RT_REF_SIZE];
    put_ok(s, 1, 'r', r2);
    rt_error *e2 = rt_error_new(RT_ERR_TASK_ERROR, "x", NULL, NULL);
    assert_int_equal(rt_store_fail(s, r2, e2), RT_ESTATE);
    rt_error_decref(e2);
    assert_int_equal(peek_state(s, r2), RT_OBJ_READY);
    rt_store_free(s);
}

static void test_resolve_after_delete(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(s, ref), RT_OK);
    assert_int_equal(rt_store_delete(s, ref), RT_OK);
    assert_int_equal(peek_state(s, ref), RT_OBJ_LOST);
    assert_int_equal(peek_lost_reason(s, ref), RT_LOST_FREED);
    assert_int_equal(stats_of(s).pending, 0);

    /* "buf stolen on RT_OK; kept by the caller otherwise": after RT_ELOST the caller
     * still holds its reference. */
    rt_buf *b = rt_buf_from("late", 4, NULL);
    assert_non_null(b);
    rt_buf_incref(b);
    assert_int_equal(rt_store_resolve(s, ref, b), RT_ELOST);
    assert_int_equal(b->refs, 2);
    rt_buf_decref(b);
    rt_buf_decref(b);

    rt_error *e = rt_error_new(RT_ERR_TASK_ERROR, "late", NULL, NULL);
    assert_int_equal(rt_store_fail(s, ref, e), RT_ELOST);
    rt_error_decref(e);
    assert_int_equal(peek_state(s, ref), RT_OBJ_LOST);
    assert_int_equal(stats_of(s).bytes, 0);
    rt_store_free(s);
}

static void test_resolve_when_full(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    char a[RT_REF_SIZE], p[RT_REF_SIZE];
    put_ok(s, 800, 'a', a);
    assert_int_equal(rt_store_pin(s, a), RT_OK);
    assert_int_equal(rt_store_create_pending(s, p), RT_OK);

    rt_buf *big = make_buf(300, 'b', NULL);
    rt_buf_incref(big);
    assert_int_equal(rt_store_resolve(s, p, big), RT_EFULL);
    assert_int_equal(big->refs, 2);
    rt_buf_decref(big);
    rt_buf_decref(big);
    assert_int_equal(peek_state(s, p), RT_OBJ_PENDING); /* still waiting for a value */

    rt_buf *huge = make_buf(1001, 'h', NULL);
    assert_int_equal(rt_store_resolve(s, p, huge), RT_EFULL);
    rt_buf_decref(huge);

    rt_buf *small = make_buf(200, 's', NULL);
    assert_int_equal(rt_store_resolve(s, p, small), RT_OK);
    assert_int_equal(peek_state(s, p), RT_OBJ_READY);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.bytes, 1000);
    assert_int_equal(st.evictions, 0);
    rt_store_free(s);
}

static void test_failed_resolve_changes_nothing(void **state)
{
    (void)state;
    /* "A failed call leaves its inputs and state as they were" (docs/architecture.md): resolving a
     * ref that is unknown, already resolved or freed must not evict anything first. */
    rt_store *s = new_store(1000);
    char a[RT_REF_SIZE], done[RT_REF_SIZE], gone[RT_REF_SIZE], unk[RT_REF_SIZE];
    put_ok(s, 100, 'd', done);
    assert_int_equal(rt_store_create_pending(s, gone), RT_OK);
    assert_int_equal(rt_store_delete(s, gone), RT_OK);
    put_ok(s, 600, 'A', a);
    unknown_ref(unk);

    const char *targets[] = {unk, done, gone};
    const rt_status expect[] = {RT_ENOTFOUND, RT_ESTATE, RT_ELOST};
    for (int i = 0; i < 3; i++) {
        rt_buf *b = make_buf(600, 'x', NULL);
        assert_int_equal(rt_store_resolve(s, targets[i], b), expect[i]);
        rt_buf_decref(b);
        rt_store_stats st = stats_of(s);
        assert_int_equal(st.evictions, 0);
        assert_int_equal(st.bytes, 700);
        assert_int_equal(peek_state(s, a), RT_OBJ_READY);
        assert_int_equal(peek_state(s, done), RT_OBJ_READY);
    }
    rt_store_free(s);
}

/* ---- watchers --------------------------------------------------------------------- */

typedef struct probe {
    rt_watcher w;
    rt_store *store;
    char ref[RT_REF_SIZE];
    int fired;
    int seen_state;
    int seen_reason;
    pthread_t thread;
} probe;

static void probe_fn(rt_watcher *w, void *arg)
{
    probe *p = arg;
    assert_ptr_equal(w, &p->w);
    p->fired++;
    p->thread = pthread_self();
    /* the callback runs outside store locks: it may read the store */
    rt_object_view v;
    memset(&v, 0, sizeof(v));
    rt_status st = rt_store_peek(p->store, p->ref, &v);
    p->seen_state = st == RT_ENOTFOUND ? -1 : (int)v.state;
    p->seen_reason = (int)v.lost_reason;
    if (st == RT_OK || st == RT_ELOST)
        rt_object_view_release(&v);
}

static void probe_init(probe *p, rt_store *s, const char *ref)
{
    memset(p, 0, sizeof(*p));
    p->store = s;
    snprintf(p->ref, sizeof(p->ref), "%s", ref);
    p->seen_state = -2;
    p->w.fn = probe_fn;
    p->w.arg = p;
}

static void test_watch_fires_on_resolve(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(s, ref), RT_OK);
    probe p[3];
    for (int i = 0; i < 3; i++) {
        probe_init(&p[i], s, ref);
        assert_int_equal(rt_store_watch(s, ref, &p[i].w), RT_OK);
    }
    assert_int_equal(p[0].fired, 0);
    rt_buf *b = make_buf(5, 'w', NULL);
    assert_int_equal(rt_store_resolve(s, ref, b), RT_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(p[i].fired, 1);
        assert_int_equal(p[i].seen_state, RT_OBJ_READY); /* the value is visible */
        assert_true(pthread_equal(p[i].thread, pthread_self()));
        assert_int_equal(rt_store_unwatch(s, &p[i].w), 0); /* already fired */
    }
    /* once more does nothing */
    rt_buf *b2 = make_buf(1, 'x', NULL);
    assert_int_equal(rt_store_resolve(s, ref, b2), RT_ESTATE);
    rt_buf_decref(b2);
    assert_int_equal(rt_store_delete(s, ref), RT_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(p[i].fired, 1);
    rt_store_free(s);
}

static void test_watch_fires_on_fail(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(s, ref), RT_OK);
    probe p;
    probe_init(&p, s, ref);
    assert_int_equal(rt_store_watch(s, ref, &p.w), RT_OK);
    rt_error *e = rt_error_new(RT_ERR_TASK_CANCELLED, "cancelled", NULL, NULL);
    assert_int_equal(rt_store_fail(s, ref, e), RT_OK);
    rt_error_decref(e);
    assert_int_equal(p.fired, 1);
    assert_int_equal(p.seen_state, RT_OBJ_ERROR);
    assert_int_equal(rt_store_delete(s, ref), RT_OK);
    assert_int_equal(p.fired, 1);
    rt_store_free(s);
}

static void test_watch_fires_on_delete_of_pending(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(s, ref), RT_OK);
    probe p;
    probe_init(&p, s, ref);
    assert_int_equal(rt_store_watch(s, ref, &p.w), RT_OK);
    assert_int_equal(rt_store_delete(s, ref), RT_OK);
    assert_int_equal(p.fired, 1);
    assert_int_equal(p.seen_state, RT_OBJ_LOST);
    assert_int_equal(p.seen_reason, RT_LOST_FREED);
    rt_buf *b = make_buf(1, 'x', NULL);
    rt_buf_incref(b);
    assert_int_equal(rt_store_resolve(s, ref, b), RT_ELOST);
    assert_int_equal(b->refs, 2);
    rt_buf_decref(b);
    rt_buf_decref(b);
    assert_int_equal(p.fired, 1);
    rt_store_free(s);
}

static void test_watch_resolved_and_unknown(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ready[RT_REF_SIZE], err[RT_REF_SIZE], lost[RT_REF_SIZE], unk[RT_REF_SIZE];
    put_ok(s, 4, 'r', ready);
    assert_int_equal(rt_store_create_pending(s, err), RT_OK);
    rt_error *e = rt_error_new(RT_ERR_TASK_ERROR, "e", NULL, NULL);
    assert_int_equal(rt_store_fail(s, err, e), RT_OK);
    rt_error_decref(e);
    put_ok(s, 4, 'l', lost);
    assert_int_equal(rt_store_delete(s, lost), RT_OK);
    unknown_ref(unk);

    probe p[4];
    probe_init(&p[0], s, ready);
    probe_init(&p[1], s, err);
    probe_init(&p[2], s, lost);
    probe_init(&p[3], s, unk);
    assert_int_equal(rt_store_watch(s, ready, &p[0].w), 1);
    assert_int_equal(rt_store_watch(s, err, &p[1].w), 1);
    assert_int_equal(rt_store_watch(s, lost, &p[2].w), 1);
    assert_int_equal(rt_store_watch(s, unk, &p[3].w), RT_ENOTFOUND);
    /* not registered: later transitions never call them */
    assert_int_equal(rt_store_delete(s, ready), RT_OK);
    assert_int_equal(rt_store_delete(s, err), RT_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(p[i].fired, 0);
    rt_store_free(s);
    for (int i = 0; i < 4; i++)
        assert_int_equal(p[i].fired, 0);
}

static void test_unwatch_before_firing(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(s, ref), RT_OK);
    probe gone, stays;
    probe_init(&gone, s, ref);
    probe_init(&stays, s, ref);
    assert_int_equal(rt_store_watch(s, ref, &gone.w), RT_OK);
    assert_int_equal(rt_store_watch(s, ref, &stays.w), RT_OK);
    assert_int_equal(rt_store_unwatch(s, &gone.w), 1);
    memset(&gone, 0x5a, sizeof(gone)); /* the store must not touch it any more */
    rt_buf *b = make_buf(2, 'u', NULL);
    assert_int_equal(rt_store_resolve(s, ref, b), RT_OK);
    assert_int_equal(stays.fired, 1);
    assert_int_equal(gone.fired, 0x5a5a5a5a);
    rt_store_free(s);
}

static void test_watchers_dropped_on_free(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(s, ref), RT_OK);
    probe p;
    probe_init(&p, s, ref);
    assert_int_equal(rt_store_watch(s, ref, &p.w), RT_OK);
    rt_store_free(s);
    assert_int_equal(p.fired, 0);
}

/* ---- eviction --------------------------------------------------------------------- */

static void test_eviction_lru_second_chance(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    char a[RT_REF_SIZE], b[RT_REF_SIZE], c[RT_REF_SIZE], d[RT_REF_SIZE], e[RT_REF_SIZE];
    put_ok(s, 300, 'A', a);
    put_ok(s, 300, 'B', b);
    put_ok(s, 300, 'C', c);
    rt_object_view v;
    assert_int_equal(get_view(s, a, &v), RT_OK); /* marks A used */
    rt_object_view_release(&v);
    put_ok(s, 300, 'D', d);

    rt_store_stats st = stats_of(s);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.bytes, 900);
    assert_int_equal(st.objects, 3);
    assert_int_equal(peek_state(s, a), RT_OBJ_READY);
    assert_int_equal(peek_state(s, c), RT_OBJ_READY);
    assert_int_equal(peek_state(s, d), RT_OBJ_READY);

    uint64_t misses = st.misses;
    assert_int_equal(get_view(s, b, &v), RT_ELOST);
    assert_int_equal(v.state, RT_OBJ_LOST);
    assert_int_equal(v.lost_reason, RT_LOST_EVICTED);
    assert_null(v.buf);
    rt_object_view_release(&v);
    assert_int_equal(stats_of(s).misses, misses + 1);

    /* A's second chance is spent: the next victim is C, then A */
    put_ok(s, 300, 'E', e);
    assert_int_equal(peek_lost_reason(s, c), RT_LOST_EVICTED);
    assert_int_equal(peek_state(s, a), RT_OBJ_READY);
    st = stats_of(s);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.bytes, 900);
    rt_store_free(s);
}

static void test_peek_does_not_mark_used(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    char a[RT_REF_SIZE], b[RT_REF_SIZE], c[RT_REF_SIZE], d[RT_REF_SIZE];
    put_ok(s, 300, 'A', a);
    put_ok(s, 300, 'B', b);
    put_ok(s, 300, 'C', c);
    assert_int_equal(peek_state(s, a), RT_OBJ_READY);
    put_ok(s, 300, 'D', d);
    assert_int_equal(peek_lost_reason(s, a), RT_LOST_EVICTED);
    assert_int_equal(peek_state(s, b), RT_OBJ_READY);
    rt_store_free(s);
}

static void test_eviction_of_several_to_exact_limit(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    char a[RT_REF_SIZE], b[RT_REF_SIZE], c[RT_REF_SIZE], d[RT_REF_SIZE];
    put_ok(s, 300, 'A', a);
    put_ok(s, 300, 'B', b);
    put_ok(s, 300, 'C', c);
    put_ok(s, 700, 'D', d); /* needs 600 bytes: A and B go, 300 + 700 = limit */
    assert_int_equal(peek_lost_reason(s, a), RT_LOST_EVICTED);
    assert_int_equal(peek_lost_reason(s, b), RT_LOST_EVICTED);
    assert_int_equal(peek_state(s, c), RT_OBJ_READY);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.bytes, 1000);
    assert_int_equal(st.objects, 2);
    assert_int_equal(st.tombstones, 2);
    rt_object_view v;
    assert_int_equal(get_view(s, d, &v), RT_OK);
    assert_int_equal(v.size, 700);
    assert_int_equal(v.buf->data[699], 'D');
    rt_object_view_release(&v);
    rt_store_free(s);
}

static void test_pending_not_evicted_errors_are(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    char p[RT_REF_SIZE], e[RT_REF_SIZE], a[RT_REF_SIZE], b[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(s, p), RT_OK);
    assert_int_equal(rt_store_create_pending(s, e), RT_OK);
    rt_error *err = rt_error_new(RT_ERR_TASK_ERROR, "x", NULL, NULL);
    assert_true(rt_error_size(err) < 300);
    assert_int_equal(rt_store_fail(s, e, err), RT_OK);
    rt_error_decref(err);
    put_ok(s, 600, 'a', a);
    put_ok(s, 600, 'b', b); /* the error is older than a: it goes first, then a */
    assert_int_equal(peek_lost_reason(s, e), RT_LOST_EVICTED);
    assert_int_equal(peek_lost_reason(s, a), RT_LOST_EVICTED);
    assert_int_equal(peek_state(s, p), RT_OBJ_PENDING);
    assert_int_equal(peek_state(s, b), RT_OBJ_READY);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.bytes, 600);
    assert_int_equal(st.error_bytes, 0);
    assert_int_equal(st.evictions, 2);
    rt_store_free(s);
}

/* Errors as big as values are counted and evicted like them, oldest first, so that a flood
 * of failures cannot grow memory past the limit; a pinned error stays. */
static void test_errors_counted_and_evicted(void **state)
{
    (void)state;
    enum { N = 200, MESSAGE = 10000, LIMIT = 100000 };
    rt_store *s = new_store(LIMIT);
    char *message = malloc(MESSAGE + 1);
    assert_non_null(message);
    memset(message, 'm', MESSAGE);
    message[MESSAGE] = '\0';
    char refs[N][RT_REF_SIZE];
    for (int i = 0; i < N; i++) {
        assert_int_equal(rt_store_create_pending(s, refs[i]), RT_OK);
        rt_error *err = rt_error_new(RT_ERR_TASK_ERROR, message, NULL, NULL);
        assert_int_equal(rt_store_fail(s, refs[i], err), RT_OK);
        rt_error_decref(err);
        if (i == 0)
            assert_int_equal(rt_store_pin(s, refs[0]), RT_OK);
        rt_store_stats st = stats_of(s);
        assert_true(st.bytes <= LIMIT);
        assert_int_equal(st.bytes, st.error_bytes);
    }
    rt_store_stats st = stats_of(s);
    assert_true(st.bytes > LIMIT - 2 * MESSAGE);
    assert_true(st.evictions >= N - LIMIT / MESSAGE);
    assert_int_equal(peek_state(s, refs[0]), RT_OBJ_ERROR); /* pinned */
    assert_int_equal(peek_lost_reason(s, refs[1]), RT_LOST_EVICTED);
    assert_int_equal(peek_state(s, refs[N - 1]), RT_OBJ_ERROR);
    /* Freed errors give their bytes back; then only the pinned one is left. */
    for (int i = 0; i < N; i++)
        rt_store_delete(s, refs[i]);
    st = stats_of(s);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.error_bytes, 0);
    free(message);
    rt_store_free(s);
}

/* A cause shared by many stored errors counts once, and stays counted while any of them
 * holds it, even after its own object is gone. */
static void test_shared_cause_counted_once(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char root_ref[RT_REF_SIZE], refs[10][RT_REF_SIZE];
    char big[5000];
    memset(big, 'r', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    rt_error *root = rt_error_new(RT_ERR_TASK_ERROR, big, NULL, NULL);
    assert_int_equal(rt_store_create_pending(s, root_ref), RT_OK);
    assert_int_equal(rt_store_fail(s, root_ref, root), RT_OK);
    size_t expect = rt_error_size(root);
    for (int i = 0; i < 10; i++) {
        rt_error *e = rt_error_new(RT_ERR_TASK_ERROR, "did not run", NULL, root);
        assert_int_equal(rt_store_create_pending(s, refs[i]), RT_OK);
        assert_int_equal(rt_store_fail(s, refs[i], e), RT_OK);
        expect += rt_error_size(e);
        rt_error_decref(e);
    }
    assert_int_equal(stats_of(s).error_bytes, expect);
    rt_store_delete(s, root_ref); /* the others still hold it as their cause */
    assert_int_equal(stats_of(s).error_bytes, expect);
    for (int i = 0; i < 10; i++)
        rt_store_delete(s, refs[i]);
    assert_int_equal(stats_of(s).error_bytes, 0);
    assert_int_equal(stats_of(s).bytes, 0);
    rt_error_decref(root);
    rt_store_free(s);
}

/* An error larger than the whole limit is still stored (a failed task must resolve its
 * ref), as its bounded summary, and the full value goes. */
static void test_error_over_limit_stored_as_summary(void **state)
{
    (void)state;
    enum { LIMIT = 20000, MESSAGE = 100000 };
    rt_store *s = new_store(LIMIT);
    char *message = malloc(MESSAGE + 1);
    assert_non_null(message);
    memset(message, 'm', MESSAGE);
    message[MESSAGE] = '\0';
    rt_error *err = rt_error_new(RT_ERR_TASK_ERROR, message, NULL, NULL);
    char a[RT_REF_SIZE], ref[RT_REF_SIZE];
    put_ok(s, 1000, 'a', a);
    assert_int_equal(rt_store_create_pending(s, ref), RT_OK);
    assert_int_equal(rt_store_fail(s, ref, err), RT_OK);
    rt_object_view v;
    assert_int_equal(peek_view(s, ref, &v), RT_OK);
    assert_int_equal(v.state, RT_OBJ_ERROR);
    assert_ptr_not_equal(v.error, err);
    assert_true(rt_error_chain_size(v.error) <= RT_ERROR_SUMMARY_MAX);
    assert_non_null(strstr(rt_error_message(v.error), "bytes omitted"));
    rt_object_view_release(&v);
    rt_store_stats st = stats_of(s);
    assert_true(st.bytes <= LIMIT);
    assert_true(st.error_bytes <= RT_ERROR_SUMMARY_MAX);
    rt_error_decref(err);
    free(message);
    rt_store_free(s);
}

static void test_too_large_is_full_immediately(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    char a[RT_REF_SIZE], r[RT_REF_SIZE];
    put_ok(s, 300, 'A', a);
    assert_true(rt_store_could_fit(s, 0));
    assert_true(rt_store_could_fit(s, 1000));
    assert_false(rt_store_could_fit(s, 1001));
    assert_false(rt_store_could_fit(s, SIZE_MAX));

    rt_buf *big = make_buf(1001, 'X', NULL);
    rt_buf_incref(big);
    assert_int_equal(rt_store_put(s, big, 0, r), RT_EFULL);
    assert_int_equal(big->refs, 2); /* the caller still owns it */
    rt_buf_decref(big);
    rt_buf_decref(big);
    /* nothing was evicted to make room that could never be enough */
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.bytes, 300);
    assert_int_equal(peek_state(s, a), RT_OBJ_READY);
    rt_store_free(s);
}

static void test_unlimited(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    assert_true(rt_store_could_fit(s, (size_t)1 << 40));
    for (int i = 0; i < 8; i++) {
        char r[RT_REF_SIZE];
        put_ok(s, 512 * 1024, (char)i, r);
    }
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.memory_limit, 0);
    assert_int_equal(st.objects, 8);
    assert_int_equal(st.bytes, 8 * 512 * 1024);
    assert_int_equal(st.evictions, 0);
    rt_store_free(s);
}

/* ---- pins ------------------------------------------------------------------------- */

static void test_pins_stop_eviction(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    char a[RT_REF_SIZE], b[RT_REF_SIZE], c[RT_REF_SIZE], d[RT_REF_SIZE], e[RT_REF_SIZE],
        f[RT_REF_SIZE], r[RT_REF_SIZE];
    put_ok(s, 300, 'A', a);
    put_ok(s, 300, 'B', b);
    put_ok(s, 300, 'C', c);
    assert_int_equal(rt_store_pin(s, a), RT_OK);
    assert_int_equal(rt_store_pin(s, b), RT_OK);
    put_ok(s, 300, 'D', d); /* A and B are older but pinned: C goes */
    assert_int_equal(peek_lost_reason(s, c), RT_LOST_EVICTED);
    assert_int_equal(peek_state(s, a), RT_OBJ_READY);
    assert_int_equal(peek_state(s, b), RT_OBJ_READY);
    assert_int_equal(rt_store_pin(s, d), RT_OK);

    /* everything pinned: RT_EFULL and the caller keeps the buffer */
    rt_buf *eb = make_buf(300, 'E', NULL);
    rt_buf_incref(eb);
    assert_int_equal(rt_store_put(s, eb, 0, r), RT_EFULL);
    assert_int_equal(eb->refs, 2);
    rt_buf_decref(eb);
    rt_buf_decref(eb);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.objects, 3);
    assert_int_equal(st.bytes, 900);

    /* unpinning A makes it the only evictable object: the same put now succeeds */
    assert_int_equal(rt_store_unpin(s, a), RT_OK);
    put_ok(s, 300, 'E', e);
    assert_int_equal(peek_lost_reason(s, a), RT_LOST_EVICTED);
    assert_int_equal(peek_state(s, b), RT_OBJ_READY);
    assert_int_equal(peek_state(s, d), RT_OBJ_READY);
    st = stats_of(s);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.bytes, 900);

    put_ok(s, 100, 'F', f); /* fits exactly */
    st = stats_of(s);
    assert_int_equal(st.bytes, 1000);
    assert_int_equal(st.evictions, 2);
    rt_store_free(s);
}

static void test_pins_nest(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char a[RT_REF_SIZE], unk[RT_REF_SIZE], gone[RT_REF_SIZE];
    put_ok(s, 10, 'A', a);
    rt_object_view v;
    assert_int_equal(rt_store_unpin(s, a), RT_ESTATE);
    assert_int_equal(rt_store_pin(s, a), RT_OK);
    assert_int_equal(rt_store_pin(s, a), RT_OK);
    assert_int_equal(peek_view(s, a, &v), RT_OK);
    assert_int_equal(v.pins, 2);
    rt_object_view_release(&v);
    assert_int_equal(rt_store_unpin(s, a), RT_OK);
    assert_int_equal(peek_view(s, a, &v), RT_OK);
    assert_int_equal(v.pins, 1);
    rt_object_view_release(&v);
    assert_int_equal(rt_store_unpin(s, a), RT_OK);
    assert_int_equal(rt_store_unpin(s, a), RT_ESTATE);
    assert_int_equal(peek_view(s, a, &v), RT_OK);
    assert_int_equal(v.pins, 0);
    rt_object_view_release(&v);

    unknown_ref(unk);
    assert_int_equal(rt_store_pin(s, unk), RT_ENOTFOUND);
    assert_int_equal(rt_store_unpin(s, unk), RT_ENOTFOUND);
    put_ok(s, 10, 'g', gone);
    assert_int_equal(rt_store_delete(s, gone), RT_OK);
    assert_int_equal(rt_store_pin(s, gone), RT_ELOST);
    assert_int_equal(rt_store_unpin(s, gone), RT_ELOST);
    rt_store_free(s);
}

/* ---- TTL -------------------------------------------------------------------------- */

static void test_ttl_expires_on_read(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    rt_buf *b = make_buf(50, 't', NULL);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_put(s, b, 0.05, ref), RT_OK);
    rt_object_view v;
    assert_int_equal(get_view(s, ref, &v), RT_OK);
    assert_true(v.expires_at > 0);
    assert_true(v.expires_at - v.created_at > 0.04 && v.expires_at - v.created_at < 0.06);
    rt_object_view_release(&v);

    sleep_seconds(0.1);
    assert_int_equal(get_view(s, ref, &v), RT_ELOST);
    assert_int_equal(v.state, RT_OBJ_LOST);
    assert_int_equal(v.lost_reason, RT_LOST_EXPIRED);
    assert_null(v.buf);
    rt_object_view_release(&v);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.expirations, 1);
    assert_int_equal(rt_store_expire(s), 0); /* already expired by the read */
    rt_store_free(s);
}

static void test_ttl_expire_sweep(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char shortl[3][RT_REF_SIZE], none[RT_REF_SIZE], longl[RT_REF_SIZE], pend[RT_REF_SIZE];
    for (int i = 0; i < 3; i++) {
        rt_buf *b = make_buf(10, 's', NULL);
        assert_int_equal(rt_store_put(s, b, 0.05, shortl[i]), RT_OK);
    }
    put_ok(s, 20, 'n', none);
    rt_buf *lb = make_buf(30, 'l', NULL);
    assert_int_equal(rt_store_put(s, lb, 60, longl), RT_OK);
    assert_int_equal(rt_store_create_pending(s, pend), RT_OK);
    assert_int_equal(rt_store_expire(s), 0); /* nothing is due yet */

    sleep_seconds(0.1);
    assert_int_equal(rt_store_expire(s), 3);
    assert_int_equal(rt_store_expire(s), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(peek_lost_reason(s, shortl[i]), RT_LOST_EXPIRED);
    assert_int_equal(peek_state(s, none), RT_OBJ_READY);
    assert_int_equal(peek_state(s, longl), RT_OBJ_READY);
    assert_int_equal(peek_state(s, pend), RT_OBJ_PENDING);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.expirations, 3);
    assert_int_equal(st.objects, 3);
    assert_int_equal(st.bytes, 50);
    rt_store_free(s);
}

/* Waits (on the clock itself: a TTL is about time) until the wall clock passes t. */
static void wait_wall_past(double t)
{
    while (rt_clock_wall() <= t)
        sleep_seconds(0.005);
}

/* Expiry costs what expires: with 20,000 objects that have a TTL in an hour, a sweep looks
 * at one heap top, not at every shard; when 3 are due it looks at 4. The sweep before this
 * walked every object of every shard each second once one TTL object existed. */
static void test_ttl_expire_cost_is_what_expires(void **state)
{
    (void)state;
    enum { N = 20000 };
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE], due[3][RT_REF_SIZE];
    for (int i = 0; i < N; i++) {
        rt_buf *b = make_buf(8, 'h', NULL);
        assert_int_equal(rt_store_put(s, b, 3600, ref), RT_OK);
    }
    double last_due = 0;
    for (int i = 0; i < 3; i++) {
        rt_buf *b = make_buf(8, 'd', NULL);
        assert_int_equal(rt_store_put(s, b, 0.05 + 0.01 * i, due[i]), RT_OK);
        rt_object_view v;
        assert_int_equal(rt_store_peek(s, due[i], &v), RT_OK);
        last_due = v.expires_at;
        rt_object_view_release(&v);
    }
    uint64_t v0 = rt__store_expire_visits(s);
    assert_int_equal(rt_store_expire(s), 0);
    assert_int_equal(rt__store_expire_visits(s) - v0, 1);

    wait_wall_past(last_due);
    v0 = rt__store_expire_visits(s);
    assert_int_equal(rt_store_expire(s), 3);
    assert_int_equal(rt__store_expire_visits(s) - v0, 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(peek_lost_reason(s, due[i]), RT_LOST_EXPIRED);
    v0 = rt__store_expire_visits(s);
    assert_int_equal(rt_store_expire(s), 0);
    assert_int_equal(rt__store_expire_visits(s) - v0, 1);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.objects, N);
    assert_int_equal(st.expirations, 3);
    rt_store_free(s);
}

/* A pinned object whose TTL runs out stays while pinned (a task still needs it), and
 * expires when its last pin goes; deleting objects with a TTL takes them out of the heap. */
static void test_ttl_pinned_expires_on_unpin(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char pinned[RT_REF_SIZE], freed[RT_REF_SIZE], later[RT_REF_SIZE];
    assert_int_equal(rt_store_put(s, make_buf(10, 'p', NULL), 0.05, pinned), RT_OK);
    assert_int_equal(rt_store_put(s, make_buf(10, 'f', NULL), 0.05, freed), RT_OK);
    assert_int_equal(rt_store_put(s, make_buf(10, 'l', NULL), 3600, later), RT_OK);
    assert_int_equal(rt_store_pin(s, pinned), RT_OK);
    assert_int_equal(rt_store_pin(s, pinned), RT_OK);
    assert_int_equal(rt_store_delete(s, freed), RT_OK);
    rt_object_view v;
    assert_int_equal(rt_store_peek(s, pinned, &v), RT_OK);
    double when = v.expires_at;
    rt_object_view_release(&v);

    wait_wall_past(when);
    assert_int_equal(rt_store_expire(s), 0);
    assert_int_equal(peek_state(s, pinned), RT_OBJ_READY);
    assert_int_equal(peek_lost_reason(s, freed), RT_LOST_FREED);
    assert_int_equal(rt_store_unpin(s, pinned), RT_OK);
    assert_int_equal(peek_state(s, pinned), RT_OBJ_READY); /* one pin left */
    assert_int_equal(rt_store_unpin(s, pinned), RT_OK);
    rt_store_stats st = stats_of(s); /* before any read, which would expire it too */
    assert_int_equal(st.expirations, 1);
    assert_int_equal(peek_lost_reason(s, pinned), RT_LOST_EXPIRED);
    assert_int_equal(rt_store_expire(s), 0);
    assert_int_equal(peek_state(s, later), RT_OBJ_READY);
    st = stats_of(s);
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.bytes, 10);
    rt_store_free(s);
}

/* ---- stats ------------------------------------------------------------------------ */

static void test_stats(void **state)
{
    (void)state;
    rt_store *s = new_store(5000);
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.tombstones, 0);
    assert_int_equal(st.memory_limit, 5000);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.misses, 0);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.expirations, 0);

    char a[RT_REF_SIZE], b[RT_REF_SIZE], p[RT_REF_SIZE], unk[RT_REF_SIZE];
    put_ok(s, 100, 'a', a);
    put_ok(s, 50, 'b', b);
    assert_int_equal(rt_store_create_pending(s, p), RT_OK);
    st = stats_of(s);
    assert_int_equal(st.objects, 3);
    assert_int_equal(st.bytes, 150);
    assert_int_equal(st.pending, 1);

    rt_object_view v;
    assert_int_equal(get_view(s, a, &v), RT_OK);
    rt_object_view_release(&v);
    assert_int_equal(get_view(s, a, &v), RT_OK);
    rt_object_view_release(&v);
    assert_int_equal(get_view(s, p, &v), RT_OK); /* pending is found: a hit */
    assert_int_equal(v.state, RT_OBJ_PENDING);
    rt_object_view_release(&v);
    unknown_ref(unk);
    assert_int_equal(get_view(s, unk, &v), RT_ENOTFOUND);
    st = stats_of(s);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 1);

    assert_int_equal(rt_store_delete(s, b), RT_OK);
    assert_int_equal(get_view(s, b, &v), RT_ELOST);
    rt_object_view_release(&v);
    /* peeks count nothing */
    assert_int_equal(peek_view(s, a, &v), RT_OK);
    rt_object_view_release(&v);
    assert_int_equal(peek_view(s, b, &v), RT_ELOST);
    rt_object_view_release(&v);
    assert_int_equal(rt_store_peek(s, unk, &v), RT_ENOTFOUND);
    st = stats_of(s);
    assert_int_equal(st.objects, 2);
    assert_int_equal(st.bytes, 100);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.tombstones, 1);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 2);

    rt_buf *pb = make_buf(25, 'p', NULL);
    assert_int_equal(rt_store_resolve(s, p, pb), RT_OK);
    st = stats_of(s);
    assert_int_equal(st.objects, 2);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.bytes, 125);
    rt_store_free(s);
}

/* ---- list ------------------------------------------------------------------------- */

static void release_views(rt_object_view *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rt_object_view_release(&v[i]);
}

static void test_list_paging(void **state)
{
    (void)state;
    enum { N = 250, PAGE = 100 };
    rt_store *s = new_store(0);
    static char refs[N][RT_REF_SIZE];
    for (int i = 0; i < N; i++)
        put_ok(s, 1, (char)i, refs[i]);

    static rt_object_view views[PAGE];
    const size_t expect[] = {100, 100, 50};
    uint64_t cursor = 0, last_seq = 0;
    int seen = 0;
    for (int page = 0; page < 3; page++) {
        uint64_t next = 12345;
        size_t n = rt_store_list(s, cursor, -1, PAGE, views, &next);
        assert_int_equal(n, expect[page]);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(views[i].ref, refs[seen]);
            assert_int_equal(views[i].state, RT_OBJ_READY);
            assert_int_equal(views[i].size, 1);
            assert_non_null(views[i].buf);
            assert_int_equal((unsigned char)views[i].buf->data[0], (unsigned char)seen);
            assert_true(views[i].seq > last_seq);
            last_seq = views[i].seq;
            seen++;
        }
        release_views(views, n);
        if (page < 2)
            assert_true(next != 0);
        else
            assert_true(next == 0);
        cursor = next;
    }
    assert_int_equal(seen, N);

    /* a cursor from the middle */
    uint64_t next = 1;
    size_t n = rt_store_list(s, 0, -1, 10, views, &next);
    assert_int_equal(n, 10);
    uint64_t mid = views[9].seq;
    release_views(views, n);
    n = rt_store_list(s, mid, -1, 5, views, &next);
    assert_int_equal(n, 5);
    assert_string_equal(views[0].ref, refs[10]);
    assert_string_equal(views[4].ref, refs[14]);
    release_views(views, n);
    assert_true(next != 0);

    /* listing does not count reads */
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.misses, 0);
    rt_store_free(s);
}

static void test_list_exact_page_ends(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    rt_object_view views[10];
    uint64_t next = 99;
    assert_int_equal(rt_store_list(s, 0, -1, 10, views, &next), 0); /* empty store */
    assert_true(next == 0);

    char r[RT_REF_SIZE];
    for (int i = 0; i < 10; i++)
        put_ok(s, 1, 'x', r);
    next = 99;
    size_t n = rt_store_list(s, 0, -1, 10, views, &next);
    assert_int_equal(n, 10);
    uint64_t last = views[9].seq;
    release_views(views, n);
    assert_true(next == 0); /* exactly one full page and nothing more */

    next = 99;
    assert_int_equal(rt_store_list(s, last, -1, 10, views, &next), 0);
    assert_true(next == 0);
    rt_store_free(s);
}

static void test_list_state_filter(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char r1[RT_REF_SIZE], p1[RT_REF_SIZE], e1[RT_REF_SIZE], r2[RT_REF_SIZE],
        p2[RT_REF_SIZE], l1[RT_REF_SIZE];
    put_ok(s, 1, '1', r1);
    assert_int_equal(rt_store_create_pending(s, p1), RT_OK);
    assert_int_equal(rt_store_create_pending(s, e1), RT_OK);
    put_ok(s, 2, '2', r2);
    assert_int_equal(rt_store_create_pending(s, p2), RT_OK);
    put_ok(s, 3, '3', l1);
    rt_error *err = rt_error_new(RT_ERR_TASK_ERROR, "f", NULL, NULL);
    assert_int_equal(rt_store_fail(s, e1, err), RT_OK);
    rt_error_decref(err);
    assert_int_equal(rt_store_delete(s, l1), RT_OK);

    rt_object_view views[8];
    uint64_t next = 7;
    size_t n = rt_store_list(s, 0, RT_OBJ_PENDING, 8, views, &next);
    assert_int_equal(n, 2);
    assert_string_equal(views[0].ref, p1);
    assert_string_equal(views[1].ref, p2);
    assert_int_equal(views[0].state, RT_OBJ_PENDING);
    release_views(views, n);
    assert_true(next == 0);

    n = rt_store_list(s, 0, RT_OBJ_READY, 8, views, &next);
    assert_int_equal(n, 2);
    assert_string_equal(views[0].ref, r1);
    assert_string_equal(views[1].ref, r2);
    assert_int_equal(views[1].size, 2);
    assert_non_null(views[1].buf);
    release_views(views, n);

    n = rt_store_list(s, 0, RT_OBJ_ERROR, 8, views, &next);
    assert_int_equal(n, 1);
    assert_string_equal(views[0].ref, e1);
    assert_non_null(views[0].error);
    release_views(views, n);

    n = rt_store_list(s, 0, RT_OBJ_LOST, 8, views, &next);
    assert_int_equal(n, 1);
    assert_string_equal(views[0].ref, l1);
    assert_int_equal(views[0].lost_reason, RT_LOST_FREED);
    release_views(views, n);

    /* filtered paging, one at a time */
    next = 0;
    n = rt_store_list(s, 0, RT_OBJ_PENDING, 1, views, &next);
    assert_int_equal(n, 1);
    assert_string_equal(views[0].ref, p1);
    release_views(views, n);
    assert_true(next != 0);
    n = rt_store_list(s, next, RT_OBJ_PENDING, 1, views, &next);
    assert_int_equal(n, 1);
    assert_string_equal(views[0].ref, p2);
    release_views(views, n);
    assert_true(next == 0);
    rt_store_free(s);
}

/* ---- put_many --------------------------------------------------------------------- */

static void test_put_many_ok(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    char a[RT_REF_SIZE];
    put_ok(s, 300, 'a', a);
    rt_buf *bufs[3] = {make_buf(200, 'x', "text/x"), make_buf(250, 'y', NULL),
                       make_buf(0, 'z', NULL)};
    char refs[3][RT_REF_SIZE];
    /* 300 + 450 fits: nothing evicted */
    assert_int_equal(rt_store_put_many(s, bufs, 3, refs), RT_OK);
    assert_string_not_equal(refs[0], refs[1]);
    assert_string_not_equal(refs[1], refs[2]);
    assert_string_not_equal(refs[0], refs[2]);
    for (int i = 0; i < 3; i++) {
        rt_object_view v;
        assert_int_equal(get_view(s, refs[i], &v), RT_OK);
        assert_ptr_equal(v.buf, bufs[i]);
        assert_int_equal(v.size, bufs[i]->size);
        rt_object_view_release(&v);
    }
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 4);
    assert_int_equal(st.bytes, 750);
    assert_int_equal(st.evictions, 0);

    /* 400 + 400 more needs eviction; a is the oldest and was never read */
    rt_buf *more[2] = {make_buf(400, 'm', NULL), make_buf(400, 'n', NULL)};
    char mrefs[2][RT_REF_SIZE];
    assert_int_equal(rt_store_put_many(s, more, 2, mrefs), RT_OK);
    st = stats_of(s);
    assert_true(st.bytes <= 1000);
    assert_true(st.evictions >= 1);
    assert_int_equal(peek_state(s, mrefs[0]), RT_OBJ_READY);
    assert_int_equal(peek_state(s, mrefs[1]), RT_OBJ_READY);
    assert_int_equal(peek_lost_reason(s, a), RT_LOST_EVICTED);
    rt_store_free(s);
}

/* ---- secondary copies (cluster mode) ------------------------------------------------ */

#define FOREIGN_REF "o7-0123456789abcdefghijkl"

/* A copy reads like any object (view.copy set), is not counted as an object, is never
 * listed, and a second copy of the same ref is refused. */
static void test_copy_put_get_list(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char own[RT_REF_SIZE];
    put_ok(s, 10, 'o', own);
    rt_buf *b = make_buf(100, 'c', "text/plain");
    assert_int_equal(rt_store_put_copy(s, FOREIGN_REF, b), RT_OK);
    rt_object_view v;
    assert_int_equal(get_view(s, FOREIGN_REF, &v), RT_OK);
    assert_true(v.copy);
    assert_int_equal(v.state, RT_OBJ_READY);
    assert_int_equal(v.size, 100);
    assert_ptr_equal(v.buf, b);
    assert_string_equal(v.content_type, "text/plain");
    rt_object_view_release(&v);
    assert_int_equal(get_view(s, own, &v), RT_OK);
    assert_false(v.copy);
    rt_object_view_release(&v);

    rt_store_stats st;
    rt_store_get_stats(s, &st);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.copies, 1);
    assert_int_equal(st.copy_bytes, 100);
    assert_int_equal(st.bytes, 110);

    rt_object_view views[4];
    uint64_t next;
    assert_int_equal(rt_store_list(s, 0, -1, 4, views, &next), 1);
    assert_string_equal(views[0].ref, own);
    rt_object_view_release(&views[0]);

    rt_buf *again = make_buf(5, 'x', NULL);
    assert_int_equal(rt_store_put_copy(s, FOREIGN_REF, again), RT_EEXIST);
    assert_int_equal(rt_store_put_copy(s, own, again), RT_EEXIST); /* an own object */
    assert_int_equal(rt_store_put_copy(s, "o7-0123456789abcdefghijkl0123456789abcd", again),
                     RT_EINVAL); /* longer than any id rayd makes */
    assert_int_equal(rt_store_put_copy(s, "o7 bad", again), RT_EINVAL);
    rt_buf_decref(again);
    rt_store_free(s);
}

/* Dropping or deleting a copy removes it without a tombstone (the owner answers whether
 * the object is gone); own objects are never dropped as copies. */
static void test_copy_drop_leaves_no_tombstone(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char own[RT_REF_SIZE];
    put_ok(s, 10, 'o', own);
    assert_int_equal(rt_store_put_copy(s, FOREIGN_REF, make_buf(50, 'c', NULL)), RT_OK);
    assert_int_equal(rt_store_drop_copy(s, own), RT_ENOTFOUND);
    rt_object_view v;
    assert_int_equal(get_view(s, own, &v), RT_OK);
    rt_object_view_release(&v);

    assert_int_equal(rt_store_drop_copy(s, FOREIGN_REF), RT_OK);
    assert_int_equal(get_view(s, FOREIGN_REF, &v), RT_ENOTFOUND);
    rt_object_view_release(&v);
    assert_int_equal(rt_store_drop_copy(s, FOREIGN_REF), RT_ENOTFOUND);

    assert_int_equal(rt_store_put_copy(s, FOREIGN_REF, make_buf(50, 'c', NULL)), RT_OK);
    assert_int_equal(rt_store_delete(s, FOREIGN_REF), RT_OK);
    assert_int_equal(get_view(s, FOREIGN_REF, &v), RT_ENOTFOUND);
    rt_object_view_release(&v);

    rt_store_stats st;
    rt_store_get_stats(s, &st);
    assert_int_equal(st.copies, 0);
    assert_int_equal(st.copy_bytes, 0);
    assert_int_equal(st.tombstones, 0);
    assert_int_equal(st.bytes, 10);
    rt_store_free(s);
}

static void count_fire(rt_watcher *w, void *arg)
{
    (void)w;
    (*(int *)arg)++;
}

/* A stand-in is a pending copy: watched like a pending object, left alone by drop and
 * delete while pending, dropped when idle only, and resolved into a copy (or an error
 * copy) whose bytes count as a copy's and which leaves no tombstone when it goes. */
static void test_standin_lifecycle(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    assert_int_equal(rt_store_put_standin(s, FOREIGN_REF), RT_OK);
    assert_int_equal(rt_store_put_standin(s, FOREIGN_REF), RT_EEXIST);
    assert_int_equal(rt_store_put_standin(s, "o7 bad"), RT_EINVAL);
    rt_object_view v;
    assert_int_equal(get_view(s, FOREIGN_REF, &v), RT_OK);
    assert_true(v.copy);
    assert_int_equal(v.state, RT_OBJ_PENDING);
    rt_object_view_release(&v);
    rt_store_stats st;
    rt_store_get_stats(s, &st);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.copies, 1);

    int fired = 0;
    rt_watcher w = {.fn = count_fire, .arg = &fired};
    assert_int_equal(rt_store_watch(s, FOREIGN_REF, &w), RT_OK);
    assert_int_equal(rt_store_drop_standin(s, FOREIGN_REF), RT_ESTATE); /* watched */
    assert_int_equal(rt_store_drop_copy(s, FOREIGN_REF), RT_ENOTFOUND); /* pending: stays */
    assert_int_equal(rt_store_delete(s, FOREIGN_REF), RT_ENOTFOUND);
    assert_int_equal(fired, 0);
    assert_int_equal(rt_store_resolve(s, FOREIGN_REF, make_buf(40, 'c', "text/plain")), RT_OK);
    assert_int_equal(fired, 1);
    rt_store_get_stats(s, &st);
    assert_int_equal(st.copies, 1);
    assert_int_equal(st.copy_bytes, 40);
    assert_int_equal(st.bytes, 40);
    assert_int_equal(rt_store_drop_standin(s, FOREIGN_REF), RT_ENOTFOUND); /* a copy now */
    assert_int_equal(rt_store_drop_copy(s, FOREIGN_REF), RT_OK);
    rt_store_get_stats(s, &st);
    assert_int_equal(st.copies, 0);
    assert_int_equal(st.copy_bytes, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.tombstones, 0);

    /* Idle (neither watched nor pinned): dropped. Pinned: kept. */
    assert_int_equal(rt_store_put_standin(s, FOREIGN_REF), RT_OK);
    assert_int_equal(rt_store_pin(s, FOREIGN_REF), RT_OK);
    assert_int_equal(rt_store_drop_standin(s, FOREIGN_REF), RT_ESTATE);
    assert_int_equal(rt_store_unpin(s, FOREIGN_REF), RT_OK);
    assert_int_equal(rt_store_drop_standin(s, FOREIGN_REF), RT_OK);
    assert_int_equal(get_view(s, FOREIGN_REF, &v), RT_ENOTFOUND);
    rt_object_view_release(&v);

    /* Failed: an error copy, whose bytes go with it. */
    assert_int_equal(rt_store_put_standin(s, FOREIGN_REF), RT_OK);
    rt_error *err = rt_error_new(RT_ERR_OBJECT_LOST, "owner died", NULL, NULL);
    assert_int_equal(rt_store_fail(s, FOREIGN_REF, err), RT_OK);
    rt_error_decref(err);
    assert_int_equal(get_view(s, FOREIGN_REF, &v), RT_OK);
    assert_int_equal(v.state, RT_OBJ_ERROR);
    assert_true(v.copy);
    rt_object_view_release(&v);
    rt_store_get_stats(s, &st);
    assert_true(st.bytes > 0);
    assert_int_equal(rt_store_drop_copy(s, FOREIGN_REF), RT_OK);
    rt_store_get_stats(s, &st);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.error_bytes, 0);
    assert_int_equal(st.copies, 0);
    assert_int_equal(st.tombstones, 0);
    rt_store_free(s);
}

/* Under memory pressure a copy is evicted like any object, and is then simply absent. */
static void test_copy_evicted_without_tombstone(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    assert_int_equal(rt_store_put_copy(s, FOREIGN_REF, make_buf(600, 'c', NULL)), RT_OK);
    char own[RT_REF_SIZE];
    put_ok(s, 600, 'o', own); /* does not fit beside the copy: the copy goes */
    rt_object_view v;
    assert_int_equal(get_view(s, FOREIGN_REF, &v), RT_ENOTFOUND);
    rt_object_view_release(&v);
    assert_int_equal(get_view(s, own, &v), RT_OK);
    rt_object_view_release(&v);
    rt_store_stats st;
    rt_store_get_stats(s, &st);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.copies, 0);
    assert_int_equal(st.tombstones, 0);
    assert_int_equal(st.bytes, 600);
    /* A copy that can never fit is refused, as a put would be. */
    rt_buf *huge = make_buf(2000, 'h', NULL);
    assert_int_equal(rt_store_put_copy(s, FOREIGN_REF, huge), RT_EFULL);
    rt_buf_decref(huge);
    rt_store_free(s);
}

/* mark_shared: a freed object reports whether another node fetched it. */
static void test_delete_reports_shared(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char a[RT_REF_SIZE], b[RT_REF_SIZE];
    put_ok(s, 4, 'a', a);
    put_ok(s, 4, 'b', b);
    assert_int_equal(rt_store_mark_shared(s, a), RT_OK);
    assert_int_equal(rt_store_mark_shared(s, "nope"), RT_ENOTFOUND);
    assert_int_equal(rt_store_put_copy(s, FOREIGN_REF, make_buf(5, 'c', NULL)), RT_OK);
    assert_int_equal(rt_store_mark_shared(s, FOREIGN_REF), RT_ENOTFOUND); /* not ours */
    bool shared = false;
    assert_int_equal(rt_store_delete_ex(s, a, &shared), RT_OK);
    assert_true(shared);
    assert_int_equal(rt_store_delete_ex(s, b, &shared), RT_OK);
    assert_false(shared);
    assert_int_equal(rt_store_delete_ex(s, a, &shared), RT_ELOST);
    assert_false(shared);
    rt_store_free(s);
}

static void test_put_many_all_or_nothing(void **state)
{
    (void)state;
    rt_store *s = new_store(1000);
    rt_buf *bufs[3] = {make_buf(400, 'a', NULL), make_buf(400, 'b', NULL),
                       make_buf(400, 'c', NULL)};
    for (int i = 0; i < 3; i++)
        rt_buf_incref(bufs[i]);
    char refs[3][RT_REF_SIZE];
    assert_int_equal(rt_store_put_many(s, bufs, 3, refs), RT_EFULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(bufs[i]->refs, 2); /* none stolen */
        rt_buf_decref(bufs[i]);
    }
    rt_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.bytes, 0);
    uint64_t next = 1;
    rt_object_view views[4];
    assert_int_equal(rt_store_list(s, 0, -1, 4, views, &next), 0);

    /* with a pinned object in the way: fails too, and the pinned object stays */
    char p[RT_REF_SIZE];
    put_ok(s, 300, 'p', p);
    assert_int_equal(rt_store_pin(s, p), RT_OK);
    for (int i = 0; i < 2; i++)
        rt_buf_incref(bufs[i]);
    assert_int_equal(rt_store_put_many(s, bufs, 2, refs), RT_EFULL);
    for (int i = 0; i < 2; i++)
        assert_int_equal(bufs[i]->refs, 2);
    st = stats_of(s);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.bytes, 300);
    assert_int_equal(peek_state(s, p), RT_OBJ_READY);
    for (int i = 0; i < 2; i++)
        rt_buf_decref(bufs[i]);
    for (int i = 0; i < 3; i++)
        rt_buf_decref(bufs[i]);
    rt_store_free(s);
}

/* ---- concurrency: random operations ----------------------------------------------- */

#define CT_THREADS 8
#define CT_OPS 20000
#define CT_RING 32
#define CT_MAX_PINNED 4
#define CT_MAX_SIZE 4096
#define CT_LIMIT (256 * 1024)
#define CT_SHARED 512

typedef struct ct_slot {
    char ref[RT_REF_SIZE];
    int used;
    unsigned pins;
    size_t size;
} ct_slot;

typedef struct ct_shared {
    rt_store *store;
    pthread_barrier_t start;
    pthread_mutex_t lock;
    char refs[CT_SHARED][RT_REF_SIZE];
    size_t nrefs;
} ct_shared;

typedef struct ct_thread {
    ct_shared *sh;
    uint64_t rng;
    uint64_t gets;
    uint64_t puts;
    uint64_t efull;
    uint64_t errors;
    char first_error[200];
    ct_slot slots[CT_RING];
    unsigned pinned_slots;
} ct_thread;

static uint64_t ct_rand(ct_thread *t)
{
    uint64_t x = t->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t->rng = x;
    return x;
}

static void ct_fail(ct_thread *t, const char *what, rt_status st, int line)
{
    if (t->errors++ == 0)
        snprintf(t->first_error, sizeof(t->first_error), "line %d: %s: got %s", line, what,
                 rt_status_name(st));
}

#define CT_CHECK(t, cond, what, st)                                                      \
    do {                                                                                 \
        if (!(cond))                                                                     \
            ct_fail((t), (what), (st), __LINE__);                                        \
    } while (0)

/* Checks a READY view's bytes against what the putter wrote: all bytes equal size & 0xff,
 * content type by size parity. */
static int ct_view_ok(const rt_object_view *v)
{
    if (v->state != RT_OBJ_READY || !v->buf || v->size != v->buf->size || v->size == 0)
        return 0;
    const char *ct = (v->size & 1) ? "text/plain" : "application/octet-stream";
    if (strcmp(v->content_type, ct) != 0)
        return 0;
    unsigned char fill = (unsigned char)(v->size & 0xff);
    for (size_t i = 0; i < v->size; i++)
        if ((unsigned char)v->buf->data[i] != fill)
            return 0;
    return v->buf->data[v->size] == '\0';
}

static void ct_get(ct_thread *t, const char *ref, int must_be_ready, size_t size)
{
    rt_object_view v;
    memset(&v, 0, sizeof(v));
    rt_status st = rt_store_get(t->sh->store, ref, &v);
    t->gets++;
    if (st == RT_OK) {
        CT_CHECK(t, ct_view_ok(&v), "get: bad READY view", st);
        CT_CHECK(t, size == 0 || v.size == size, "get: wrong size", st);
        CT_CHECK(t, strcmp(v.ref, ref) == 0, "get: wrong ref in view", st);
        rt_object_view_release(&v);
    } else if (st == RT_ELOST) {
        CT_CHECK(t, !must_be_ready, "get: pinned object lost", st);
        CT_CHECK(t, v.state == RT_OBJ_LOST && !v.buf, "get: bad LOST view", st);
        CT_CHECK(t, v.lost_reason == RT_LOST_FREED || v.lost_reason == RT_LOST_EVICTED,
                 "get: bad lost reason", st);
        rt_object_view_release(&v);
    } else {
        /* a ref that was put is never unknown (tombstones remain) */
        CT_CHECK(t, 0, "get: unexpected status", st);
    }
}

static void ct_retire(ct_thread *t, ct_slot *slot)
{
    rt_store *s = t->sh->store;
    while (slot->pins > 0) {
        rt_status st = rt_store_unpin(s, slot->ref);
        CT_CHECK(t, st == RT_OK, "retire: unpin", st);
        slot->pins--;
        if (slot->pins == 0)
            t->pinned_slots--;
    }
    rt_status st = rt_store_delete(s, slot->ref);
    CT_CHECK(t, st == RT_OK || st == RT_ELOST, "retire: delete", st);
    rt_object_view v;
    memset(&v, 0, sizeof(v));
    st = rt_store_peek(s, slot->ref, &v);
    CT_CHECK(t, st == RT_ELOST, "retire: peek after delete", st);
    if (st == RT_OK || st == RT_ELOST)
        rt_object_view_release(&v);
    slot->used = 0;
}

static void *ct_worker(void *arg)
{
    ct_thread *t = arg;
    rt_store *s = t->sh->store;
    pthread_barrier_wait(&t->sh->start);
    for (int op = 0; op < CT_OPS; op++) {
        unsigned r = (unsigned)(ct_rand(t) % 100);
        ct_slot *slot = &t->slots[ct_rand(t) % CT_RING];
        if (r < 30) { /* put */
            size_t size = 1 + (size_t)(ct_rand(t) % CT_MAX_SIZE);
            rt_buf *b = rt_buf_new(size, (size & 1) ? "text/plain" : NULL);
            if (!b) {
                ct_fail(t, "rt_buf_new", RT_ENOMEM, __LINE__);
                continue;
            }
            memset(b->data, (int)(size & 0xff), size);
            char ref[RT_REF_SIZE];
            rt_status st = rt_store_put(s, b, 0, ref);
            if (st == RT_EFULL) {
                t->efull++;
                CT_CHECK(t, b->refs == 1, "put EFULL: buffer not ours", st);
                rt_buf_decref(b);
                continue;
            }
            CT_CHECK(t, st == RT_OK, "put", st);
            if (st != RT_OK)
                continue;
            t->puts++;
            if (slot->used)
                ct_retire(t, slot);
            memcpy(slot->ref, ref, RT_REF_SIZE);
            slot->used = 1;
            slot->size = size;
            slot->pins = 0;
            pthread_mutex_lock(&t->sh->lock);
            size_t k = t->sh->nrefs < CT_SHARED ? t->sh->nrefs++ : ct_rand(t) % CT_SHARED;
            memcpy(t->sh->refs[k], ref, RT_REF_SIZE);
            pthread_mutex_unlock(&t->sh->lock);
        } else if (r < 60) { /* get anyone's */
            char ref[RT_REF_SIZE];
            pthread_mutex_lock(&t->sh->lock);
            size_t n = t->sh->nrefs;
            if (n)
                memcpy(ref, t->sh->refs[ct_rand(t) % n], RT_REF_SIZE);
            pthread_mutex_unlock(&t->sh->lock);
            if (n)
                ct_get(t, ref, 0, 0);
        } else if (r < 72) { /* get own */
            if (slot->used)
                ct_get(t, slot->ref, slot->pins > 0, slot->size);
        } else if (r < 84) { /* pin own */
            if (!slot->used || (slot->pins == 0 && t->pinned_slots >= CT_MAX_PINNED))
                continue;
            rt_status st = rt_store_pin(s, slot->ref);
            if (st == RT_OK) {
                if (slot->pins++ == 0)
                    t->pinned_slots++;
            } else {
                CT_CHECK(t, st == RT_ELOST && slot->pins == 0, "pin", st);
            }
        } else if (r < 94) { /* unpin own */
            if (!slot->used)
                continue;
            rt_status st = rt_store_unpin(s, slot->ref);
            if (slot->pins > 0) {
                CT_CHECK(t, st == RT_OK, "unpin of pinned", st);
                if (--slot->pins == 0)
                    t->pinned_slots--;
            } else {
                CT_CHECK(t, st == RT_ESTATE || st == RT_ELOST, "unpin of unpinned", st);
            }
        } else { /* delete own */
            if (slot->used)
                ct_retire(t, slot);
        }
    }
    return NULL;
}

static void test_concurrent_random_ops(void **state)
{
    (void)state;
    static ct_shared sh;
    static ct_thread th[CT_THREADS];
    memset(&sh, 0, sizeof(sh));
    memset(th, 0, sizeof(th));
    sh.store = new_store(CT_LIMIT);
    pthread_barrier_init(&sh.start, NULL, CT_THREADS);
    pthread_mutex_init(&sh.lock, NULL);
    pthread_t tid[CT_THREADS];
    for (int i = 0; i < CT_THREADS; i++) {
        th[i].sh = &sh;
        th[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        assert_int_equal(pthread_create(&tid[i], NULL, ct_worker, &th[i]), 0);
    }
    for (int i = 0; i < CT_THREADS; i++)
        pthread_join(tid[i], NULL);

    uint64_t gets = 0, puts = 0, efull = 0;
    for (int i = 0; i < CT_THREADS; i++) {
        if (th[i].errors)
            fprintf(stderr, "thread %d: %llu errors, first: %s\n", i,
                        (unsigned long long)th[i].errors, th[i].first_error);
        assert_int_equal(th[i].errors, 0);
        gets += th[i].gets;
        puts += th[i].puts;
        efull += th[i].efull;
    }
    rt_store *s = sh.store;
    rt_store_stats st = stats_of(s);
    assert_true(st.bytes <= CT_LIMIT);
    assert_int_equal(st.hits + st.misses, gets);
    assert_int_equal(st.pending, 0);
    assert_true(st.evictions > 0); /* the test did put the store under pressure */
    assert_true(puts > 0);

    /* pinned objects survived, with the pin counts their owners hold */
    for (int i = 0; i < CT_THREADS; i++) {
        for (int k = 0; k < CT_RING; k++) {
            ct_slot *slot = &th[i].slots[k];
            if (!slot->used || slot->pins == 0)
                continue;
            rt_object_view v;
            assert_int_equal(peek_view(s, slot->ref, &v), RT_OK);
            assert_int_equal(v.state, RT_OBJ_READY);
            assert_int_equal(v.pins, slot->pins);
            assert_int_equal(v.size, slot->size);
            rt_object_view_release(&v);
        }
    }

    /* a full list() walk agrees with the counters */
    static rt_object_view views[100];
    uint64_t cursor = 0, last_seq = 0;
    size_t live = 0, bytes = 0, lost = 0;
    do {
        uint64_t next = 0;
        size_t n = rt_store_list(s, cursor, -1, 100, views, &next);
        for (size_t i = 0; i < n; i++) {
            assert_true(views[i].seq > last_seq);
            last_seq = views[i].seq;
            if (views[i].state == RT_OBJ_LOST) {
                lost++;
            } else {
                assert_int_equal(views[i].state, RT_OBJ_READY);
                assert_true(ct_view_ok(&views[i]));
                live++;
                bytes += views[i].size;
            }
        }
        release_views(views, n);
        assert_true(next == 0 || n > 0);
        cursor = next;
    } while (cursor != 0);
    assert_int_equal(live, st.objects);
    assert_int_equal(bytes, st.bytes);
    assert_true(lost <= st.tombstones);
    /* Pinned bytes are at most 8 threads * 4 slots * 4 KiB = 128 KiB and puts in flight
     * 8 * 4 KiB, of a 256 KiB limit: there is always room to evict, so no put may fail. */
    if (efull)
        fprintf(stderr, "%llu of %llu puts answered RT_EFULL\n", (unsigned long long)efull,
                (unsigned long long)(puts + efull));
    assert_int_equal(efull, 0);

    pthread_mutex_destroy(&sh.lock);
    pthread_barrier_destroy(&sh.start);
    rt_store_free(s);
}

/* ---- concurrency: resolvers racing watchers --------------------------------------- */

#define RW_OBJECTS 3000
#define RW_WATCHERS 4
#define RW_RESOLVERS 2

typedef struct rw_probe {
    rt_watcher w;
    int fired;      /* atomic */
    int registered; /* watch returned RT_OK */
    int removed;    /* unwatch returned 1 */
} rw_probe;

typedef struct rw_ctx {
    rt_store *store;
    pthread_barrier_t start;
    char refs[RW_OBJECTS][RT_REF_SIZE];
    rw_probe probes[RW_WATCHERS][RW_OBJECTS];
    int bad;       /* atomic: protocol violations seen on other threads */
    int bad_state; /* atomic: callbacks that saw a PENDING object */
} rw_ctx;

typedef struct rw_arg {
    rw_ctx *ctx;
    int index;
} rw_arg;

static rw_ctx *rw_global;

static void rw_fn(rt_watcher *w, void *arg)
{
    rw_probe *p = (rw_probe *)w;
    size_t obj = (size_t)(uintptr_t)arg;
    if (__atomic_add_fetch(&p->fired, 1, __ATOMIC_SEQ_CST) != 1)
        __atomic_add_fetch(&rw_global->bad, 1, __ATOMIC_SEQ_CST);
    rt_object_view v;
    memset(&v, 0, sizeof(v));
    rt_status st = rt_store_peek(rw_global->store, rw_global->refs[obj], &v);
    if (st != RT_OK && st != RT_ELOST)
        __atomic_add_fetch(&rw_global->bad, 1, __ATOMIC_SEQ_CST);
    else {
        if (v.state == RT_OBJ_PENDING)
            __atomic_add_fetch(&rw_global->bad_state, 1, __ATOMIC_SEQ_CST);
        rt_object_view_release(&v);
    }
}

static void *rw_watcher(void *arg)
{
    rw_arg *a = arg;
    rw_ctx *c = a->ctx;
    pthread_barrier_wait(&c->start);
    for (size_t i = 0; i < RW_OBJECTS; i++) {
        /* half the watchers walk forwards, half backwards */
        size_t obj = (a->index & 1) ? RW_OBJECTS - 1 - i : i;
        rw_probe *p = &c->probes[a->index][obj];
        p->w.fn = rw_fn;
        p->w.arg = (void *)(uintptr_t)obj;
        int r = rt_store_watch(c->store, c->refs[obj], &p->w);
        if (r == RT_OK) {
            p->registered = 1;
            if ((obj + (size_t)a->index) % 4 == 0) {
                int u = rt_store_unwatch(c->store, &p->w);
                if (u == 1)
                    p->removed = 1;
                else if (u != 0)
                    __atomic_add_fetch(&c->bad, 1, __ATOMIC_SEQ_CST);
            }
        } else if (r != 1) {
            __atomic_add_fetch(&c->bad, 1, __ATOMIC_SEQ_CST);
        }
    }
    return NULL;
}

static void *rw_resolver(void *arg)
{
    rw_arg *a = arg;
    rw_ctx *c = a->ctx;
    pthread_barrier_wait(&c->start);
    rt_error *err = rt_error_new(RT_ERR_TASK_ERROR, "failed", NULL, NULL);
    for (size_t i = 0; i < RW_OBJECTS; i++) {
        size_t obj = (a->index & 1) ? RW_OBJECTS - 1 - i : i;
        if (obj % RW_RESOLVERS != (size_t)a->index)
            continue;
        rt_status st;
        switch (obj % 3) {
        case 0: {
            rt_buf *b = rt_buf_from("v", 1, NULL);
            st = rt_store_resolve(c->store, c->refs[obj], b);
            if (st != RT_OK)
                rt_buf_decref(b);
            break;
        }
        case 1:
            st = rt_store_fail(c->store, c->refs[obj], err);
            break;
        default:
            st = rt_store_delete(c->store, c->refs[obj]);
            break;
        }
        if (st != RT_OK)
            __atomic_add_fetch(&c->bad, 1, __ATOMIC_SEQ_CST);
        /* a second transition is refused */
        st = rt_store_fail(c->store, c->refs[obj], err);
        if (st != (obj % 3 == 2 ? RT_ELOST : RT_ESTATE))
            __atomic_add_fetch(&c->bad, 1, __ATOMIC_SEQ_CST);
    }
    rt_error_decref(err);
    return NULL;
}

static void test_concurrent_resolve_and_watch(void **state)
{
    (void)state;
    rw_ctx *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    rw_global = c;
    c->store = new_store(0);
    for (size_t i = 0; i < RW_OBJECTS; i++)
        assert_int_equal(rt_store_create_pending(c->store, c->refs[i]), RT_OK);
    pthread_barrier_init(&c->start, NULL, RW_WATCHERS + RW_RESOLVERS);
    pthread_t tid[RW_WATCHERS + RW_RESOLVERS];
    rw_arg args[RW_WATCHERS + RW_RESOLVERS];
    for (int i = 0; i < RW_WATCHERS; i++) {
        args[i] = (rw_arg){c, i};
        assert_int_equal(pthread_create(&tid[i], NULL, rw_watcher, &args[i]), 0);
    }
    for (int i = 0; i < RW_RESOLVERS; i++) {
        args[RW_WATCHERS + i] = (rw_arg){c, i};
        assert_int_equal(
            pthread_create(&tid[RW_WATCHERS + i], NULL, rw_resolver, &args[RW_WATCHERS + i]),
            0);
    }
    for (int i = 0; i < RW_WATCHERS + RW_RESOLVERS; i++)
        pthread_join(tid[i], NULL);

    assert_int_equal(c->bad, 0);
    assert_int_equal(c->bad_state, 0);
    size_t registered = 0, removed = 0, fired = 0;
    for (int w = 0; w < RW_WATCHERS; w++) {
        for (size_t i = 0; i < RW_OBJECTS; i++) {
            rw_probe *p = &c->probes[w][i];
            int f = __atomic_load_n(&p->fired, __ATOMIC_SEQ_CST);
            if (p->registered && !p->removed)
                assert_int_equal(f, 1); /* every live watcher fired exactly once */
            else
                assert_int_equal(f, 0); /* never registered or removed: never called */
            registered += (size_t)p->registered;
            removed += (size_t)p->removed;
            fired += (size_t)f;
        }
    }
    assert_int_equal(fired, registered - removed);
    rt_store_stats st = stats_of(c->store);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.objects, RW_OBJECTS - RW_OBJECTS / 3);
    pthread_barrier_destroy(&c->start);
    rt_store_free(c->store);
    rw_global = NULL;
    free(c);
}

/* ---- rt_store_release and result TTLs (sessions, issue 13) --------------------------------- */

static void test_release_unpinned_frees_at_once(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE];
    put_ok(s, 10, 'a', ref);
    bool deferred = true;
    assert_int_equal(rt_store_release(s, ref, &deferred), RT_OK);
    assert_false(deferred);
    rt_object_view v;
    assert_int_equal(peek_view(s, ref, &v), RT_ELOST);
    assert_int_equal(v.lost_reason, RT_LOST_FREED);
    rt_object_view_release(&v);
    assert_int_equal(rt_store_release(s, ref, NULL), RT_ELOST);
    assert_int_equal(rt_store_release(s, "never", NULL), RT_ENOTFOUND);
    rt_store_free(s);
}

static void test_release_pinned_waits_for_last_unpin(void **state)
{
    (void)state;
    rt_store *s = new_store(0);
    char ref[RT_REF_SIZE], pending[RT_REF_SIZE];
    put_ok(s, 10, 'a', ref);
    assert_int_equal(rt_store_pin(s, ref), RT_OK);
    assert_int_equal(rt_store_pin(s, ref), RT_OK);
    bool deferred = false;
    assert_int_equal(rt_store_release(s, ref, &deferred), RT_OK);
    assert_true(deferred);
    rt_object_view v;
    assert_int_equal(peek_view(s, ref, &v), RT_OK); /* still readable while pinned */
    assert_int_equal(v.state, RT_OBJ_READY);
    rt_object_view_release(&v);
    assert_int_equal(rt_store_unpin(s, ref), RT_OK);
    assert_int_equal(peek_view(s, ref, &v), RT_OK);
    rt_object_view_release(&v);
    assert_int_equal(rt_store_unpin(s, ref), RT_OK); /* the last pin: freed now */
    assert_int_equal(peek_view(s, ref, &v), RT_ELOST);
    assert_int_equal(v.lost_reason, RT_LOST_FREED);
    rt_object_view_release(&v);

    /* A pending object pinned by a dependent: released, then freed with its last unpin. */
    assert_int_equal(rt_store_create_pending(s, pending), RT_OK);
    assert_int_equal(rt_store_pin(s, pending), RT_OK);
    assert_int_equal(rt_store_release(s, pending, &deferred), RT_OK);
    assert_true(deferred);
    assert_int_equal(rt_store_resolve(s, pending, make_buf(3, 'p', NULL)), RT_OK);
    assert_int_equal(rt_store_unpin(s, pending), RT_OK);
    assert_int_equal(peek_view(s, pending, &v), RT_ELOST);
    rt_object_view_release(&v);
    rt_store_stats st;
    rt_store_get_stats(s, &st);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.bytes, 0);
    rt_store_free(s);
}

static void test_result_ttl_starts_when_stored(void **state)
{
    (void)state;
    rt_store_config cfg = {.result_ttl = 100};
    rt_store *s = rt_store_new(&cfg);
    assert_non_null(s);
    char by_default[RT_REF_SIZE], own[RT_REF_SIZE], none[RT_REF_SIZE], failed[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(s, by_default), RT_OK);
    assert_int_equal(rt_store_create_pending_ttl(s, 1000, own), RT_OK);
    assert_int_equal(rt_store_create_pending_ttl(s, -1, none), RT_OK);
    assert_int_equal(rt_store_create_pending_ttl(s, 50, failed), RT_OK);
    rt_object_view v;
    assert_int_equal(peek_view(s, own, &v), RT_OK);
    assert_true(v.expires_at == 0); /* no TTL while pending */
    rt_object_view_release(&v);
    double before = rt_clock_wall();
    assert_int_equal(rt_store_resolve(s, by_default, make_buf(1, 'a', NULL)), RT_OK);
    assert_int_equal(rt_store_resolve(s, own, make_buf(1, 'b', NULL)), RT_OK);
    assert_int_equal(rt_store_resolve(s, none, make_buf(1, 'c', NULL)), RT_OK);
    rt_error *err = rt_error_new(RT_ERR_TASK_ERROR, "boom", NULL, NULL);
    assert_int_equal(rt_store_fail(s, failed, err), RT_OK);
    rt_error_decref(err);
    double after = rt_clock_wall();
    assert_int_equal(peek_view(s, by_default, &v), RT_OK);
    assert_true(v.expires_at >= before + 100 && v.expires_at <= after + 100);
    rt_object_view_release(&v);
    assert_int_equal(peek_view(s, own, &v), RT_OK);
    assert_true(v.expires_at >= before + 1000 && v.expires_at <= after + 1000);
    rt_object_view_release(&v);
    assert_int_equal(peek_view(s, none, &v), RT_OK);
    assert_true(v.expires_at == 0);
    rt_object_view_release(&v);
    assert_int_equal(peek_view(s, failed, &v), RT_OK);
    assert_int_equal(v.state, RT_OBJ_ERROR);
    assert_true(v.expires_at >= before + 50 && v.expires_at <= after + 50);
    rt_object_view_release(&v);
    /* A put is not a result: the default does not apply. */
    char put[RT_REF_SIZE];
    put_ok(s, 1, 'd', put);
    assert_int_equal(peek_view(s, put, &v), RT_OK);
    assert_true(v.expires_at == 0);
    rt_object_view_release(&v);
    rt_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_put_get_round_trip),
        cmocka_unit_test(test_put_zero_bytes),
        cmocka_unit_test(test_small_values_inline),
        cmocka_unit_test(test_longest_refs),
        cmocka_unit_test(test_view_outlives_delete_and_store),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_delete_releases_room),
        cmocka_unit_test(test_tombstones_bounded),
        cmocka_unit_test(test_pending_resolve),
        cmocka_unit_test(test_pending_fail),
        cmocka_unit_test(test_resolve_after_delete),
        cmocka_unit_test(test_resolve_when_full),
        cmocka_unit_test(test_failed_resolve_changes_nothing),
        cmocka_unit_test(test_watch_fires_on_resolve),
        cmocka_unit_test(test_watch_fires_on_fail),
        cmocka_unit_test(test_watch_fires_on_delete_of_pending),
        cmocka_unit_test(test_watch_resolved_and_unknown),
        cmocka_unit_test(test_unwatch_before_firing),
        cmocka_unit_test(test_watchers_dropped_on_free),
        cmocka_unit_test(test_eviction_lru_second_chance),
        cmocka_unit_test(test_peek_does_not_mark_used),
        cmocka_unit_test(test_eviction_of_several_to_exact_limit),
        cmocka_unit_test(test_pending_not_evicted_errors_are),
        cmocka_unit_test(test_errors_counted_and_evicted),
        cmocka_unit_test(test_shared_cause_counted_once),
        cmocka_unit_test(test_error_over_limit_stored_as_summary),
        cmocka_unit_test(test_too_large_is_full_immediately),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_pins_stop_eviction),
        cmocka_unit_test(test_pins_nest),
        cmocka_unit_test(test_ttl_expires_on_read),
        cmocka_unit_test(test_ttl_expire_sweep),
        cmocka_unit_test(test_ttl_expire_cost_is_what_expires),
        cmocka_unit_test(test_ttl_pinned_expires_on_unpin),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_list_paging),
        cmocka_unit_test(test_list_exact_page_ends),
        cmocka_unit_test(test_list_state_filter),
        cmocka_unit_test(test_put_many_ok),
        cmocka_unit_test(test_put_many_all_or_nothing),
        cmocka_unit_test(test_copy_put_get_list),
        cmocka_unit_test(test_copy_drop_leaves_no_tombstone),
        cmocka_unit_test(test_copy_evicted_without_tombstone),
        cmocka_unit_test(test_standin_lifecycle),
        cmocka_unit_test(test_delete_reports_shared),
        cmocka_unit_test(test_release_unpinned_frees_at_once),
        cmocka_unit_test(test_release_pinned_waits_for_last_unpin),
        cmocka_unit_test(test_result_ttl_starts_when_stored),
        cmocka_unit_test(test_concurrent_random_ops),
        cmocka_unit_test(test_concurrent_resolve_and_watch),
    };
    return cmocka_run_group_tests_name("runtime/object_store", tests, NULL, NULL);
}
