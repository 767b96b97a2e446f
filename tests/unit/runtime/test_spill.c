/* Unit tests for runtime/spill.c (fused spill files, reading back, reclaiming files,
 * the disk limit, what a previous process left) and for spilling in runtime/object_store.c
 * (cold objects spilled, pinned ones never, spilled objects read back, freed, expired).
 * Each test uses a fresh directory under $TMPDIR. */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/object_store.h"
#include "runtime/spill.h"

static char g_dir[256];

static int dir_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/rayd-test-spill-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int dir_teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Files named *.spill in this process's spill directory. */
static int count_spill_files(void)
{
    char sub[300];
    snprintf(sub, sizeof sub, "%s/%ld", g_dir, (long)getpid());
    DIR *d = opendir(sub);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".spill"))
            n++;
    closedir(d);
    return n;
}

static rt_buf *make_buf(size_t size, unsigned seed, const char *ct)
{
    rt_buf *b = rt_buf_new(size, ct);
    assert_non_null(b);
    for (size_t i = 0; i < size; i++)
        b->data[i] = (char)(seed * 31 + i * 7);
    return b;
}

static void assert_buf_pattern(const rt_buf *b, size_t size, unsigned seed)
{
    assert_non_null(b);
    assert_int_equal(b->size, size);
    for (size_t i = 0; i < size; i++)
        if (b->data[i] != (char)(seed * 31 + i * 7))
            fail_msg("byte %zu differs", i);
}

static rt_spill *open_spill(size_t disk_limit)
{
    rt_spill_config c = {.dir = g_dir, .disk_limit = disk_limit};
    rt_spill *s = NULL;
    char err[512];
    if (rt_spill_open(&c, &s, err, sizeof err) != RT_OK)
        fail_msg("rt_spill_open: %s", err);
    return s;
}

/* ---- the spill module ------------------------------------------------------------ */

static void test_fused_write_read_reclaim(void **state)
{
    rt_spill *s = open_spill(0);
    enum { N = 100 };
    rt_buf *bufs[N];
    rt_spilled *sps[N];
    for (unsigned i = 0; i < N; i++)
        bufs[i] = make_buf(100 + i, i, i % 2 ? "text/plain" : NULL);
    assert_int_equal(rt_spill_write(s, bufs, N, sps), RT_OK);
    assert_int_equal(count_spill_files(), 1); /* 100 objects, one file */
    rt_spill_stats st;
    rt_spill_get_stats(s, &st);
    assert_int_equal(st.files, 1);
    assert_int_equal(st.writes, N);
    for (unsigned i = 0; i < N; i++) {
        rt_buf *back = rt_spilled_read(s, sps[i]);
        assert_buf_pattern(back, 100 + i, i);
        assert_string_equal(back->content_type,
                            i % 2 ? "text/plain" : "application/octet-stream");
        rt_buf_decref(back);
        rt_buf_decref(bufs[i]);
    }
    /* The file stays while any of its objects is referenced, and goes with the last. */
    for (unsigned i = 0; i < N - 1; i++)
        rt_spilled_decref(sps[i]);
    assert_int_equal(count_spill_files(), 1);
    rt_spilled_decref(sps[N - 1]);
    assert_int_equal(count_spill_files(), 0);
    rt_spill_get_stats(s, &st);
    assert_int_equal(st.files, 0);
    assert_int_equal(st.disk_bytes, 0);
    rt_spill_close(s);
}

static void test_disk_limit(void **state)
{
    rt_spill *s = open_spill(1000);
    rt_buf *a = make_buf(600, 1, NULL), *b = make_buf(600, 2, NULL);
    rt_spilled *sa = NULL, *sb = NULL;
    assert_int_equal(rt_spill_write(s, &a, 1, &sa), RT_OK);
    sb = (rt_spilled *)&sb; /* anything: a failed write leaves NULL */
    assert_int_equal(rt_spill_write(s, &b, 1, &sb), RT_EFULL);
    assert_null(sb);
    assert_int_equal(count_spill_files(), 1);
    rt_spilled_decref(sa); /* space reclaimed: now it fits */
    assert_int_equal(rt_spill_write(s, &b, 1, &sb), RT_OK);
    rt_spilled_decref(sb);
    rt_buf_decref(a);
    rt_buf_decref(b);
    rt_spill_close(s);
}

static void test_previous_process_files_removed(void **state)
{
    /* What a dead process left: a directory with files and an unlocked lock file. */
    char old[300], path[340];
    snprintf(old, sizeof old, "%s/999999999", g_dir);
    assert_int_equal(mkdir(old, 0700), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%08d.spill", old, i);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("stale", f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/lock", old);
    fclose(fopen(path, "w"));
    /* And something that is not ours to touch. */
    snprintf(path, sizeof path, "%s/keep-me", g_dir);
    fclose(fopen(path, "w"));

    rt_spill *s = open_spill(0);
    rt_spill_stats st;
    rt_spill_get_stats(s, &st);
    assert_int_equal(st.removed_at_start, 3);
    struct stat sb;
    assert_int_not_equal(stat(old, &sb), 0);
    assert_int_equal(stat(path, &sb), 0);
    /* A live process's directory (this one's, locked) survives another opening, which
     * fails without touching it. */
    rt_buf *b = make_buf(10, 1, NULL);
    rt_spilled *live = NULL;
    assert_int_equal(rt_spill_write(s, &b, 1, &live), RT_OK);
    rt_spill_config c = {.dir = g_dir};
    rt_spill *again = NULL;
    char err[512];
    assert_int_equal(rt_spill_open(&c, &again, err, sizeof err), RT_EINVAL);
    assert_non_null(strstr(err, "in use"));
    assert_int_equal(count_spill_files(), 1);
    rt_spilled_decref(live);
    rt_buf_decref(b);
    rt_spill_close(s);
}

static void test_not_writable(void **state)
{
    rt_spill_config c = {.dir = "/proc/rayd-no-such-dir", .disk_limit = 0};
    rt_spill *s = NULL;
    char err[512];
    assert_int_equal(rt_spill_open(&c, &s, err, sizeof err), RT_EINVAL);
    assert_null(s);
    assert_non_null(strstr(err, "/proc/rayd-no-such-dir"));
}

/* ---- big objects written with O_DIRECT, the rest buffered -------------------------- */

/* A byte that differs from its neighbours a page or more away, so that a misplaced page
 * shows. */
static char pattern_byte(size_t i, unsigned seed)
{
    return (char)((i * 7) ^ (i >> 8) ^ ((i >> 12) * 13) ^ (i >> 20) ^ (seed * 31));
}

/* An rt_buf whose data starts misalign bytes past a 4 KiB boundary, in memory of its own
 * (freed with free_placed): rt_buf_new's placement is the allocator's, and the direct path
 * must be right for every placement. */
static rt_buf *placed_buf(size_t size, size_t misalign, unsigned seed, void **mem)
{
    assert_int_equal(posix_memalign(mem, 4096, 8192 + size + 1), 0);
    rt_buf *b = (rt_buf *)((char *)*mem + 4096 + misalign - offsetof(rt_buf, data));
    b->refs = 1;
    b->owns_content_type = false;
    b->size = size;
    b->content_type = "application/octet-stream";
    for (size_t i = 0; i < size; i++)
        b->data[i] = pattern_byte(i, seed);
    b->data[size] = '\0';
    return b;
}

static void assert_read_back(rt_spill *s, const rt_spilled *sp, size_t size, unsigned seed)
{
    assert_int_equal(sp->size, size);
    rt_buf *back = rt_spilled_read(s, sp);
    assert_non_null(back);
    assert_int_equal(back->size, size);
    for (size_t i = 0; i < size; i++)
        if (back->data[i] != pattern_byte(i, seed))
            fail_msg("object of %zu bytes: byte %zu differs", size, i);
    rt_buf_decref(back);
}

static const size_t DIRECT_SIZES[] = {0, 1, 4095, 4096, 4097, (1u << 20) + 3};
static const size_t MISALIGNS[] = {0, 8, 24, 4088}; /* an rt_buf is 8-byte aligned */
enum { NSIZES = sizeof DIRECT_SIZES / sizeof DIRECT_SIZES[0],
       NMIS = sizeof MISALIGNS / sizeof MISALIGNS[0] };

/* Every size at every placement, all in one fused file (each object's buffered head and
 * tail share pages with its neighbours'), then each alone; read back byte-exact; the file
 * goes with the last object. direct_min 1 sends every object but the empty one through
 * the aligned path. */
static void check_direct_layout(rt_spill_config c)
{
    c.dir = g_dir;
    rt_spill *s = NULL;
    char err[512];
    if (rt_spill_open(&c, &s, err, sizeof err) != RT_OK)
        fail_msg("rt_spill_open: %s", err);
    enum { N = NSIZES * NMIS };
    rt_buf *bufs[N];
    void *mems[N];
    rt_spilled *sps[N];
    size_t sum = 0;
    for (size_t i = 0; i < N; i++) {
        bufs[i] = placed_buf(DIRECT_SIZES[i % NSIZES], MISALIGNS[i / NSIZES], (unsigned)i,
                             &mems[i]);
        sum += bufs[i]->size;
    }
    assert_int_equal(rt_spill_write(s, bufs, N, sps), RT_OK);
    assert_int_equal(count_spill_files(), 1);
    rt_spill_stats st;
    rt_spill_get_stats(s, &st);
    assert_true(st.disk_bytes >= sum);
    assert_true(st.disk_bytes <= sum + N * 4096); /* a hole under 4 KiB per object */
    assert_true(st.direct_bytes <= st.write_bytes);
    for (size_t i = 0; i < N; i++) {
        assert_read_back(s, sps[i], bufs[i]->size, (unsigned)i);
        if (i > 0) /* in order, never overlapping */
            assert_true(sps[i]->offset >= sps[i - 1]->offset + sps[i - 1]->size);
    }
    for (size_t i = 0; i < N; i++)
        rt_spilled_decref(sps[i]);
    assert_int_equal(count_spill_files(), 0);

    for (size_t i = 0; i < N; i++) {
        rt_spilled *one = NULL;
        assert_int_equal(rt_spill_write(s, &bufs[i], 1, &one), RT_OK);
        assert_read_back(s, one, bufs[i]->size, (unsigned)i);
        rt_spilled_decref(one);
        free(mems[i]);
    }
    rt_spill_get_stats(s, &st);
    assert_int_equal(st.files, 0);
    assert_int_equal(st.disk_bytes, 0);
    if (c.no_direct)
        assert_int_equal(st.direct_bytes, 0);
    print_message("O_DIRECT: %llu of %llu bytes\n", (unsigned long long)st.direct_bytes,
                  (unsigned long long)st.write_bytes);
    rt_spill_close(s);
}

static void test_direct_sizes_and_placements(void **state)
{
    check_direct_layout((rt_spill_config){.direct_min = 1});
}

static void test_buffered_sizes_and_placements(void **state)
{
    check_direct_layout((rt_spill_config){.no_direct = true});
}

/* Objects from rt_buf_new (the allocator's placement) at the default threshold: the small
 * ones packed, the big one aligned. */
static void test_direct_default_threshold(void **state)
{
    rt_spill *s = open_spill(0);
    rt_buf *bufs[NSIZES];
    rt_spilled *sps[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        bufs[i] = rt_buf_new(DIRECT_SIZES[i], NULL);
        assert_non_null(bufs[i]);
        for (size_t k = 0; k < DIRECT_SIZES[i]; k++)
            bufs[i]->data[k] = pattern_byte(k, (unsigned)i);
    }
    assert_int_equal(rt_spill_write(s, bufs, NSIZES, sps), RT_OK);
    for (size_t i = 1; i < NSIZES; i++)
        if (DIRECT_SIZES[i] < 128 * 1024) /* small: packed, no hole */
            assert_int_equal(sps[i]->offset, sps[i - 1]->offset + sps[i - 1]->size);
    for (size_t i = 0; i < NSIZES; i++) {
        assert_read_back(s, sps[i], DIRECT_SIZES[i], (unsigned)i);
        rt_spilled_decref(sps[i]);
        rt_buf_decref(bufs[i]);
    }
    assert_int_equal(count_spill_files(), 0);
    rt_spill_close(s);
}

/* ---- the store with spilling ----------------------------------------------------- */

static rt_store *spill_store(rt_spill *s, size_t limit)
{
    rt_store_config c = {.memory_limit = limit, .on_full = RT_ON_FULL_SPILL, .spill = s};
    rt_store *st = rt_store_new(&c);
    assert_non_null(st);
    return st;
}

static void test_store_spills_cold_not_pinned(void **state)
{
    rt_spill *sp = open_spill(0);
    rt_store *st = spill_store(sp, 64 * 1024);
    enum { N = 64, SIZE = 4096 }; /* 256 KiB into a 64 KiB store */
    char refs[N][RT_REF_SIZE];
    for (unsigned i = 0; i < N; i++) {
        rt_buf *b = make_buf(SIZE, i, NULL);
        assert_int_equal(rt_store_put(st, b, 0, refs[i]), RT_OK);
        if (i == 0)
            assert_int_equal(rt_store_pin(st, refs[0]), RT_OK);
    }
    rt_store_stats ss;
    rt_store_get_stats(st, &ss);
    assert_true(ss.bytes <= 64 * 1024);
    assert_true(ss.spilled >= N - 64 * 1024 / SIZE);
    assert_int_equal(ss.spilled_bytes, ss.spilled * SIZE);
    assert_int_equal(ss.evictions, 0);
    assert_true(ss.disk.files < ss.spilled); /* fused */

    rt_object_view v;
    /* The pinned one was never spilled; the oldest unpinned one was. */
    assert_int_equal(rt_store_peek_file(st, refs[0], &v), RT_OK);
    assert_non_null(v.buf);
    assert_null(v.spilled);
    rt_object_view_release(&v);
    assert_int_equal(rt_store_peek_file(st, refs[1], &v), RT_OK);
    assert_null(v.buf);
    assert_non_null(v.spilled);
    assert_int_equal(v.state, RT_OBJ_READY);
    assert_int_equal(v.size, SIZE);
    rt_object_view_release(&v);

    /* Every object reads back byte-exact (restored into the view). */
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(rt_store_get(st, refs[i], &v), RT_OK);
        assert_buf_pattern(v.buf, SIZE, i);
        rt_object_view_release(&v);
    }
    rt_store_get_stats(st, &ss);
    assert_true(ss.restores >= 1);

    /* Freeing every spilled object deletes every file. */
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(rt_store_delete(st, refs[i]), RT_OK);
    rt_store_get_stats(st, &ss);
    assert_int_equal(ss.spilled, 0);
    assert_int_equal(ss.disk.files, 0);
    assert_int_equal(count_spill_files(), 0);
    rt_store_free(st);
    rt_spill_close(sp);
}

/* Small values live in their object's record: the spill thread leaves them in memory
 * (writing one out would free at most 32 bytes) and spills the others. */
static void test_store_small_values_stay(void **state)
{
    rt_spill *sp = open_spill(0);
    rt_store *st = spill_store(sp, 16 * 1024);
    enum { NSMALL = 100, NBIG = 16, BIG = 4096 };
    char small[NSMALL][RT_REF_SIZE], big[NBIG][RT_REF_SIZE];
    for (unsigned i = 0; i < NSMALL; i++)
        assert_int_equal(rt_store_put(st, make_buf(32, i, NULL), 0, small[i]), RT_OK);
    for (unsigned i = 0; i < NBIG; i++)
        assert_int_equal(rt_store_put(st, make_buf(BIG, 1000 + i, NULL), 0, big[i]), RT_OK);
    rt_store_stats ss;
    rt_store_get_stats(st, &ss);
    assert_true(ss.spilled >= 1);
    assert_int_equal(ss.spilled_bytes, ss.spilled * BIG); /* big ones only */
    assert_true(ss.bytes <= 16 * 1024);
    rt_object_view v;
    for (unsigned i = 0; i < NSMALL; i++) {
        assert_int_equal(rt_store_peek_file(st, small[i], &v), RT_OK);
        assert_null(v.spilled);
        assert_buf_pattern(v.buf, 32, i);
        rt_object_view_release(&v);
    }
    for (unsigned i = 0; i < NBIG; i++) {
        assert_int_equal(rt_store_get(st, big[i], &v), RT_OK);
        assert_buf_pattern(v.buf, BIG, 1000 + i);
        rt_object_view_release(&v);
    }
    rt_store_free(st);
    rt_spill_close(sp);
}

static void test_store_large_object_and_disk_full(void **state)
{
    rt_spill *sp = open_spill(256 * 1024);
    rt_store *st = spill_store(sp, 64 * 1024);
    char ref[RT_REF_SIZE], ref2[RT_REF_SIZE];
    rt_buf *big = make_buf(200 * 1024, 7, NULL); /* larger than memory: straight to disk */
    assert_int_equal(rt_store_put(st, big, 1000, ref), RT_OK);
    rt_object_view v;
    assert_int_equal(rt_store_get(st, ref, &v), RT_OK);
    assert_buf_pattern(v.buf, 200 * 1024, 7);
    rt_object_view_release(&v);
    rt_buf *big2 = make_buf(200 * 1024, 8, NULL); /* over the disk limit */
    assert_int_equal(rt_store_put(st, big2, 0, ref2), RT_EFULL);
    rt_buf_decref(big2);
    assert_true(rt_store_could_fit(st, 256 * 1024));
    assert_false(rt_store_could_fit(st, 256 * 1024 + 1));
    rt_store_free(st);
    rt_spill_close(sp);
}

static void test_store_spilled_expires(void **state)
{
    rt_spill *sp = open_spill(0);
    rt_store *st = spill_store(sp, 64 * 1024);
    char ref[RT_REF_SIZE];
    assert_int_equal(rt_store_put(st, make_buf(100 * 1024, 3, NULL), 0.05, ref), RT_OK);
    rt_store_stats ss;
    rt_store_get_stats(st, &ss);
    assert_int_equal(ss.spilled, 1);
    while (rt_store_expire(st) == 0) /* the TTL passes (the heap says when) */
        usleep(10 * 1000);
    rt_store_get_stats(st, &ss);
    assert_int_equal(ss.spilled, 0);
    assert_int_equal(ss.disk.files, 0);
    rt_object_view v;
    assert_int_equal(rt_store_peek(st, ref, &v), RT_ELOST);
    assert_int_equal(v.lost_reason, RT_LOST_EXPIRED);
    rt_object_view_release(&v);
    rt_store_free(st);
    rt_spill_close(sp);
}

/* Threads putting, reading, pinning and freeing while the spill thread spills (for
 * SANITIZE=thread): every object reads back exact, and freeing everything empties the disk. */
typedef struct worker_arg {
    rt_store *store;
    unsigned id;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    enum { N = 150, SIZE = 2048 };
    char refs[N][RT_REF_SIZE];
    for (unsigned i = 0; i < N; i++) {
        unsigned seed = a->id * 1000 + i;
        if (rt_store_put(a->store, make_buf(SIZE, seed, NULL), 0, refs[i]) != RT_OK)
            return (void *)1;
        if (i % 7 == 0 && rt_store_pin(a->store, refs[i / 2]) == RT_OK)
            rt_store_unpin(a->store, refs[i / 2]);
        rt_object_view v;
        unsigned j = i / 3;
        if (rt_store_get(a->store, refs[j], &v) != RT_OK || !v.buf || v.buf->size != SIZE ||
            v.buf->data[5] != (char)((a->id * 1000 + j) * 31 + 5 * 7))
            return (void *)2;
        rt_object_view_release(&v);
    }
    for (unsigned i = 0; i < N; i++)
        if (rt_store_delete(a->store, refs[i]) != RT_OK)
            return (void *)3;
    return NULL;
}

static void test_store_concurrent(void **state)
{
    rt_spill *sp = open_spill(0);
    rt_store *st = spill_store(sp, 32 * 1024);
    enum { T = 4 };
    pthread_t th[T];
    worker_arg args[T];
    for (unsigned i = 0; i < T; i++) {
        args[i] = (worker_arg){st, i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (unsigned i = 0; i < T; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        assert_null(rc);
    }
    rt_store_stats ss;
    rt_store_get_stats(st, &ss);
    assert_true(ss.spills > 0);
    assert_int_equal(ss.objects, 0);
    assert_int_equal(ss.spilled, 0);
    assert_int_equal(ss.bytes, 0);
    rt_store_free(st); /* joins the spill thread: a round in flight has ended */
    rt_spill_stats ds;
    rt_spill_get_stats(sp, &ds);
    assert_int_equal(ds.files, 0);
    assert_int_equal(ds.disk_bytes, 0);
    rt_spill_close(sp);
}

static void test_refuse(void **state)
{
    rt_store_config c = {.memory_limit = 1000, .on_full = RT_ON_FULL_REFUSE};
    rt_store *st = rt_store_new(&c);
    char a[RT_REF_SIZE], b[RT_REF_SIZE];
    assert_int_equal(rt_store_put(st, make_buf(600, 1, NULL), 0, a), RT_OK);
    rt_buf *second = make_buf(600, 2, NULL);
    assert_int_equal(rt_store_put(st, second, 0, b), RT_EFULL);
    rt_buf_decref(second);
    rt_object_view v;
    assert_int_equal(rt_store_get(st, a, &v), RT_OK); /* nothing evicted */
    rt_object_view_release(&v);
    rt_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fused_write_read_reclaim, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_disk_limit, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_previous_process_files_removed, dir_setup,
                                        dir_teardown),
        cmocka_unit_test(test_not_writable),
        cmocka_unit_test_setup_teardown(test_direct_sizes_and_placements, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_buffered_sizes_and_placements, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_direct_default_threshold, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_store_spills_cold_not_pinned, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_store_small_values_stay, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_store_large_object_and_disk_full, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_store_spilled_expires, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_store_concurrent, dir_setup, dir_teardown),
        cmocka_unit_test(test_refuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
