/* Tests api/json_plain.c against jansson: whatever the quick parser accepts must be the tree
 * json_loadb(JSON_REJECT_DUPLICATES) builds, members in the same order; what is not plain
 * JSON, and every error, must be left to jansson (NULL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "api/json_plain.h"

/* The quick parse of text is jansson's, dumped alike (order kept). */
static void assert_same_as_jansson(const char *text)
{
    json_t *quick = api_json_plain_parse(text, strlen(text));
    json_t *slow = json_loadb(text, strlen(text), JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(quick);
    assert_non_null(slow);
    char *a = json_dumps(quick, JSON_COMPACT | JSON_ENCODE_ANY);
    char *b = json_dumps(slow, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_string_equal(a, b);
    assert_true(json_equal(quick, slow));
    free(a);
    free(b);
    json_decref(quick);
    json_decref(slow);
}

static void assert_left_to_jansson(const char *text)
{
    json_t *quick = api_json_plain_parse(text, strlen(text));
    if (quick)
        fail_msg("parsed what it should leave to jansson: %s", text);
}

static void test_plain_bodies(void **state)
{
    (void)state;
    assert_same_as_jansson("{\"function\":\"echo\",\"args\":[1]}");
    assert_same_as_jansson("{\"args\":[1]}");
    assert_same_as_jansson("{}");
    assert_same_as_jansson("[]");
    assert_same_as_jansson(" \t\r\n{ \"a\" : [ 1 , -2 , 0 , -0 , true , false , null ] }\n ");
    assert_same_as_jansson("{\"z\":1,\"a\":2,\"m\":{\"y\":[],\"b\":{}}}");
    assert_same_as_jansson("{\"\":\"\"}");
    assert_same_as_jansson("[\"x y ~!@#$%^&*()\",123456789012345678,-123456789012345678]");
    assert_same_as_jansson("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    assert_same_as_jansson("{\"function\":\"add\",\"args\":[{\"$ref\":\"oAbc\"},2],"
                           "\"kwargs\":{\"k\":\"v\"},\"num_returns\":1}");
}

static void test_left_to_jansson(void **state)
{
    (void)state;
    /* not plain: jansson decides */
    assert_left_to_jansson("{\"a\":\"\\n\"}");
    assert_left_to_jansson("{\"a\\u0041\":1}");
    assert_left_to_jansson("{\"a\":\"\xc3\xa9\"}");
    assert_left_to_jansson("{\"a\":1.5}");
    assert_left_to_jansson("{\"a\":1e3}");
    assert_left_to_jansson("[1234567890123456789]"); /* 19 digits */
    assert_left_to_jansson("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    /* errors: jansson's message is the answer */
    assert_left_to_jansson("{\"a\":1,\"a\":2}");
    assert_left_to_jansson("1");
    assert_left_to_jansson("\"s\"");
    assert_left_to_jansson("");
    assert_left_to_jansson("   ");
    assert_left_to_jansson("{");
    assert_left_to_jansson("{\"a\"}");
    assert_left_to_jansson("{\"a\":}");
    assert_left_to_jansson("{\"a\":1,}");
    assert_left_to_jansson("[1,]");
    assert_left_to_jansson("[01]");
    assert_left_to_jansson("[-]");
    assert_left_to_jansson("[-01]");
    assert_left_to_jansson("[tru]");
    assert_left_to_jansson("[truex]");
    assert_left_to_jansson("[nul]");
    assert_left_to_jansson("{} {}");
    assert_left_to_jansson("{}x");
    assert_left_to_jansson("{1:2}");
    assert_left_to_jansson("[\"abc]");
    assert_left_to_jansson("[\"a\x01\"]");
    const char with_nul[] = "{\"a\":1}\0";
    assert_null(api_json_plain_parse(with_nul, sizeof(with_nul) - 1));
    assert_null(api_json_plain_parse("{\"a\":\"b\"}", 7)); /* cut short by len */
}

/* Random edits of plain bodies: whatever the quick parser still accepts, jansson accepts
 * and builds alike. */
static void test_mutations_agree(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "{\"function\":\"echo\",\"args\":[1,-20,true,null],\"kwargs\":{\"a\":\"b\"}}",
        "[{\"a\":[]},{\"b\":{}},\"c\",0,false]",
    };
    static const char alphabet[] = "{}[]\",:-0123456789tfnrueal \\.eE\n";
    unsigned seed = 12345;
    size_t accepted = 0;
    for (int round = 0; round < 200000; round++) {
        char text[128];
        const char *from = seeds[round % 2];
        size_t len = strlen(from);
        memcpy(text, from, len + 1);
        int edits = 1 + (int)((seed = seed * 1103515245 + 12345) >> 16) % 3;
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245 + 12345;
            size_t pos = (seed >> 16) % len;
            seed = seed * 1103515245 + 12345;
            text[pos] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
        }
        json_t *quick = api_json_plain_parse(text, len);
        json_t *slow = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        if (quick) {
            accepted++;
            if (!slow)
                fail_msg("quick parser accepted what jansson refuses: %s", text);
            char *a = json_dumps(quick, JSON_COMPACT), *b = json_dumps(slow, JSON_COMPACT);
            if (strcmp(a, b) != 0)
                fail_msg("trees differ for %s: %s vs %s", text, a, b);
            free(a);
            free(b);
        }
        json_decref(quick);
        json_decref(slow);
    }
    assert_true(accepted > 1000); /* the edits leave many bodies plain */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_bodies),
        cmocka_unit_test(test_left_to_jansson),
        cmocka_unit_test(test_mutations_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
