/* C modules: dlopen of shared objects written against runtime/rayd_module.h, the API table
 * they get, and the adapters that make their functions and classes rt_functions and
 * rt_actor_classes of kind RT_FUNCTION_MODULE.
 *
 * DESIGN
 * - Loading: rt_modules_load runs on the main thread at start-up. For each module: dlopen
 *   (RTLD_NOW | RTLD_LOCAL), check rayd_module_init and rayd_module_abi_version before any
 *   of the module's code runs, run init, which records definitions in the module (copies:
 *   the module's own structs may be temporary), then commit: check every name against the
 *   registry, the actor system and the other modules, and only then register them all. A
 *   module is never dlclosed once its init ran.
 * - Dispatch: rt_function_fn and rt_method_fn carry no user data, so the adapters find the
 *   module's function by the call's name (rt_call.function) in a process-wide index sorted
 *   by name (g_lock, a read-write lock, taken for reading per call). A constructor finds
 *   its class the same way: actor.c calls constructors with the class's name as
 *   rt_call.function. A method finds its class through the actor's state, which the
 *   adapters wrap: {class, module's state}.
 * - Everything a loaded module registered lives until the process ends (the registry and
 *   actor system borrow it), reachable from g_modules.
 * - rayd_call is a stack struct around the rt_call, alive during one call of the module,
 *   holding the copies arg_bytes made and the empty args/kwargs it handed out. */
#include "runtime/module.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/buffer.h"
#include "runtime/events.h"
#include "runtime/object_store.h"
#include "runtime/rayd_module.h"
#include "runtime/ref.h"

_Static_assert(RAYD_REF_SIZE == RT_REF_SIZE, "rayd_module.h's RAYD_REF_SIZE is RT_REF_SIZE");
_Static_assert(RAYD_NAME_MAX == 128, "rayd_module.h's RAYD_NAME_MAX is rt_function_name_valid's limit");

/* ---- what a module registered ----------------------------------------------------------- */

/* A module's function: the rt_function the registry holds (its strings are owned copies)
 * and the module's code. */
typedef struct mod_function {
    rt_function fn;
    rayd_function_fn call;
} mod_function;

/* A module's class: the rt_actor_class the actor system holds (its strings and methods
 * array are owned copies), and the module's code; method_fns parallels cls.methods. */
typedef struct mod_class {
    rt_actor_class cls;
    rayd_method_fn constructor;
    void (*destroy)(void *state);
    rayd_method_fn *method_fns;
} mod_class;

/* An actor's state as the actor system holds it. */
typedef struct mod_state {
    const mod_class *cls;
    void *state; /* the module's */
} mod_state;

struct rayd_module {
    char *path;               /* owned: as given, for messages */
    void *handle;             /* dlopen's */
    bool initializing;        /* registration is allowed */
    int status;               /* the first registration failure (RAYD_*), or 0 */
    char error[256];          /* its message */
    mod_function **functions; /* owned */
    size_t nfunctions, functions_cap;
    mod_class **classes; /* owned */
    size_t nclasses, classes_cap;
    struct rayd_module *next; /* in g_modules */
};

struct rayd_call {
    rt_call *call;
    json_t *empty_args, *empty_kwargs; /* owned, made when asked for and absent */
    char **copies;                     /* owned: what arg_bytes decoded */
    size_t ncopies, copies_cap;
};

/* ---- the process-wide index --------------------------------------------------------------- */

typedef struct index_entry {
    const char *name; /* borrowed from item */
    void *item;
    const rayd_module *module;
} index_entry;

typedef struct name_index {
    index_entry *entries; /* sorted by name */
    size_t count, cap;
} name_index;

static pthread_rwlock_t g_lock = PTHREAD_RWLOCK_INITIALIZER;
static name_index g_functions; /* mod_function, under g_lock */
static name_index g_classes;   /* mod_class, under g_lock */
static rayd_module *g_modules; /* every module whose init ran; only rt_modules_load uses it */

/* Position of name, or where it would go; *found says which. Caller holds g_lock. */
static size_t index_search(const name_index *ix, const char *name, bool *found)
{
    size_t lo = 0, hi = ix->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ix->entries[mid].name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

/* The entry for name (borrowed) or NULL. Caller holds g_lock. */
static const index_entry *index_find(const name_index *ix, const char *name)
{
    bool found;
    size_t at = index_search(ix, name, &found);
    return found ? &ix->entries[at] : NULL;
}

/* Room for `more` entries. 0 or -1. Caller holds g_lock for writing. */
static int index_reserve(name_index *ix, size_t more)
{
    if (ix->cap - ix->count >= more)
        return 0;
    size_t cap = ix->cap ? ix->cap : 16;
    while (cap - ix->count < more)
        cap *= 2;
    index_entry *grown = realloc(ix->entries, cap * sizeof(*grown));
    if (!grown)
        return -1;
    ix->entries = grown;
    ix->cap = cap;
    return 0;
}

/* Inserts a name known to be absent, with room reserved. Caller holds g_lock for writing. */
static void index_insert(name_index *ix, const char *name, void *item, const rayd_module *m)
{
    bool found;
    size_t at = index_search(ix, name, &found);
    memmove(ix->entries + at + 1, ix->entries + at, (ix->count - at) * sizeof(*ix->entries));
    ix->entries[at] = (index_entry){name, item, m};
    ix->count++;
}

static const mod_function *find_function(const char *name)
{
    if (!name)
        return NULL;
    pthread_rwlock_rdlock(&g_lock);
    const index_entry *e = index_find(&g_functions, name);
    const mod_function *f = e ? e->item : NULL;
    pthread_rwlock_unlock(&g_lock);
    return f; /* lives for the process */
}

static const mod_class *find_class(const char *name)
{
    if (!name)
        return NULL;
    pthread_rwlock_rdlock(&g_lock);
    const index_entry *e = index_find(&g_classes, name);
    const mod_class *c = e ? e->item : NULL;
    pthread_rwlock_unlock(&g_lock);
    return c;
}

/* ---- checks and copies ---------------------------------------------------------------------- */

/* True when s (NUL-terminated; NULL counts as "") is well-formed UTF-8: no overlong forms,
 * no surrogates, nothing above U+10FFFF. jansson refuses anything else. */
static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        unsigned c = *p++;
        if (c < 0x80)
            continue;
        size_t more;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf)
            more = 1, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            more = 2, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            more = 3, cp = c & 0x07, min = 0x10000;
        else
            return false;
        for (size_t i = 0; i < more; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return false; /* also stops at the NUL */
            cp = (cp << 6) | (*p & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
    }
    return true;
}

/* A content type a module may give: 1..RT_CONTENT_TYPE_MAX bytes of printable ASCII (it
 * becomes an HTTP header). */
static bool content_type_valid(const char *ct)
{
    size_t n = 0;
    for (const char *p = ct; *p; p++, n++)
        if (*p < 0x20 || *p > 0x7e || n >= RT_CONTENT_TYPE_MAX)
            return false;
    return n > 0;
}

/* A copy of s ("" for NULL): new, free(). */
static char *text_dup(const char *s)
{
    return strdup(s ? s : "");
}

/* Records the module's first registration failure; returns code. */
static int reg_fail(rayd_module *m, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reg_fail(rayd_module *m, int code, const char *fmt, ...)
{
    if (m->status == 0) {
        m->status = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->error, sizeof(m->error), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A name for messages that may be NULL. */
static const char *shown(const char *name)
{
    return name ? name : "(null)";
}

static void function_free(mod_function *f)
{
    if (!f)
        return;
    free((char *)f->fn.name);
    free((char *)f->fn.description);
    free((char *)f->fn.args_doc);
    free((char *)f->fn.returns_doc);
    free(f);
}

static void class_free(mod_class *c)
{
    if (!c)
        return;
    free((char *)c->cls.name);
    free((char *)c->cls.description);
    free((char *)c->cls.args_doc);
    for (size_t i = 0; c->cls.methods && i < c->cls.nmethods; i++) {
        free((char *)c->cls.methods[i].name);
        free((char *)c->cls.methods[i].args_doc);
        free((char *)c->cls.methods[i].description);
    }
    free((void *)c->cls.methods);
    free(c->method_fns);
    free(c);
}

/* ---- the adapters ------------------------------------------------------------------------- */

/* Checks the shape of the arguments (a list and an object, or absent); fails the call and
 * returns false otherwise. */
static bool call_shape_ok(rt_call *call)
{
    if (call->args && !json_is_array(call->args)) {
        rt_call_fail(call, "%s: args must be a list", call->function);
        return false;
    }
    if (call->kwargs && !json_is_object(call->kwargs)) {
        rt_call_fail(call, "%s: kwargs must be an object", call->function);
        return false;
    }
    return true;
}

/* Releases what the module's call made. */
static void call_end(rayd_call *mc)
{
    for (size_t i = 0; i < mc->ncopies; i++)
        free(mc->copies[i]);
    free(mc->copies);
    json_decref(mc->empty_args);
    json_decref(mc->empty_kwargs);
}

static void run_function(rt_call *call)
{
    const mod_function *f = find_function(call->function);
    if (!f) {
        rt_call_fail(call, "%s: no module function of that name is loaded", call->function);
        return;
    }
    rayd_call mc = {.call = call};
    if (call_shape_ok(call))
        f->call(&mc);
    call_end(&mc);
}

/* The constructor of every module class: the call's function is the class's name. */
static void run_constructor(void **state, rt_call *call)
{
    const mod_class *c = find_class(call->function);
    if (!c) {
        rt_call_fail(call, "%s: no module class of that name is loaded", call->function);
        return;
    }
    mod_state *s = calloc(1, sizeof(*s));
    if (!s) {
        rt_call_fail(call, "%s: out of memory", call->function);
        return;
    }
    s->cls = c;
    *state = s; /* destroy_state frees it, with whatever the module left in it */
    rayd_call mc = {.call = call};
    if (call_shape_ok(call))
        c->constructor(&s->state, &mc);
    call_end(&mc);
}

static void run_method(void **state, rt_call *call)
{
    mod_state *s = *state;
    if (!s) {
        rt_call_fail(call, "%s: the actor has no state", call->function);
        return;
    }
    const mod_class *c = s->cls;
    rayd_method_fn fn = NULL;
    for (size_t i = 0; i < c->cls.nmethods && !fn; i++)
        if (strcmp(c->cls.methods[i].name, call->function) == 0)
            fn = c->method_fns[i];
    if (!fn) {
        rt_call_fail(call, "%s has no method '%s'", c->cls.name, call->function);
        return;
    }
    rayd_call mc = {.call = call};
    if (call_shape_ok(call))
        fn(&s->state, &mc);
    call_end(&mc);
}

static void destroy_state(void *state)
{
    mod_state *s = state;
    if (!s)
        return;
    if (s->cls->destroy)
        s->cls->destroy(s->state);
    free(s);
}

/* ---- the API table -------------------------------------------------------------------------- */

static int api_register_function(rayd_module *m, const rayd_function_def *def)
{
    if (!m)
        return RAYD_EINVAL;
    if (!m->initializing)
        return RAYD_ESTATE;
    if (!def)
        return reg_fail(m, RAYD_EINVAL, "register_function was given NULL");
    if (!rt_function_name_valid(def->name))
        return reg_fail(m, RAYD_EINVAL,
                        "function name '%.64s' is not 1 to %d characters of [A-Za-z0-9_.-]",
                        shown(def->name), RAYD_NAME_MAX);
    if (!def->fn)
        return reg_fail(m, RAYD_EINVAL, "function '%s' has no fn", def->name);
    if (!utf8_valid(def->description) || !utf8_valid(def->args_doc) ||
        !utf8_valid(def->returns_doc))
        return reg_fail(m, RAYD_EINVAL, "function '%s': its documentation is not UTF-8", def->name);
    for (size_t i = 0; i < m->nfunctions; i++)
        if (strcmp(m->functions[i]->fn.name, def->name) == 0)
            return reg_fail(m, RAYD_EEXIST, "function '%s' is registered twice", def->name);
    if (m->nfunctions == m->functions_cap) {
        size_t cap = m->functions_cap ? m->functions_cap * 2 : 8;
        mod_function **grown = realloc(m->functions, cap * sizeof(*grown));
        if (!grown)
            return reg_fail(m, RAYD_ENOMEM, "out of memory");
        m->functions = grown;
        m->functions_cap = cap;
    }
    mod_function *f = calloc(1, sizeof(*f));
    if (f) {
        f->fn = (rt_function){.name = text_dup(def->name),
                              .kind = RT_FUNCTION_MODULE,
                              .description = text_dup(def->description),
                              .args_doc = text_dup(def->args_doc),
                              .returns_doc = text_dup(def->returns_doc),
                              .fn = run_function};
        f->call = def->fn;
    }
    if (!f || !f->fn.name || !f->fn.description || !f->fn.args_doc || !f->fn.returns_doc) {
        function_free(f);
        return reg_fail(m, RAYD_ENOMEM, "out of memory");
    }
    m->functions[m->nfunctions++] = f;
    return RAYD_OK;
}

/* Checks a class definition; records and returns the failure, or RAYD_OK. */
static int class_def_check(rayd_module *m, const rayd_class_def *def)
{
    if (!rt_function_name_valid(def->name))
        return reg_fail(m, RAYD_EINVAL,
                        "class name '%.64s' is not 1 to %d characters of [A-Za-z0-9_.-]",
                        shown(def->name), RAYD_NAME_MAX);
    if (!def->constructor)
        return reg_fail(m, RAYD_EINVAL, "class '%s' has no constructor", def->name);
    if (!utf8_valid(def->description) || !utf8_valid(def->args_doc))
        return reg_fail(m, RAYD_EINVAL, "class '%s': its documentation is not UTF-8", def->name);
    if (def->nmethods && !def->methods)
        return reg_fail(m, RAYD_EINVAL, "class '%s': nmethods is %zu but methods is NULL",
                        def->name, def->nmethods);
    for (size_t i = 0; i < def->nmethods; i++) {
        const rayd_method_def *md = &def->methods[i];
        if (!rt_function_name_valid(md->name))
            return reg_fail(m, RAYD_EINVAL,
                            "class '%s': method name '%.64s' is not 1 to %d characters of "
                            "[A-Za-z0-9_.-]",
                            def->name, shown(md->name), RAYD_NAME_MAX);
        if (!md->fn)
            return reg_fail(m, RAYD_EINVAL, "class '%s': method '%s' has no fn", def->name,
                            md->name);
        if (!utf8_valid(md->description) || !utf8_valid(md->args_doc))
            return reg_fail(m, RAYD_EINVAL,
                            "class '%s': the documentation of method '%s' is not UTF-8", def->name,
                            md->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(def->methods[j].name, md->name) == 0)
                return reg_fail(m, RAYD_EEXIST, "class '%s': method '%s' is defined twice",
                                def->name, md->name);
    }
    for (size_t i = 0; i < m->nclasses; i++)
        if (strcmp(m->classes[i]->cls.name, def->name) == 0)
            return reg_fail(m, RAYD_EEXIST, "class '%s' is registered twice", def->name);
    return RAYD_OK;
}

static int api_register_class(rayd_module *m, const rayd_class_def *def)
{
    if (!m)
        return RAYD_EINVAL;
    if (!m->initializing)
        return RAYD_ESTATE;
    if (!def)
        return reg_fail(m, RAYD_EINVAL, "register_class was given NULL");
    int st = class_def_check(m, def);
    if (st != RAYD_OK)
        return st;
    if (m->nclasses == m->classes_cap) {
        size_t cap = m->classes_cap ? m->classes_cap * 2 : 4;
        mod_class **grown = realloc(m->classes, cap * sizeof(*grown));
        if (!grown)
            return reg_fail(m, RAYD_ENOMEM, "out of memory");
        m->classes = grown;
        m->classes_cap = cap;
    }
    mod_class *c = calloc(1, sizeof(*c));
    rt_actor_method *methods = NULL;
    bool ok = c != NULL;
    if (ok && def->nmethods) {
        methods = calloc(def->nmethods, sizeof(*methods));
        c->method_fns = calloc(def->nmethods, sizeof(*c->method_fns));
        ok = methods && c->method_fns;
    }
    if (ok) {
        c->cls = (rt_actor_class){.name = text_dup(def->name),
                                  .kind = RT_FUNCTION_MODULE,
                                  .description = text_dup(def->description),
                                  .args_doc = text_dup(def->args_doc),
                                  .constructor = run_constructor,
                                  .destroy = destroy_state,
                                  .methods = methods,
                                  .nmethods = def->nmethods};
        c->constructor = def->constructor;
        c->destroy = def->destroy;
        ok = c->cls.name && c->cls.description && c->cls.args_doc;
        for (size_t i = 0; ok && i < def->nmethods; i++) {
            const rayd_method_def *md = &def->methods[i];
            methods[i] = (rt_actor_method){.name = text_dup(md->name),
                                           .args_doc = text_dup(md->args_doc),
                                           .description = text_dup(md->description),
                                           .fn = run_method};
            c->method_fns[i] = md->fn;
            ok = methods[i].name && methods[i].args_doc && methods[i].description;
        }
    } else {
        free(methods);
    }
    if (!ok) {
        class_free(c);
        return reg_fail(m, RAYD_ENOMEM, "out of memory");
    }
    m->classes[m->nclasses++] = c;
    return RAYD_OK;
}

static json_t *api_args(rayd_call *mc)
{
    if (!mc)
        return NULL;
    if (mc->call->args)
        return mc->call->args;
    if (!mc->empty_args)
        mc->empty_args = json_array();
    return mc->empty_args;
}

static json_t *api_kwargs(rayd_call *mc)
{
    if (!mc)
        return NULL;
    if (mc->call->kwargs)
        return mc->call->kwargs;
    if (!mc->empty_kwargs)
        mc->empty_kwargs = json_object();
    return mc->empty_kwargs;
}

static const char *api_name(rayd_call *mc)
{
    return mc ? mc->call->function : NULL;
}

static const char *api_task_id(rayd_call *mc)
{
    return mc ? mc->call->task_id : NULL;
}

static unsigned api_attempt(rayd_call *mc)
{
    return mc ? mc->call->attempt : 0;
}

static bool api_cancelled(rayd_call *mc)
{
    return mc && rt_call_cancelled(mc->call);
}

static int api_arg_bytes(rayd_call *mc, json_t *value, const void **data, size_t *len,
                         const char **content_type)
{
    if (!mc || !data || !len)
        return RAYD_EINVAL;
    if (content_type)
        *content_type = NULL;
    if (mc->ncopies == mc->copies_cap) { /* room first, so a copy is never lost */
        size_t cap = mc->copies_cap ? mc->copies_cap * 2 : 4;
        char **grown = realloc(mc->copies, cap * sizeof(*grown));
        if (!grown)
            return RAYD_ENOMEM;
        mc->copies = grown;
        mc->copies_cap = cap;
    }
    const char *bytes;
    char *owned;
    if (rt_call_arg_bytes(value, &bytes, len, &owned) != 0)
        return RAYD_EINVAL; /* (a failed allocation of a $bytes copy also lands here) */
    if (owned)
        mc->copies[mc->ncopies++] = owned;
    *data = bytes;
    if (content_type && json_is_object(value))
        *content_type = json_string_value(json_object_get(value, "content_type"));
    return RAYD_OK;
}

static void api_return_json(rayd_call *mc, json_t *value)
{
    if (!mc) {
        json_decref(value);
        return;
    }
    rt_call_return_json(mc->call, value); /* NULL fails it with "out of memory" */
}

static void api_return_bytes(rayd_call *mc, const void *data, size_t len, const char *content_type)
{
    if (!mc)
        return;
    if (!content_type)
        content_type = "application/octet-stream";
    if (!content_type_valid(content_type)) {
        rt_call_fail(mc->call, "%s: returned bytes with an invalid content type",
                     mc->call->function);
        return;
    }
    if (!data && len) {
        rt_call_fail(mc->call, "%s: returned NULL bytes", mc->call->function);
        return;
    }
    rt_call_return_bytes(mc->call, rt_buf_from(data ? data : "", len, content_type));
}

static void api_fail(rayd_call *mc, const char *fmt, ...)
{
    if (!mc)
        return;
    va_list ap;
    va_start(ap, fmt);
    rt_call_vfail(mc->call, false, fmt, ap);
    va_end(ap);
}

static void api_fail_fatal(rayd_call *mc, const char *fmt, ...)
{
    if (!mc)
        return;
    va_list ap;
    va_start(ap, fmt);
    rt_call_vfail(mc->call, true, fmt, ap);
    va_end(ap);
}

static int api_put_object(rayd_call *mc, const void *data, size_t len, const char *content_type,
                          char ref_out[RAYD_REF_SIZE])
{
    if (!mc || !ref_out || (!data && len))
        return RAYD_EINVAL;
    if (!content_type)
        content_type = "application/octet-stream";
    if (!content_type_valid(content_type))
        return RAYD_EINVAL;
    if (!mc->call->store)
        return RAYD_ESTATE;
    rt_buf *buf = rt_buf_from(data ? data : "", len, content_type);
    if (!buf)
        return RAYD_ENOMEM;
    rt_status st = rt_store_put(mc->call->store, buf, 0, ref_out);
    if (st == RT_OK)
        return RAYD_OK;
    rt_buf_decref(buf);
    return st == RT_EFULL ? RAYD_EFULL : st == RT_EINVAL ? RAYD_EINVAL : RAYD_ENOMEM;
}

static const char *api_status_name(int status)
{
    switch (status) {
    case RAYD_OK:
        return "RAYD_OK";
    case RAYD_EINVAL:
        return "RAYD_EINVAL";
    case RAYD_EEXIST:
        return "RAYD_EEXIST";
    case RAYD_ENOMEM:
        return "RAYD_ENOMEM";
    case RAYD_EFULL:
        return "RAYD_EFULL";
    case RAYD_ESTATE:
        return "RAYD_ESTATE";
    }
    return "RAYD_EUNKNOWN";
}

static const rayd_api API = {
    .abi_version = RAYD_MODULE_ABI_VERSION,
    .size = sizeof(rayd_api),
    .register_function = api_register_function,
    .register_class = api_register_class,
    .args = api_args,
    .kwargs = api_kwargs,
    .name = api_name,
    .task_id = api_task_id,
    .attempt = api_attempt,
    .cancelled = api_cancelled,
    .arg_bytes = api_arg_bytes,
    .return_json = api_return_json,
    .return_bytes = api_return_bytes,
    .fail = api_fail,
    .fail_fatal = api_fail_fatal,
    .put_object = api_put_object,
    .status_name = api_status_name,
};

/* ---- loading ------------------------------------------------------------------------------ */

/* Writes a one-line message into err: control characters become spaces. */
static void errf(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t err_size, const char *fmt, ...)
{
    if (!err || !err_size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

/* Drops what a refused module registered; the module itself stays (its init ran, so it
 * keeps its handle and the rayd_module it was given, which now refuses registration). */
static void module_clear(rayd_module *m)
{
    for (size_t i = 0; i < m->nfunctions; i++)
        function_free(m->functions[i]);
    for (size_t i = 0; i < m->nclasses; i++)
        class_free(m->classes[i]);
    free(m->functions);
    free(m->classes);
    m->functions = NULL;
    m->classes = NULL;
    m->nfunctions = m->functions_cap = m->nclasses = m->classes_cap = 0;
}

/* Registers what module m recorded: every name is checked before anything is registered.
 * *indexed says whether its records went into the process-wide index (they must then stay,
 * even when a registration after that failed). */
static rt_status module_commit(rayd_module *m, rt_registry *registry, rt_actors *actors,
                               bool *indexed, char *err, size_t err_size)
{
    *indexed = false;
    for (size_t i = 0; i < m->nfunctions; i++) {
        const rt_function *taken = rt_registry_find(registry, m->functions[i]->fn.name);
        if (taken) {
            errf(err, err_size, "module '%s': function '%s' is already registered (%s)", m->path,
                 taken->name, rt_function_kind_name(taken->kind));
            return RT_EEXIST;
        }
    }
    for (size_t i = 0; i < m->nclasses; i++) {
        const rt_actor_class *taken = rt_actors_find_class(actors, m->classes[i]->cls.name);
        if (taken) {
            errf(err, err_size, "module '%s': class '%s' is already registered (%s)", m->path,
                 taken->name, rt_function_kind_name(taken->kind));
            return RT_EEXIST;
        }
    }
    pthread_rwlock_wrlock(&g_lock);
    const index_entry *clash = NULL;
    const char *what = "function";
    for (size_t i = 0; i < m->nfunctions && !clash; i++)
        clash = index_find(&g_functions, m->functions[i]->fn.name);
    for (size_t i = 0; i < m->nclasses && !clash; i++)
        if ((clash = index_find(&g_classes, m->classes[i]->cls.name)))
            what = "class";
    if (clash) {
        errf(err, err_size, "module '%s': %s '%s' is already registered by module '%s'", m->path,
             what, clash->name, clash->module->path);
        pthread_rwlock_unlock(&g_lock);
        return RT_EEXIST;
    }
    if (index_reserve(&g_functions, m->nfunctions) != 0 ||
        index_reserve(&g_classes, m->nclasses) != 0) {
        pthread_rwlock_unlock(&g_lock);
        errf(err, err_size, "module '%s': out of memory", m->path);
        return RT_ENOMEM;
    }
    for (size_t i = 0; i < m->nfunctions; i++)
        index_insert(&g_functions, m->functions[i]->fn.name, m->functions[i], m);
    for (size_t i = 0; i < m->nclasses; i++)
        index_insert(&g_classes, m->classes[i]->cls.name, m->classes[i], m);
    pthread_rwlock_unlock(&g_lock);
    *indexed = true;

    /* Only out of memory can fail now: the names were checked. */
    for (size_t i = 0; i < m->nfunctions; i++) {
        rt_status st = rt_registry_add(registry, &m->functions[i]->fn);
        if (st != RT_OK) {
            errf(err, err_size, "module '%s': cannot register function '%s': %s", m->path,
                 m->functions[i]->fn.name, rt_status_name(st));
            return st;
        }
    }
    for (size_t i = 0; i < m->nclasses; i++) {
        rt_status st = rt_actors_add_class(actors, &m->classes[i]->cls);
        if (st != RT_OK) {
            errf(err, err_size, "module '%s': cannot register class '%s': %s", m->path,
                 m->classes[i]->cls.name, rt_status_name(st));
            return st;
        }
    }
    return RT_OK;
}

/* RT_* for a module's registration failure. */
static rt_status status_of(int rayd_status)
{
    switch (rayd_status) {
    case RAYD_EEXIST:
        return RT_EEXIST;
    case RAYD_ENOMEM:
        return RT_ENOMEM;
    default:
        return RT_EINVAL;
    }
}

typedef int (*init_fn)(const rayd_api *api, rayd_module *module);

static rt_status module_load(const char *path, rt_registry *registry, rt_actors *actors, char *err,
                             size_t err_size)
{
    if (!path || !*path) {
        errf(err, err_size, "module '': the path is empty");
        return RT_EINVAL;
    }
    /* A path without '/' would be searched on the library path: make it a file here. */
    char *file = NULL;
    if (asprintf(&file, "%s%s", strchr(path, '/') ? "" : "./", path) < 0) {
        errf(err, err_size, "module '%s': out of memory", path);
        return RT_ENOMEM;
    }
    dlerror();
    void *handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    free(file);
    if (!handle) {
        const char *why = dlerror();
        errf(err, err_size, "module '%s': cannot load it: %s", path, why ? why : "dlopen failed");
        return RT_ENOTFOUND;
    }
    for (rayd_module *m = g_modules; m; m = m->next)
        if (m->handle == handle) {
            dlclose(handle); /* drops the reference this dlopen added */
            errf(err, err_size, "module '%s': already loaded (as '%s')", path, m->path);
            return RT_EEXIST;
        }
    init_fn init = (init_fn)dlsym(handle, "rayd_module_init");
    const unsigned *abi = dlsym(handle, "rayd_module_abi_version");
    if (!init || !abi) {
        dlclose(handle);
        errf(err, err_size,
             !init ? "module '%s': not a rayd module: it has no rayd_module_init function"
                   : "module '%s': not a rayd module: it has no rayd_module_abi_version (write "
                     "RAYD_MODULE_DEFINE_ABI_VERSION; in it)",
             path);
        return RT_EINVAL;
    }
    if (*abi != RAYD_MODULE_ABI_VERSION) {
        unsigned got = *abi;
        dlclose(handle);
        errf(err, err_size,
             "module '%s': built for module ABI version %u, this rayd has version %d (rebuild "
             "it against this rayd's rayd_module.h)",
             path, got, RAYD_MODULE_ABI_VERSION);
        return RT_EINVAL;
    }
    rayd_module *m = calloc(1, sizeof(*m));
    if (!m || !(m->path = strdup(path))) {
        free(m);
        dlclose(handle);
        errf(err, err_size, "module '%s': out of memory", path);
        return RT_ENOMEM;
    }
    m->handle = handle;
    m->next = g_modules;
    g_modules = m; /* from now on it stays: its code has run */

    m->initializing = true;
    int rc = init(&API, m);
    m->initializing = false;
    rt_status st = RT_OK;
    if (m->status != RAYD_OK) {
        errf(err, err_size, "module '%s': %s", path, m->error);
        st = status_of(m->status);
    } else if (rc != 0) {
        errf(err, err_size, "module '%s': rayd_module_init failed (it returned %d)", path, rc);
        st = RT_EINVAL;
    } else if (m->nfunctions == 0 && m->nclasses == 0) {
        errf(err, err_size, "module '%s': it registered no function and no class", path);
        st = RT_EINVAL;
    } else {
        bool indexed;
        st = module_commit(m, registry, actors, &indexed, err, err_size);
        if (st == RT_OK)
            rt_event_emit("info", "module loaded",
                          json_pack("{s:s,s:I,s:I}", "path", path, "functions",
                                    (json_int_t)m->nfunctions, "classes",
                                    (json_int_t)m->nclasses));
        if (st == RT_OK || indexed)
            return st;
    }
    module_clear(m);
    return st;
}

rt_status rt_modules_load(const char *const *paths, size_t n, rt_registry *registry,
                          rt_actors *actors, char *err, size_t err_size)
{
    if (err && err_size)
        *err = '\0';
    if ((n && !paths) || !registry || !actors) {
        errf(err, err_size, "rt_modules_load: bad arguments");
        return RT_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        rt_status st = module_load(paths[i], registry, actors, err, err_size);
        if (st != RT_OK)
            return st;
    }
    return RT_OK;
}

json_t *rt_modules_list(bool with_path)
{
    json_t *list = json_array();
    if (!list)
        return NULL;
    for (const rayd_module *m = g_modules; m; m = m->next) { /* newest first */
        if (m->nfunctions == 0 && m->nclasses == 0)
            continue; /* refused: it registered nothing */
        const char *slash = strrchr(m->path, '/');
        json_t *functions = json_array(), *classes = json_array();
        for (size_t i = 0; i < m->nfunctions; i++)
            json_array_append_new(functions, json_string(m->functions[i]->fn.name));
        for (size_t i = 0; i < m->nclasses; i++)
            json_array_append_new(classes, json_string(m->classes[i]->cls.name));
        json_t *entry = json_pack("{s:s,s:o,s:o}", "name", slash ? slash + 1 : m->path,
                                  "functions", functions, "classes", classes);
        if (entry && with_path)
            json_object_set_new(entry, "path", json_string(m->path));
        if (!entry || json_array_insert_new(list, 0, entry) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

bool rt_modules_provide(const char *name, bool is_class)
{
    return is_class ? find_class(name) != NULL : find_function(name) != NULL;
}
