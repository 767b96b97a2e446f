/* Cluster tests of objects across nodes (three rayd, one Redis, nginx: tests/cluster/run.sh):
 * membership in /v1/status; a put on each node read through each other node byte for
 * byte (all 256 byte values, 0 bytes, 64 MiB kept as a copy, 64 MiB + 1 relayed through
 * the bounded window and not kept, a client leaving mid-way); HEAD, meta, ETag 304 and
 * Range through a
 * node that does not own the object, relayed and from its copy; a long-poll relayed to
 * the owner; stored errors relayed; DELETE through a node that does not own the object,
 * then 410 everywhere; an unknown owner's ref; and put/get through nginx. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/cluster/cluster_env.h"

static cluster_env g;

static int group_setup(void **state)
{
    return cluster_env_load(&g);
}

/* The node that is not a and not b. */
static int third(int a, int b)
{
    for (int i = 0; i < CLUSTER_NODES; i++)
        if (i != a && i != b)
            return i;
    return -1;
}

/* POST /v1/objects on node i; asserts the ref names node i as its owner. */
static void put_on(int i, const char *content_type, const void *body, size_t len, char *ref)
{
    put_object(&g.node[i], content_type, body, len, ref);
    char tag[16];
    cluster_ref_tag(ref, tag);
    if (strcmp(tag, g.tag[i]) != 0)
        fail_msg("ref %s made by node %s names owner '%s'", ref, g.tag[i], tag);
}

/* GET ref through node j: 200 with exactly these bytes and this content type. */
static void expect_bytes(int j, const char *ref, const void *body, size_t len,
                         const char *content_type)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s", ref);
    http_opts o = {.path = path, .timeout_ms = 60000};
    http_resp *r = http_request_opts(&g.node[j], &o);
    assert_status(r, 200);
    if (r->body_len != len || (len && memcmp(r->body, body, len) != 0))
        fail_msg("GET %s through node %s: %zu bytes, not the %zu put (or different bytes)", ref,
                 g.tag[j], r->body_len, len);
    if (content_type)
        assert_true(http_ct_is(r, content_type));
    char etag[80];
    snprintf(etag, sizeof(etag), "\"%s\"", ref);
    assert_string_equal(http_header_get(r, "ETag"), etag);
    http_resp_free(r);
}

/* ---- membership ---------------------------------------------------------------------- */

static void test_status_three_live_nodes(void **state)
{
    for (int i = 0; i < CLUSTER_NODES; i++) {
        http_resp *r = cluster_status(&g.node[i]);
        json_t *cluster = json_member(r->json, "cluster");
        assert_true(json_is_true(json_object_get(cluster, "joined")));
        assert_string_equal(json_str(cluster, "redis"), "connected");
        assert_string_equal(json_str(cluster, "node"), g.tag[i]);
        assert_string_equal(json_str(cluster, "url"), g.node[i].base_url);
        json_t *nodes = json_member(cluster, "nodes");
        assert_int_equal(json_array_size(nodes), CLUSTER_NODES);
        for (int k = 0; k < CLUSTER_NODES; k++) {
            json_t *n = cluster_status_node(r, g.tag[k]);
            if (!n)
                fail_msg("node %s does not list node %s", g.tag[i], g.tag[k]);
            assert_true(json_is_true(json_object_get(n, "alive")));
            assert_int_equal(json_is_true(json_object_get(n, "self")), k == i);
            assert_string_equal(json_str(n, "url"), g.node[k].base_url);
            json_t *load = json_member(n, "load");
            assert_true(json_int(load, "queued") >= 0 && json_int(load, "running") >= 0 &&
                        json_int(load, "memory") >= 0);
            assert_true(json_int(n, "epoch") > 0);
        }
        http_resp_free(r);
        r = http_get(&g.node[i], "/readyz");
        assert_status(r, 200);
        http_resp_free(r);
    }
    assert_string_not_equal(g.tag[0], g.tag[1]);
    assert_string_not_equal(g.tag[1], g.tag[2]);
    assert_string_not_equal(g.tag[0], g.tag[2]);
}

/* ---- byte-exact reads through every other node ---------------------------------------- */

static void test_put_each_get_each_all_bytes(void **state)
{
    unsigned char all[256];
    for (int b = 0; b < 256; b++)
        all[b] = (unsigned char)b;
    for (int i = 0; i < CLUSTER_NODES; i++) {
        char ref[65], empty[65];
        put_on(i, "application/x-all-bytes", all, sizeof(all), ref);
        put_on(i, "text/plain", "", 0, empty);
        for (int j = 0; j < CLUSTER_NODES; j++) {
            expect_bytes(j, ref, all, sizeof(all), "application/x-all-bytes");
            expect_bytes(j, empty, "", 0, "text/plain");
            /* Twice: the second read comes from the node's copy. */
            expect_bytes(j, ref, all, sizeof(all), "application/x-all-bytes");
            expect_bytes(j, empty, "", 0, "text/plain");
        }
    }
}

/* size pseudo-random bytes (new, free()). */
static unsigned char *random_bytes(size_t size)
{
    unsigned char *big = malloc(size);
    assert_non_null(big);
    uint64_t x = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t k = 0; k < size; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big[k] = (unsigned char)x;
    }
    return big;
}

/* 64 MiB put on one node, read through the two others: streamed from the owner the first
 * time, from the node's own copy the second (the owner is not asked again). */
static void test_64_mib_through_other_nodes(void **state)
{
    size_t size = (size_t)64 << 20;
    unsigned char *big = random_bytes(size);
    char ref[65];
    put_on(1, "application/octet-stream", big, size, ref);
    for (int j = 0; j < CLUSTER_NODES; j++) {
        if (j == 1)
            continue;
        long long copies = cluster_store_stat(&g.node[j], "copy_bytes");
        expect_bytes(j, ref, big, size, "application/octet-stream");
        if (cluster_store_stat(&g.node[j], "copy_bytes") < copies + (long long)size)
            fail_msg("node %s kept no copy of the 64 MiB object", g.tag[j]);
        long long owner_hits = cluster_store_stat(&g.node[1], "hits");
        expect_bytes(j, ref, big, size, "application/octet-stream");
        assert_int_equal(cluster_store_stat(&g.node[1], "hits"), owner_hits);
    }
    free(big);
}

/* Sends GET path to node j, reads `want` bytes of the answer and closes the connection:
 * a client that goes away in the middle of a relayed object. */
static void get_and_leave(int j, const char *path, size_t want)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.node[j].port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    char req[256], buf[65536];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    size_t got = 0;
    while (got < want) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0)
            fail_msg("node %s closed a relayed GET after %zu bytes", g.tag[j], got);
        got += (size_t)r;
    }
    close(fd);
}

/* One byte over the size a relay keeps as a copy (API_FORWARD_COPY_MAX, api/forward.h):
 * the object passes through the peer client's bounded window, byte for byte, and is not
 * kept (the next read asks the owner again); a Range of it is relayed; a client that
 * leaves in the middle (the transfer from the owner paused on a full window, or not) stops
 * the relay, and the node goes on relaying. */
static void test_over_copy_max_through_window(void **state)
{
    size_t size = ((size_t)64 << 20) + 1;
    unsigned char *big = random_bytes(size);
    char ref[65], path[128];
    put_on(0, "application/x-big", big, size, ref);
    snprintf(path, sizeof(path), "/v1/objects/%s", ref);
    for (int j = 1; j < CLUSTER_NODES; j++) {
        long long copies = cluster_store_stat(&g.node[j], "copies");
        long long copy_bytes = cluster_store_stat(&g.node[j], "copy_bytes");
        for (int round = 0; round < 2; round++) {
            long long owner_hits = cluster_store_stat(&g.node[0], "hits");
            expect_bytes(j, ref, big, size, "application/x-big");
            if (cluster_store_stat(&g.node[0], "hits") <= owner_hits)
                fail_msg("read %d through node %s did not ask the owner", round + 1, g.tag[j]);
        }
        assert_int_equal(cluster_store_stat(&g.node[j], "copies"), copies);
        assert_int_equal(cluster_store_stat(&g.node[j], "copy_bytes"), copy_bytes);

        const char *range[] = {"Range: bytes=1000000-2999999", NULL};
        http_resp *r = http_request(&g.node[j], "GET", path, range, NULL, 0);
        assert_status(r, 206);
        assert_int_equal(r->body_len, 2000000);
        assert_memory_equal(r->body, big + 1000000, 2000000);
        http_resp_free(r);

        get_and_leave(j, path, (size_t)1 << 20);
        expect_bytes(j, ref, big, size, "application/x-big");
    }
    free(big);
}

/* ---- HEAD, meta, 304, Range through a node that does not own the object ----------------- */

static void check_head_etag_range(int j, const char *ref, const unsigned char *body)
{
    char path[128], etag[80];
    snprintf(path, sizeof(path), "/v1/objects/%s", ref);
    snprintf(etag, sizeof(etag), "\"%s\"", ref);

    http_resp *r = http_head(&g.node[j], path);
    assert_status(r, 200);
    assert_int_equal(r->body_len, 0);
    assert_string_equal(http_header_get(r, "Content-Length"), "1000");
    assert_string_equal(http_header_get(r, "ETag"), etag);
    assert_true(http_ct_is(r, "application/x-thousand"));
    http_resp_free(r);

    char inm[100];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    const char *h304[] = {inm, NULL};
    r = http_request(&g.node[j], "GET", path, h304, NULL, 0);
    assert_status(r, 304);
    assert_int_equal(r->body_len, 0);
    assert_string_equal(http_header_get(r, "ETag"), etag);
    http_resp_free(r);

    const char *range[] = {"Range: bytes=100-199", NULL};
    r = http_request(&g.node[j], "GET", path, range, NULL, 0);
    assert_status(r, 206);
    assert_int_equal(r->body_len, 100);
    assert_memory_equal(r->body, body + 100, 100);
    assert_string_equal(http_header_get(r, "Content-Range"), "bytes 100-199/1000");
    http_resp_free(r);

    const char *suffix[] = {"Range: bytes=-10", NULL};
    r = http_request(&g.node[j], "GET", path, suffix, NULL, 0);
    assert_status(r, 206);
    assert_int_equal(r->body_len, 10);
    assert_memory_equal(r->body, body + 990, 10);
    http_resp_free(r);

    const char *outside[] = {"Range: bytes=5000-", NULL};
    r = http_request(&g.node[j], "GET", path, outside, NULL, 0);
    assert_problem(r, 416, "RangeNotSatisfiable");
    assert_string_equal(http_header_get(r, "Content-Range"), "bytes */1000");
    http_resp_free(r);
}

static void test_head_meta_etag_range(void **state)
{
    unsigned char body[1000];
    for (int k = 0; k < 1000; k++)
        body[k] = (unsigned char)(k * 7 + 3);
    char ref[65];
    put_on(0, "application/x-thousand", body, sizeof(body), ref);
    int j = 2;
    long long copies = cluster_store_stat(&g.node[j], "copies");

    /* Relayed: none of these makes a copy. */
    check_head_etag_range(j, ref, body);
    assert_int_equal(cluster_store_stat(&g.node[j], "copies"), copies);

    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s/meta", ref);
    http_resp *owner = http_get(&g.node[0], path);
    http_resp *other = http_get(&g.node[j], path);
    assert_status(owner, 200);
    assert_status(other, 200);
    assert_true(json_equal(owner->json, other->json));
    assert_string_equal(json_str(other->json, "ref"), ref);
    assert_int_equal(json_int(other->json, "size"), 1000);
    http_resp_free(owner);
    http_resp_free(other);

    /* A whole GET keeps a copy; then the same answers come from it. */
    expect_bytes(j, ref, body, sizeof(body), "application/x-thousand");
    assert_int_equal(cluster_store_stat(&g.node[j], "copies"), copies + 1);
    check_head_etag_range(j, ref, body);
}

/* ---- waiting and errors through the owner --------------------------------------------- */

static void test_pending_relayed(void **state)
{
    http_resp *r = http_post_json(&g.node[0], "/v1/tasks", "{\"function\":\"sleep\",\"args\":[1]}");
    assert_status(r, 202);
    char ref[65];
    snprintf(ref, sizeof(ref), "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=0", ref);
    r = http_get(&g.node[1], path);
    assert_status(r, 202);
    assert_string_equal(json_str(r->json, "state"), "pending");
    assert_string_equal(http_header_get(r, "Retry-After"), "1");
    http_resp_free(r);
    /* A long-poll through another node waits at the owner and gets the value. */
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=20", ref);
    double t0 = now_s();
    r = http_get(&g.node[2], path);
    assert_status(r, 200);
    assert_true(http_ct_is(r, "application/json"));
    assert_true(json_is_number(r->json));
    assert_true(now_s() - t0 < 15);
    http_resp_free(r);
}

static void test_error_relayed(void **state)
{
    http_resp *r = http_post_json(&g.node[1], "/v1/tasks",
                                  "{\"function\":\"fail\",\"args\":[\"on purpose\"]}");
    assert_status(r, 202);
    char ref[65], path[128];
    snprintf(ref, sizeof(ref), "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=20", ref);
    http_resp *owner = http_get(&g.node[1], path);
    http_resp *other = http_get(&g.node[0], path);
    assert_int_equal(owner->status, 424);
    assert_int_equal(other->status, 424);
    assert_true(http_ct_is(other, "application/problem+json"));
    assert_true(json_equal(owner->json, other->json));
    http_resp_free(owner);
    http_resp_free(other);
}

/* ---- DELETE through a node that does not own the object -------------------------------- */

static void expect_lost(int j, const char *ref)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s", ref);
    http_resp *r = http_get(&g.node[j], path);
    assert_problem(r, 410, "ObjectLost");
    http_resp_free(r);
}

static void test_delete_through_non_owner(void **state)
{
    for (int owner = 0; owner < CLUSTER_NODES; owner++) {
        int via = (owner + 1) % CLUSTER_NODES, other = third(owner, via);
        char ref[65], path[128];
        put_on(owner, "text/plain", "to be freed", 11, ref);
        /* Both other nodes hold a copy before the DELETE. */
        expect_bytes(via, ref, "to be freed", 11, "text/plain");
        expect_bytes(other, ref, "to be freed", 11, "text/plain");
        long long copies = cluster_store_stat(&g.node[other], "copies");
        snprintf(path, sizeof(path), "/v1/objects/%s", ref);
        http_resp *r = http_delete(&g.node[via], path);
        assert_status(r, 204);
        http_resp_free(r);
        assert_int_equal(cluster_store_stat(&g.node[other], "copies"), copies - 1);
        for (int j = 0; j < CLUSTER_NODES; j++)
            expect_lost(j, ref);
        r = http_delete(&g.node[other], path);
        assert_problem(r, 410, "ObjectLost");
        http_resp_free(r);
    }
}

/* ---- refs no node owns ----------------------------------------------------------------- */

static void test_unknown_owner_is_404(void **state)
{
    http_resp *r = http_get(&g.node[0], "/v1/objects/oZZZZZZ-0123456789abcdefghijkl");
    assert_problem(r, 404, "NotFound");
    assert_string_equal(json_str(r->json, "owner"), "ZZZZZZ");
    assert_non_null(strstr(json_str(r->json, "detail"), "no node"));
    http_resp_free(r);
    /* A ref with a live owner's tag that the owner never made: the owner's 404. */
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/o%s-0123456789abcdefghijkl", g.tag[1]);
    r = http_get(&g.node[0], path);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
}

/* ---- through nginx, round-robin ------------------------------------------------------ */

static void test_put_get_through_nginx(void **state)
{
    for (int k = 0; k < 12; k++) {
        char body[64], ref[65], path[128];
        int len = snprintf(body, sizeof(body), "through nginx %d", k);
        put_object(&g.lb, "text/plain", body, (size_t)len, ref);
        snprintf(path, sizeof(path), "/v1/objects/%s", ref);
        for (int n = 0; n < 6; n++) {
            http_resp *r = http_get(&g.lb, path);
            assert_status(r, 200);
            assert_int_equal(r->body_len, (size_t)len);
            assert_memory_equal(r->body, body, (size_t)len);
            http_resp_free(r);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_three_live_nodes),
        cmocka_unit_test(test_put_each_get_each_all_bytes),
        cmocka_unit_test(test_64_mib_through_other_nodes),
        cmocka_unit_test(test_over_copy_max_through_window),
        cmocka_unit_test(test_head_meta_etag_range),
        cmocka_unit_test(test_pending_relayed),
        cmocka_unit_test(test_error_relayed),
        cmocka_unit_test(test_delete_through_non_owner),
        cmocka_unit_test(test_unknown_owner_is_404),
        cmocka_unit_test(test_put_get_through_nginx),
    };
    return cmocka_run_group_tests_name("cluster/objects", tests, group_setup, NULL);
}
