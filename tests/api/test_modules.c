/* API tests of C modules (runtime/module.c) against the real rayd binary: the example module
 * examples/modules/text.c loaded with --module or RAYD_MODULES, its functions listed with
 * kind "module" and run through POST /v1/tasks, its class text.Buffer used through
 * /v1/actors (and an object it puts served by GET /v1/objects), and modules refused at
 * start-up (no such file, no init function, no version constant, another ABI version, a
 * failing init, a name clash, loaded twice): exit 2 with one line on stderr naming the
 * module.
 *
 * The example module is $RAYD_BIN's folder + /examples/modules/text.so (make examples
 * builds it; make api-test does first). The refused modules are compiled into a temporary
 * folder with $CC (default cc), including runtime/rayd_module.h from the current folder,
 * which must be the repository (as for the default RAYD_BIN). */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"

static rayd_server g_main;   /* --module text.so */
static char g_text_so[4096]; /* the example module */
static char g_tmp[64];       /* the refused modules' folder */

#define ID TK_ID_SIZE

/* The refused modules: file stem and source. */
static const struct {
    const char *stem;
    const char *source;
} BAD_MODULES[] = {
    {"noinit", "const unsigned rayd_module_abi_version = 1;\n"
               "int not_init(void);\n"
               "int not_init(void) { return 0; }\n"},
    {"noabi", "int rayd_module_init(const void *api, void *module);\n"
              "int rayd_module_init(const void *api, void *module) { return 0; }\n"},
    {"badversion", "const unsigned rayd_module_abi_version = 999;\n"
                   "int rayd_module_init(const void *api, void *module);\n"
                   "int rayd_module_init(const void *api, void *module) { return 0; }\n"},
    {"initfails", "#include \"rayd_module.h\"\n"
                  "RAYD_MODULE_DEFINE_ABI_VERSION;\n"
                  "int rayd_module_init(const rayd_api *api, rayd_module *module)\n"
                  "{ return api->abi_version == RAYD_MODULE_ABI_VERSION ? 7 : 8; }\n"},
    {"clash", "#include \"rayd_module.h\"\n"
              "RAYD_MODULE_DEFINE_ABI_VERSION;\n"
              "static void f(rayd_call *call) { (void)call; }\n"
              "int rayd_module_init(const rayd_api *api, rayd_module *module)\n"
              "{\n"
              "    rayd_function_def def = {.name = \"echo\", .fn = f};\n"
              "    return api->register_function(module, &def);\n"
              "}\n"},
    {"badname", "#include \"rayd_module.h\"\n"
                "RAYD_MODULE_DEFINE_ABI_VERSION;\n"
                "static void f(rayd_call *call) { (void)call; }\n"
                "int rayd_module_init(const rayd_api *api, rayd_module *module)\n"
                "{\n"
                "    rayd_function_def def = {.name = \"bad name!\", .fn = f};\n"
                "    api->register_function(module, &def); /* ignored: refused anyway */\n"
                "    return 0;\n"
                "}\n"},
};
#define N_BAD (sizeof(BAD_MODULES) / sizeof(BAD_MODULES[0]))

/* ---------------------------------------------------------------- helpers */

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay ? hay : "(null)", needle);
}

/* POST path with a JSON body and Prefer: wait=10. */
static http_resp *post_wait(const char *path, const char *body)
{
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=10", NULL};
    return http_request(&g_main, "POST", path, h, body, strlen(body));
}

/* Runs a task synchronously and asserts its JSON result. */
static void run_expect(const char *body, const char *want_json)
{
    http_resp *r = post_wait("/v1/tasks", body);
    if (r->status != 200)
        fail_msg("%s answered %ld: %.300s", body, r->status, r->body);
    tk_assert_json_eq(r->json, want_json);
    http_resp_free(r);
}

/* Runs a task synchronously and asserts it failed with a detail containing `detail`. */
static void run_fails(const char *body, const char *detail)
{
    http_resp *r = post_wait("/v1/tasks", body);
    assert_problem(r, 424, "TaskError");
    assert_contains(json_str(r->json, "detail"), detail);
    http_resp_free(r);
}

/* Calls a method synchronously; returns the response (free it). */
static http_resp *call_method(const char *actor, const char *method, const char *body)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/%s", actor, method);
    return post_wait(path, body);
}

static void call_expect(const char *actor, const char *method, const char *body,
                        const char *want_json)
{
    http_resp *r = call_method(actor, method, body);
    if (r->status != 200)
        fail_msg("%s.%s(%s) answered %ld: %.300s", actor, method, body, r->status, r->body);
    tk_assert_json_eq(r->json, want_json);
    http_resp_free(r);
}

/* The member of list (an array of objects) whose "name" is name, or NULL. Borrowed. */
static json_t *by_name(json_t *list, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n && strcmp(n, name) == 0)
            return v;
    }
    return NULL;
}

/* Compiles BAD_MODULES into g_tmp. 0 or -1 (after printing why). */
static int build_bad_modules(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rayd-modules-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return -1;
    }
    if (access("runtime/rayd_module.h", R_OK) != 0) {
        fprintf(stderr, "runtime/rayd_module.h not found: run from the repository\n");
        return -1;
    }
    const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
    for (size_t i = 0; i < N_BAD; i++) {
        char src[256], cmd[1024];
        snprintf(src, sizeof src, "%s/%s.c", g_tmp, BAD_MODULES[i].stem);
        FILE *f = fopen(src, "w");
        if (!f || fputs(BAD_MODULES[i].source, f) < 0 || fclose(f) != 0) {
            perror(src);
            return -1;
        }
        snprintf(cmd, sizeof cmd, "%s -shared -fPIC -Iruntime -o %s/%s.so %s", cc, g_tmp,
                 BAD_MODULES[i].stem, src);
        if (system(cmd) != 0) {
            fprintf(stderr, "cannot build a test module: %s\n", cmd);
            return -1;
        }
    }
    return 0;
}

static void remove_bad_modules(void)
{
    if (!*g_tmp)
        return;
    for (size_t i = 0; i < N_BAD; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s.c", g_tmp, BAD_MODULES[i].stem);
        unlink(path);
        snprintf(path, sizeof path, "%s/%s.so", g_tmp, BAD_MODULES[i].stem);
        unlink(path);
    }
    rmdir(g_tmp);
}

static int group_setup(void **state)
{
    char bin[4096];
    snprintf(bin, sizeof bin, "%s", rayd_bin());
    snprintf(g_text_so, sizeof g_text_so, "%s/examples/modules/text.so", dirname(bin));
    if (access(g_text_so, R_OK) != 0) {
        fprintf(stderr, "%s is missing: build it with make examples\n", g_text_so);
        return -1;
    }
    if (build_bad_modules() != 0) {
        remove_bad_modules();
        return -1;
    }
    const char *args[] = {"--module", g_text_so, "--workers", "4", NULL};
    if (rayd_start(&g_main, args, NULL) != 0) {
        remove_bad_modules();
        return -1;
    }
    return 0;
}

static int g_teardown_failed; /* cmocka 1.1.5 does not count a failed group teardown */

static int group_teardown(void **state)
{
    int st = rayd_stop(&g_main);
    remove_bad_modules();
    if (st != 0) {
        fprintf(stderr, "rayd exited %d (want 0)\n", st);
        g_teardown_failed = 1;
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- listing */

/* /v1/status lists the modules this server loaded: file name, path, functions, classes. */
static void test_status_lists_modules(void **state)
{
    http_resp *r = http_get(&g_main, "/v1/status");
    assert_status(r, 200);
    json_t *modules = json_member(r->json, "modules");
    assert_int_equal(json_array_size(modules), 1);
    json_t *m = json_array_get(modules, 0);
    assert_string_equal(json_str(m, "name"), "text.so");
    assert_string_equal(json_str(m, "path"), g_text_so);
    json_t *functions = json_member(m, "functions");
    assert_int_equal(json_array_size(functions), 3);
    const char *names[] = {"text.upper", "text.words", "text.count"}; /* as registered */
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(json_string_value(json_array_get(functions, i)), names[i]);
    json_t *classes = json_member(m, "classes");
    assert_int_equal(json_array_size(classes), 1);
    assert_string_equal(json_string_value(json_array_get(classes, 0)), "text.Buffer");
    assert_null(json_object_get(r->json, "cluster")); /* a node alone */
    http_resp_free(r);

    /* a server without modules says so: an empty list */
    rayd_server plain;
    const char *args[] = {"--workers", "1", NULL};
    assert_int_equal(rayd_start(&plain, args, NULL), 0);
    r = http_get(&plain, "/v1/status");
    assert_status(r, 200);
    modules = json_member(r->json, "modules");
    assert_true(json_is_array(modules));
    assert_int_equal(json_array_size(modules), 0);
    http_resp_free(r);
    assert_int_equal(rayd_stop(&plain), 0);
}

static void test_functions_listed(void **state)
{
    http_resp *r = http_get(&g_main, "/v1/functions");
    assert_status(r, 200);
    json_t *list = json_member(r->json, "functions");
    const char *names[] = {"text.upper", "text.words", "text.count"};
    for (size_t i = 0; i < 3; i++) {
        json_t *fn = by_name(list, names[i]);
        if (!fn)
            fail_msg("%s is not in /v1/functions", names[i]);
        assert_string_equal(json_str(fn, "kind"), "module");
        assert_true(strlen(json_str(fn, "description")) > 10);
        assert_contains(json_str(fn, "args"), "text");
    }
    json_t *echo = by_name(list, "echo");
    assert_non_null(echo);
    assert_string_equal(json_str(echo, "kind"), "builtin");
    http_resp_free(r);

    r = http_get(&g_main, "/v1/functions/text.count");
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "kind"), "module");
    assert_string_equal(json_str(r->json, "returns"), "object: word -> count");
    http_resp_free(r);
}

static void test_classes_listed(void **state)
{
    http_resp *r = http_get(&g_main, "/v1/actor-classes");
    assert_status(r, 200);
    json_t *cls = by_name(json_member(r->json, "classes"), "text.Buffer");
    if (!cls)
        fail_msg("text.Buffer is not in /v1/actor-classes");
    assert_string_equal(json_str(cls, "kind"), "module");
    json_t *methods = json_member(cls, "methods");
    assert_int_equal(json_array_size(methods), 4);
    const char *names[] = {"append", "read", "clear", "save"};
    for (size_t i = 0; i < 4; i++)
        if (!by_name(methods, names[i]))
            fail_msg("text.Buffer has no method %s listed", names[i]);
    assert_string_equal(json_str(by_name(json_member(r->json, "classes"), "Counter"), "kind"),
                        "builtin");
    http_resp_free(r);
}

/* ---------------------------------------------------------------- functions */

static void test_functions_run(void **state)
{
    run_expect("{\"function\":\"text.upper\",\"args\":[\"Hello, wörld 42\"]}",
               "\"HELLO, WöRLD 42\"");
    run_expect("{\"function\":\"text.words\",\"args\":[\"Don't stop -- 'tis café, naïve!\"]}",
               "[\"Don't\",\"stop\",\"tis\",\"café\",\"naïve\"]");
    run_expect("{\"function\":\"text.words\",\"args\":[\"\"]}", "[]");
    run_expect("{\"function\":\"text.words\",\"args\":[\"A b\"],\"kwargs\":{\"lower\":true}}",
               "[\"a\",\"b\"]");
    run_expect("{\"function\":\"text.count\",\"args\":[\"the cat and The hat\"]}",
               "{\"the\":1,\"cat\":1,\"and\":1,\"The\":1,\"hat\":1}");
    run_expect("{\"function\":\"text.count\",\"args\":[\"the cat and The hat\"],"
               "\"kwargs\":{\"lower\":true}}",
               "{\"the\":2,\"cat\":1,\"and\":1,\"hat\":1}");
    /* Chained: a module function's result passed by ref to a built-in. */
    char tid[ID], ref[ID];
    tk_submit(&g_main, "{\"function\":\"text.words\",\"args\":[\"one two three\"]}", tid, ref);
    char body[256];
    snprintf(body, sizeof body, "{\"function\":\"len\",\"args\":[{\"$ref\":\"%s\"}]}", ref);
    run_expect(body, "3");
    /* The task records the module function like any other. */
    json_t *info = tk_wait_ended(&g_main, tid, 10);
    assert_string_equal(json_str(info, "state"), "FINISHED");
    assert_string_equal(json_str(info, "function"), "text.words");
    json_decref(info);
}

static void test_function_errors(void **state)
{
    run_fails("{\"function\":\"text.upper\",\"args\":[\"a\",\"b\"]}",
              "text.upper takes 1 argument, got 2");
    run_fails("{\"function\":\"text.upper\"}", "text.upper takes 1 argument, got 0");
    run_fails("{\"function\":\"text.upper\",\"args\":[12]}",
              "text.upper: the text must be a string or a $bytes value");
    run_fails("{\"function\":\"text.words\",\"args\":[\"a\"],\"kwargs\":{\"upper\":true}}",
              "text.words: unknown keyword argument 'upper'");
    run_fails("{\"function\":\"text.count\",\"args\":[\"a\"],\"kwargs\":{\"lower\":1}}",
              "text.count: lower must be true or false");
}

/* An object passed by ref reaches the module as $bytes; bytes come back as bytes. */
static void test_bytes_by_ref(void **state)
{
    const char text[] = "to be or not to be";
    char ref[ID];
    put_object(&g_main, "text/plain", text, strlen(text), ref);
    char body[256];
    snprintf(body, sizeof body, "{\"function\":\"text.upper\",\"args\":[{\"$ref\":\"%s\"}]}", ref);
    http_resp *r = post_wait("/v1/tasks", body);
    assert_status(r, 200);
    assert_true(http_ct_is(r, "text/plain"));
    assert_int_equal(r->body_len, strlen(text));
    assert_memory_equal(r->body, "TO BE OR NOT TO BE", strlen(text));
    http_resp_free(r);

    snprintf(body, sizeof body, "{\"function\":\"text.count\",\"args\":[{\"$ref\":\"%s\"}]}", ref);
    run_expect(body, "{\"to\":2,\"be\":2,\"or\":1,\"not\":1}");

    /* Bytes that are not UTF-8 are refused with a message, not mangled. */
    put_object(&g_main, "application/octet-stream", "ab\xff\xfe cd", 7, ref);
    snprintf(body, sizeof body, "{\"function\":\"text.words\",\"args\":[{\"$ref\":\"%s\"}]}", ref);
    run_fails(body, "not valid UTF-8");
}

/* ---------------------------------------------------------------- the class */

static void create_buffer(const char *body, char *id)
{
    http_resp *r = http_post_json(&g_main, "/v1/actors", body);
    assert_status(r, 201);
    assert_string_equal(json_str(r->json, "class"), "text.Buffer");
    snprintf(id, ID, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
}

static void test_buffer_actor(void **state)
{
    char id[ID];
    create_buffer("{\"class\":\"text.Buffer\",\"args\":[\"hi \"]}", id);
    call_expect(id, "append", "{\"args\":[\"there\"]}", "8");
    call_expect(id, "read", "{}", "\"hi there\"");

    /* save puts an object through the module API: GET serves it. */
    http_resp *r = call_method(id, "save", "{}");
    assert_status(r, 200);
    char ref[ID];
    snprintf(ref, sizeof ref, "%s", json_str(r->json, "$ref"));
    assert_true(is_valid_ref(ref));
    http_resp_free(r);
    r = tk_getf(&g_main, "/v1/objects/%s", ref);
    assert_status(r, 200);
    assert_true(http_ct_is(r, "text/plain"));
    assert_contains(http_header_get(r, "Content-Type"), "charset=utf-8");
    assert_int_equal(r->body_len, 8);
    assert_memory_equal(r->body, "hi there", 8);
    http_resp_free(r);
    /* ... and a task takes it as an argument. */
    char body[256];
    snprintf(body, sizeof body, "{\"function\":\"text.count\",\"args\":[{\"$ref\":\"%s\"}]}", ref);
    run_expect(body, "{\"hi\":1,\"there\":1}");

    call_expect(id, "clear", "{}", "8");
    call_expect(id, "read", "{}", "\"\"");
    call_expect(id, "append", "{\"args\":[\"again\"]}", "5");

    /* A failed method leaves the state as it was; the actor lives on. */
    r = call_method(id, "append", "{\"args\":[1,2]}");
    assert_problem(r, 424, "TaskError");
    assert_contains(json_str(r->json, "detail"), "append takes 1 argument, got 2");
    http_resp_free(r);
    call_expect(id, "read", "{}", "\"again\"");

    /* An unknown method is refused at the call. */
    r = call_method(id, "nope", "{}");
    assert_true(r->status == 404 || r->status == 400);
    http_resp_free(r);

    r = tk_getf(&g_main, "/v1/actors/%s", id);
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "state"), "ALIVE");
    http_resp_free(r);
    char path[128];
    snprintf(path, sizeof path, "/v1/actors/%s", id);
    r = http_delete(&g_main, path); /* destroy runs on the module's state */
    assert_status(r, 204);
    http_resp_free(r);
}

/* A constructor that fails kills the actor, with the module's message. */
static void test_buffer_constructor_fails(void **state)
{
    char id[ID];
    create_buffer("{\"class\":\"text.Buffer\",\"args\":[[1]]}", id);
    double deadline = now_s() + 10;
    for (;;) {
        http_resp *r = tk_getf(&g_main, "/v1/actors/%s", id);
        assert_status(r, 200);
        if (strcmp(json_str(r->json, "state"), "DEAD") == 0) {
            assert_contains(json_str(json_member(r->json, "death_cause"), "detail"),
                            "text.Buffer: the text must be a string or a $bytes value");
            http_resp_free(r);
            break;
        }
        http_resp_free(r);
        if (now_s() > deadline)
            fail_msg("the actor whose constructor failed is not DEAD");
        sleep_s(0.01);
    }
    http_resp *r = call_method(id, "read", "{}");
    assert_problem(r, 410, "ActorDied");
    http_resp_free(r);
}

/* ---------------------------------------------------------------- configuration */

/* Starts rayd with env, checks that text.upper runs, stops it. */
static void start_and_check(const char *const *args, const char *const *env)
{
    rayd_server s;
    assert_int_equal(rayd_start(&s, args, env), 0);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=10", NULL};
    const char *body = "{\"function\":\"text.upper\",\"args\":[\"env\"]}";
    http_resp *r = http_request(&s, "POST", "/v1/tasks", h, body, strlen(body));
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "\"ENV\"");
    http_resp_free(r);
    assert_int_equal(rayd_stop(&s), 0);
}

static void test_env_list(void **state)
{
    char env[8192];
    snprintf(env, sizeof env, "RAYD_MODULES=:%s:", g_text_so); /* empty parts skipped */
    const char *const envs[] = {env, NULL};
    start_and_check(NULL, envs);
}

static void test_flags_replace_env(void **state)
{
    const char *const envs[] = {"RAYD_MODULES=/nonexistent/ignored.so", NULL};
    const char *const args[] = {"--module", g_text_so, NULL};
    start_and_check(args, envs);
}

/* Runs rayd with args (after --bind/--port) and env; asserts exit 2, exactly one line on
 * stderr containing every needle, and no listening. Returns 0, or 1 after printing why. */
static int expect_refused(const char *const *extra, const char *env, const char *needle1,
                          const char *needle2)
{
    const char *args[16] = {"--bind", "127.0.0.1", "--port", "0"};
    size_t n = 4;
    for (size_t i = 0; extra && extra[i] && n < 15; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    const char *envs[] = {env, NULL};
    char *out = NULL, *err = NULL;
    int st = rayd_run(args, envs, 10.0, &out, &err);
    size_t len = strlen(err);
    char *nl = strchr(err, '\n');
    int bad = 1;
    if (st != 2)
        fprintf(stderr, "FAIL: [%s] exited %d, wanted 2 (stderr: %.500s)\n", needle1, st, err);
    else if (len == 0 || !nl || nl != err + len - 1)
        fprintf(stderr, "FAIL: [%s] stderr is not exactly one line: \"%s\"\n", needle1, err);
    else if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
        fprintf(stderr, "FAIL: stderr \"%s\" does not say \"%s\" and \"%s\"\n", err, needle1,
                needle2 ? needle2 : "");
    else if (strstr(out, "\"event\":\"listening\""))
        fprintf(stderr, "FAIL: [%s] started listening\n", needle1);
    else
        bad = 0;
    free(out);
    free(err);
    return bad;
}

static void test_bad_modules_exit_2(void **state)
{
    static const struct {
        const char *stem;
        const char *says;
    } cases[] = {
        {"noinit", "no rayd_module_init"},
        {"noabi", "no rayd_module_abi_version"},
        {"badversion", "version 999"},
        {"initfails", "returned 7"},
        {"clash", "'echo' is already registered"},
        {"badname", "'bad name!'"},
    };
    _Static_assert(sizeof cases / sizeof cases[0] == N_BAD, "a case per bad module");
    int failures = 0;
    for (size_t i = 0; i < N_BAD; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s.so", g_tmp, cases[i].stem);
        const char *args[] = {"--module", path, NULL};
        failures += expect_refused(args, NULL, path, cases[i].says);
    }
    /* A module after a good one is refused too (by the variable as well). */
    char env[8192], bad[256];
    snprintf(bad, sizeof bad, "%s/clash.so", g_tmp);
    snprintf(env, sizeof env, "RAYD_MODULES=%s:%s", g_text_so, bad);
    failures += expect_refused(NULL, env, bad, "already registered");
    /* No such file. */
    const char *missing[] = {"--module", "/nonexistent/rayd-module.so", NULL};
    failures += expect_refused(missing, NULL, "/nonexistent/rayd-module.so", "cannot load");
    /* Not a shared object. */
    const char *not_so[] = {"--module", "runtime/rayd_module.h", NULL};
    failures += expect_refused(not_so, NULL, "runtime/rayd_module.h", "cannot load");
    /* The same module twice. */
    const char *twice[] = {"--module", g_text_so, "--module", g_text_so, NULL};
    failures += expect_refused(twice, NULL, g_text_so, "already loaded");
    /* An empty flag value. */
    const char *empty[] = {"--module=", NULL};
    failures += expect_refused(empty, NULL, "--module", "empty");
    if (failures)
        fail_msg("%d bad module(s) not refused as they should be (listed above)", failures);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_lists_modules),
        cmocka_unit_test(test_functions_listed),
        cmocka_unit_test(test_classes_listed),
        cmocka_unit_test(test_functions_run),
        cmocka_unit_test(test_function_errors),
        cmocka_unit_test(test_bytes_by_ref),
        cmocka_unit_test(test_buffer_actor),
        cmocka_unit_test(test_buffer_constructor_fails),
        cmocka_unit_test(test_env_list),
        cmocka_unit_test(test_flags_replace_env),
        cmocka_unit_test(test_bad_modules_exit_2),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return failed ? failed : g_teardown_failed;
}
