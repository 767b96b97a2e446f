/* text: an example rayd module, a small text library. It shows everything the module
 * interface offers: functions (text.upper, text.words, text.count) that read string or
 * $bytes arguments and keyword arguments, return JSON or bytes and poll for cancellation;
 * and an actor class (text.Buffer) with state, methods and an object put into the store.
 *
 * Build (make examples does this):
 *   cc -shared -fPIC -I. -o build/examples/modules/text.so examples/modules/text.c
 * Load:
 *   rayd --module build/examples/modules/text.so
 * Use:
 *   curl -H 'Prefer: wait=5' localhost:8080/v1/tasks \
 *        -d '{"function":"text.count","args":["the cat and the hat"]}'
 *   -> {"the":2,"cat":1,"and":1,"hat":1}
 *   Upload a text file with POST /v1/objects and pass it as {"$ref": "<ref>"}: the function
 *   receives it as a $bytes value and reads it with api->arg_bytes.
 *
 * Words: a word is a run of ASCII letters, digits, '_' and apostrophes, and of any
 * non-ASCII character (so "café" and "naïve" are words); apostrophes at the ends of a
 * word are dropped ("'tis" is "tis", "don't" stays). Everything else separates words.
 * Text must be UTF-8. Case changes (upper, lower=true) touch ASCII letters only.
 *
 * Thread-safety: the functions keep no state; a Buffer is used by one call at a time. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rayd_module.h" /* outside rayd's tree: -I<rayd>/runtime, "rayd_module.h" */

RAYD_MODULE_DEFINE_ABI_VERSION;

/* A Buffer holds at most this many bytes. */
#define BUFFER_MAX ((size_t)64 << 20)
/* Long loops check for cancellation every this many bytes. */
#define CANCEL_CHECK_BYTES ((size_t)1 << 16)

static const rayd_api *api; /* set by rayd_module_init, valid for the process */

/* ---- helpers ---------------------------------------------------------------------------- */

/* Fails the call unless every keyword argument is in allowed (NULL-terminated, may be NULL)
 * and there are between min and max positional arguments. */
static bool check_args(rayd_call *call, size_t min, size_t max, const char *const *allowed)
{
    const char *key;
    json_t *value;
    json_object_foreach(api->kwargs(call), key, value)
    {
        bool known = false;
        for (const char *const *a = allowed; a && *a && !known; a++)
            known = strcmp(*a, key) == 0;
        if (!known) {
            api->fail(call, "%s: unknown keyword argument '%.64s'", api->name(call), key);
            return false;
        }
    }
    size_t n = json_array_size(api->args(call));
    if (n < min || n > max) {
        if (min == max)
            api->fail(call, "%s takes %zu argument%s, got %zu", api->name(call), min,
                      min == 1 ? "" : "s", n);
        else
            api->fail(call, "%s takes %zu to %zu arguments, got %zu", api->name(call), min, max, n);
        return false;
    }
    return true;
}

/* Reads a string or $bytes value as text; fails the call when it is neither. */
static bool text_arg(rayd_call *call, json_t *value, const char **text, size_t *len,
                     const char **content_type)
{
    const void *data;
    if (api->arg_bytes(call, value, &data, len, content_type) != RAYD_OK) {
        api->fail(call, "%s: the text must be a string or a $bytes value", api->name(call));
        return false;
    }
    *text = data;
    return true;
}

/* A boolean keyword argument, or dflt when absent; fails the call when it is not boolean. */
static bool bool_kwarg(rayd_call *call, const char *key, bool dflt, bool *out)
{
    json_t *v = json_object_get(api->kwargs(call), key);
    if (!v) {
        *out = dflt;
        return true;
    }
    if (!json_is_boolean(v)) {
        api->fail(call, "%s: %s must be true or false", api->name(call), key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

static bool is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '\'' || c >= 0x80;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static char ascii_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* Calls visit(word, len, arg) for every word of text; visit returns false to stop (out of
 * memory). Returns false when stopped or cancelled (the call is failed then). */
static bool each_word(rayd_call *call, const char *text, size_t len,
                      bool (*visit)(const char *word, size_t n, void *arg), void *arg)
{
    size_t i = 0, next_check = CANCEL_CHECK_BYTES;
    while (i < len) {
        if (i >= next_check) {
            next_check = i + CANCEL_CHECK_BYTES;
            if (api->cancelled(call)) {
                api->fail(call, "%s: cancelled", api->name(call));
                return false;
            }
        }
        while (i < len && !is_word_byte((unsigned char)text[i]))
            i++;
        size_t start = i;
        while (i < len && is_word_byte((unsigned char)text[i]))
            i++;
        size_t end = i;
        while (start < end && text[start] == '\'')
            start++;
        while (end > start && text[end - 1] == '\'')
            end--;
        if (end > start && !visit(text + start, end - start, arg))
            return false;
    }
    return true;
}

/* What words and count collect into. */
typedef struct collect {
    rayd_call *call;
    json_t *out; /* a list (words) or an object (count) */
    bool lower;
    char *scratch; /* a lower-cased copy of the word */
    size_t scratch_cap;
} collect;

/* The word as it is kept: lower-cased when asked for. Borrowed from c or text. */
static const char *word_text(collect *c, const char *word, size_t n)
{
    if (!c->lower)
        return word;
    if (n + 1 > c->scratch_cap) {
        char *grown = realloc(c->scratch, n + 1);
        if (!grown)
            return NULL;
        c->scratch = grown;
        c->scratch_cap = n + 1;
    }
    for (size_t i = 0; i < n; i++)
        c->scratch[i] = ascii_lower(word[i]);
    c->scratch[n] = '\0';
    return c->scratch;
}

static bool add_word(const char *word, size_t n, void *arg)
{
    collect *c = arg;
    const char *w = word_text(c, word, n);
    json_t *s = w ? json_stringn(w, n) : NULL;
    if (!s) {
        api->fail(c->call, "%s: the text is not valid UTF-8 (or out of memory)",
                  api->name(c->call));
        return false;
    }
    if (json_array_append_new(c->out, s) != 0) {
        api->fail(c->call, "%s: out of memory", api->name(c->call));
        return false;
    }
    return true;
}

static bool count_word(const char *word, size_t n, void *arg)
{
    collect *c = arg;
    const char *w = word_text(c, word, n);
    /* Object keys are NUL-terminated: copy when the word is not lower-cased already. */
    char *key = w == word ? strndup(word, n) : NULL;
    const char *k = w == word ? key : w;
    bool ok = false;
    if (k) {
        json_t *have = json_object_get(c->out, k);
        if (have)
            ok = json_integer_set(have, json_integer_value(have) + 1) == 0;
        else
            ok = json_object_set_new(c->out, k, json_integer(1)) == 0;
    }
    free(key);
    if (!ok)
        api->fail(c->call, "%s: the text is not valid UTF-8 (or out of memory)",
                  api->name(c->call));
    return ok;
}

/* ---- functions -------------------------------------------------------------------------- */

/* text.upper: ["text"] -> "TEXT"; a $bytes argument gives bytes of its content type. */
static void fn_upper(rayd_call *call)
{
    const char *text, *content_type;
    size_t len;
    if (!check_args(call, 1, 1, NULL) ||
        !text_arg(call, json_array_get(api->args(call), 0), &text, &len, &content_type))
        return;
    char *out = malloc(len + 1);
    if (!out) {
        api->fail(call, "text.upper: out of memory");
        return;
    }
    for (size_t i = 0; i < len; i++)
        out[i] = ascii_upper(text[i]);
    out[len] = '\0';
    if (json_is_string(json_array_get(api->args(call), 0)))
        api->return_json(call, json_stringn(out, len));
    else
        api->return_bytes(call, out, len, content_type ? content_type : "text/plain");
    free(out);
}

/* text.words: ["text"], {lower} -> ["word", ...] */
static void fn_words(rayd_call *call)
{
    static const char *const kwargs[] = {"lower", NULL};
    const char *text;
    size_t len;
    collect c = {.call = call};
    if (!check_args(call, 1, 1, kwargs) || !bool_kwarg(call, "lower", false, &c.lower) ||
        !text_arg(call, json_array_get(api->args(call), 0), &text, &len, NULL))
        return;
    if (!(c.out = json_array())) {
        api->fail(call, "text.words: out of memory");
        return;
    }
    if (each_word(call, text, len, add_word, &c))
        api->return_json(call, c.out);
    else
        json_decref(c.out);
    free(c.scratch);
}

/* text.count: ["text"], {lower} -> {"word": count, ...} */
static void fn_count(rayd_call *call)
{
    static const char *const kwargs[] = {"lower", NULL};
    const char *text;
    size_t len;
    collect c = {.call = call};
    if (!check_args(call, 1, 1, kwargs) || !bool_kwarg(call, "lower", false, &c.lower) ||
        !text_arg(call, json_array_get(api->args(call), 0), &text, &len, NULL))
        return;
    if (!(c.out = json_object())) {
        api->fail(call, "text.count: out of memory");
        return;
    }
    if (each_word(call, text, len, count_word, &c))
        api->return_json(call, c.out);
    else
        json_decref(c.out);
    free(c.scratch);
}

/* ---- text.Buffer ------------------------------------------------------------------------ */

typedef struct buffer {
    char *data; /* UTF-8, NUL-terminated */
    size_t len, cap;
} buffer;

static void buffer_destroy(void *state)
{
    buffer *b = state;
    if (b)
        free(b->data);
    free(b);
}

/* Appends text (UTF-8 checked); fails the call and leaves b as it was on failure. */
static bool buffer_append(rayd_call *call, buffer *b, const char *text, size_t len)
{
    json_t *check = json_stringn(text, len); /* jansson refuses invalid UTF-8 */
    if (!check) {
        api->fail(call, "%s: the text is not valid UTF-8", api->name(call));
        return false;
    }
    json_decref(check);
    if (len > BUFFER_MAX - b->len) {
        api->fail(call, "%s: a Buffer holds at most %zu bytes", api->name(call), BUFFER_MAX);
        return false;
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            api->fail(call, "%s: out of memory", api->name(call));
            return false;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, text, len);
    b->len += len;
    b->data[b->len] = '\0';
    return true;
}

/* text.Buffer: [initial: string = ""] */
static void buffer_new(void **state, rayd_call *call)
{
    if (!check_args(call, 0, 1, NULL))
        return;
    buffer *b = calloc(1, sizeof(*b));
    if (!b) {
        api->fail(call, "text.Buffer: out of memory");
        return;
    }
    *state = b; /* destroy frees it whatever happens next */
    const char *text = "";
    size_t len = 0;
    json_t *initial = json_array_get(api->args(call), 0);
    if (initial && !text_arg(call, initial, &text, &len, NULL))
        return;
    buffer_append(call, b, text, len);
}

/* append: [text] -> the new length in bytes */
static void buffer_append_method(void **state, rayd_call *call)
{
    buffer *b = *state;
    const char *text;
    size_t len;
    if (!check_args(call, 1, 1, NULL) ||
        !text_arg(call, json_array_get(api->args(call), 0), &text, &len, NULL) ||
        !buffer_append(call, b, text, len))
        return;
    api->return_json(call, json_integer((json_int_t)b->len));
}

/* read: [] -> the text */
static void buffer_read(void **state, rayd_call *call)
{
    buffer *b = *state;
    if (check_args(call, 0, 0, NULL))
        api->return_json(call, json_stringn(b->len ? b->data : "", b->len));
}

/* clear: [] -> the length it had */
static void buffer_clear(void **state, rayd_call *call)
{
    buffer *b = *state;
    if (!check_args(call, 0, 0, NULL))
        return;
    size_t had = b->len;
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
    api->return_json(call, json_integer((json_int_t)had));
}

/* save: [] -> {"$ref": ref} of a new text/plain object holding the text */
static void buffer_save(void **state, rayd_call *call)
{
    buffer *b = *state;
    if (!check_args(call, 0, 0, NULL))
        return;
    char ref[RAYD_REF_SIZE];
    int st = api->put_object(call, b->data, b->len, "text/plain; charset=utf-8", ref);
    if (st != RAYD_OK) {
        api->fail(call, "text.Buffer.save: cannot store the text: %s", api->status_name(st));
        return;
    }
    api->return_json(call, json_pack("{s:s}", "$ref", ref));
}

/* ---- registration ----------------------------------------------------------------------- */

static const rayd_function_def FUNCTIONS[] = {
    {"text.upper",
     "Upper-cases the ASCII letters of a text. A $bytes argument (an object passed by ref) "
     "gives bytes of the same content type; a string gives a string.",
     "[text: string | $bytes]", "string, or bytes for $bytes", fn_upper},
    {"text.words",
     "Splits a text into words: runs of letters, digits, '_', apostrophes and non-ASCII "
     "characters. lower=true lower-cases ASCII letters.",
     "[text: string | $bytes], {lower: boolean = false}", "list of strings", fn_words},
    {"text.count",
     "Counts the words of a text (as text.words splits them), in order of first appearance.",
     "[text: string | $bytes], {lower: boolean = false}", "object: word -> count", fn_count},
};

static const rayd_method_def BUFFER_METHODS[] = {
    {"append", "Appends text; answers the new length in bytes.", "[text: string | $bytes]",
     buffer_append_method},
    {"read", "The text so far.", "[]", buffer_read},
    {"clear", "Empties the buffer; answers the length it had.", "[]", buffer_clear},
    {"save",
     "Stores the text as a text/plain object and answers {\"$ref\": ref}, which GET "
     "/v1/objects/{ref} serves and tasks accept as an argument.",
     "[]", buffer_save},
};

static const rayd_class_def BUFFER = {
    .name = "text.Buffer",
    .description = "A growing UTF-8 text (at most 64 MiB) that calls append to, read, clear "
                   "and save as an object.",
    .args_doc = "[initial: string | $bytes = \"\"]",
    .constructor = buffer_new,
    .destroy = buffer_destroy,
    .methods = BUFFER_METHODS,
    .nmethods = sizeof(BUFFER_METHODS) / sizeof(BUFFER_METHODS[0]),
};

int rayd_module_init(const rayd_api *a, rayd_module *module)
{
    api = a;
    for (size_t i = 0; i < sizeof(FUNCTIONS) / sizeof(FUNCTIONS[0]); i++) {
        int st = api->register_function(module, &FUNCTIONS[i]);
        if (st != RAYD_OK)
            return st;
    }
    return api->register_class(module, &BUFFER);
}
