/* rayd_module.h: the whole interface between rayd and a C module. A module is a shared
 * object that rayd loads at start-up (`rayd --module path/to/mod.so`, repeatable, or
 * RAYD_MODULES=a.so:b.so) to add functions that tasks run and actor classes. This header
 * is all a module includes: it needs nothing else from rayd's sources, and rayd exports no
 * symbols; everything goes through the API table rayd hands to the module's init function.
 *
 * ---- What a module provides --------------------------------------------------------------
 *
 *   RAYD_MODULE_DEFINE_ABI_VERSION;    (once, at file scope)
 *   int rayd_module_init(const rayd_api *api, rayd_module *module) { ... }
 *
 * RAYD_MODULE_DEFINE_ABI_VERSION defines the exported constant `rayd_module_abi_version`,
 * the RAYD_MODULE_ABI_VERSION this header had when the module was compiled. rayd reads it
 * before running any of the module's code and refuses a module built for another version
 * (or without the constant, or without rayd_module_init): it prints one line on stderr and
 * exits with code 2.
 *
 * rayd_module_init runs once, on rayd's main thread, after the built-in functions and
 * classes are registered and before the HTTP server starts. It registers functions and
 * classes with api->register_function / api->register_class and returns 0. Returning
 * anything else, or any registration that fails (a bad definition, a name already taken
 * by a built-in or another module), refuses the module as a whole: nothing of it is
 * registered and rayd exits with code 2, naming the module and the problem.
 *
 * rayd copies the definitions and their strings, so they only need to live until the
 * register call returns. The functions they point to must stay valid: a module is never
 * unloaded.
 *
 * ---- Calls ----------------------------------------------------------------------------
 *
 * A task submitted with {"function": "<name>", "args": [...], "kwargs": {...}} runs the
 * function on a worker thread with a rayd_call: an opaque handle, valid only during that
 * function call and only on that thread. Through the API table the function reads its
 * arguments (JSON, jansson's json_t), and sets exactly one outcome: a JSON value
 * (return_json), bytes with a content type (return_bytes), or a failure message (fail).
 * Setting an outcome replaces an earlier one; a function that sets none fails with "the
 * function returned no result". A failure becomes the task's TaskError, with the message
 * as its detail: say which function failed and why ("text.upper takes 1 string, got 2
 * arguments").
 *
 * Arguments: an argument given as {"$ref": "<ref>"} reaches the function as the object's
 * value: its parsed JSON when the object is JSON, otherwise {"$bytes": "<base64>",
 * "content_type": "..."}; api->arg_bytes reads a string or such a $bytes value as bytes.
 *
 * Functions must be thread-safe: several tasks may run the same function at once.
 * Long-running functions should poll api->cancelled and return early once it is true (the
 * task was cancelled, or its timeout passed); whatever they return then is discarded.
 *
 * ---- Actor classes ---------------------------------------------------------------------
 *
 * A class has a constructor, methods and a destroy function, all working on one state
 * pointer (void *) per actor that the module owns. The constructor receives the creation
 * arguments and sets *state (it may leave it NULL); each method receives the state and
 * may change it or replace *state; destroy frees it (it is called with whatever *state
 * holds, NULL included, also after a failed constructor, and before the constructor runs
 * again on a restart). rayd runs one call of an actor at a time, in order, so a state
 * needs no lock; calls to different actors run in parallel. A method that fails with
 * api->fail_fatal declares the state broken: the actor restarts (destroy, then the
 * constructor again with the original arguments) if it has restarts left, or dies.
 *
 * ---- JSON ------------------------------------------------------------------------------
 *
 * Values are jansson json_t, shared with rayd: the module and rayd must use the same
 * libjansson (link with -ljansson, or leave the symbols to be resolved from rayd's; never
 * link jansson statically). Ownership follows jansson: arguments are borrowed (valid
 * during the call; never change them), results are stolen.
 *
 * ---- Versions --------------------------------------------------------------------------
 *
 * RAYD_MODULE_ABI_VERSION changes when anything in this header changes incompatibly. API
 * functions added later are appended to rayd_api, which grows its `size` without a new
 * version: a module that uses one added after version 1 checks RAYD_API_HAS(api, member)
 * first. The first two members (abi_version, size) never move.
 *
 * ---- A minimal module (build: cc -shared -fPIC -o hello.so hello.c) ----------------------
 *
 *   #include "rayd_module.h"
 *
 *   RAYD_MODULE_DEFINE_ABI_VERSION;
 *
 *   static const rayd_api *api;
 *
 *   // hello: ["name"] -> "hello, name"
 *   static void hello(rayd_call *call)
 *   {
 *       const char *name = json_string_value(json_array_get(api->args(call), 0));
 *       if (!name || json_array_size(api->args(call)) != 1) {
 *           api->fail(call, "hello takes 1 string");
 *           return;
 *       }
 *       api->return_json(call, json_sprintf("hello, %s", name));
 *   }
 *
 *   int rayd_module_init(const rayd_api *a, rayd_module *module)
 *   {
 *       api = a;
 *       static const rayd_function_def def = {
 *           .name = "hello", .description = "Greets someone.",
 *           .args_doc = "[name: string]", .returns_doc = "string", .fn = hello};
 *       return api->register_function(module, &def);
 *   }
 *
 * Then: rayd --module ./hello.so, and
 *   curl -H 'Prefer: wait=5' -d '{"function":"hello","args":["you"]}' localhost:8080/v1/tasks
 *
 * examples/modules/text.c is a complete module with functions and a class.
 *
 * Thread-safety: the registration functions may be called only from rayd_module_init. The
 * call functions may be called only with the rayd_call the module was handed, on the
 * thread running that call, until the module's function returns. status_name may be
 * called anywhere. */
#ifndef RAYD_MODULE_H
#define RAYD_MODULE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this interface. */
#define RAYD_MODULE_ABI_VERSION 1

/* Room for any ref and its NUL: refs are 1 to 64 characters of [A-Za-z0-9_-]. */
#define RAYD_REF_SIZE 65

/* Names of functions, classes and methods: 1 to 128 characters of [A-Za-z0-9_.-].
 * Convention: prefix them with the module's name ("text.upper", "text.Buffer"). */
#define RAYD_NAME_MAX 128

#if defined(__GNUC__) || defined(__clang__)
#define RAYD_MODULE_EXPORT __attribute__((visibility("default")))
#define RAYD_MODULE_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))
#else
#define RAYD_MODULE_EXPORT
#define RAYD_MODULE_PRINTF(fmt, first)
#endif

/* What API calls that can fail return: 0, or one of these negative codes. */
enum {
    RAYD_OK = 0,
    RAYD_EINVAL = -1, /* a bad argument or definition */
    RAYD_EEXIST = -2, /* the name is taken */
    RAYD_ENOMEM = -3, /* out of memory */
    RAYD_EFULL = -4,  /* the object store cannot fit the object */
    RAYD_ESTATE = -5  /* not allowed now (e.g. registering after init returned) */
};

/* A call in progress (opaque). Valid during the function call it was handed to. */
typedef struct rayd_call rayd_call;
/* The module being loaded (opaque). Valid during rayd_module_init. */
typedef struct rayd_module rayd_module;

/* A function: reads its arguments and sets its outcome through the API table. */
typedef void (*rayd_function_fn)(rayd_call *call);
/* A constructor or method: as a function, with the actor's state (see above). */
typedef void (*rayd_method_fn)(void **state, rayd_call *call);

/* A function that tasks run. Only name and fn are required; NULL strings show as "". The
 * strings must be UTF-8; they are shown by GET /v1/functions. */
typedef struct rayd_function_def {
    const char *name;        /* see RAYD_NAME_MAX */
    const char *description; /* one or two sentences */
    const char *args_doc;    /* e.g. "[text: string], {lower: boolean = false}" */
    const char *returns_doc; /* e.g. "list of strings" */
    rayd_function_fn fn;
} rayd_function_def;

/* A method of an actor class. name and fn are required. */
typedef struct rayd_method_def {
    const char *name; /* see RAYD_NAME_MAX; unique in its class */
    const char *description;
    const char *args_doc;
    rayd_method_fn fn;
} rayd_method_def;

/* An actor class, shown by GET /v1/actor-classes. name and constructor are required. */
typedef struct rayd_class_def {
    const char *name; /* see RAYD_NAME_MAX */
    const char *description;
    const char *args_doc;           /* the constructor's arguments */
    rayd_method_fn constructor;     /* builds *state from the creation arguments */
    void (*destroy)(void *state);   /* frees a state (NULL accepted); NULL: nothing to free */
    const rayd_method_def *methods; /* nmethods of them */
    size_t nmethods;
} rayd_class_def;

/* The API table rayd hands to rayd_module_init; valid for the life of the process. */
typedef struct rayd_api {
    unsigned abi_version; /* RAYD_MODULE_ABI_VERSION of the running rayd */
    size_t size;          /* sizeof(rayd_api) in the running rayd; see RAYD_API_HAS */

    /* ---- registration (only in rayd_module_init) ---- */

    /* Registers a function (def copied). RAYD_OK, RAYD_EINVAL (a bad definition),
     * RAYD_EEXIST (this module registered the name already), RAYD_ENOMEM, RAYD_ESTATE
     * (init has returned). Clashes with built-ins and other modules are found when init
     * returns. Any failure refuses the module. */
    int (*register_function)(rayd_module *module, const rayd_function_def *def);
    /* Registers an actor class (def and its methods copied). Returns as above. */
    int (*register_class)(rayd_module *module, const rayd_class_def *def);

    /* ---- reading a call ---- */

    /* The positional arguments: a JSON array, possibly empty. Borrowed; never NULL except
     * when out of memory (jansson's functions treat NULL as an empty array). */
    json_t *(*args)(rayd_call *call);
    /* The keyword arguments: a JSON object, possibly empty. Borrowed; as args. */
    json_t *(*kwargs)(rayd_call *call);
    /* The function's name, or for actors the method's name (the class's name in the
     * constructor). Borrowed, valid during the call. */
    const char *(*name)(rayd_call *call);
    /* The task's id (for actors, the actor's id). Borrowed, valid during the call. */
    const char *(*task_id)(rayd_call *call);
    /* 1 for a task's first attempt, 2 for its first retry...; 1 for actor methods, and
     * for a constructor 1 + the actor's restarts so far. */
    unsigned (*attempt)(rayd_call *call);
    /* True once the task was cancelled or its timeout passed: return early. */
    bool (*cancelled)(rayd_call *call);
    /* Reads value (borrowed: an argument, or a member of one) as bytes: a JSON string's
     * UTF-8 bytes, or the decoded bytes of a {"$bytes": ..., "content_type": ...} value.
     * Sets *data (valid until the call returns; NUL-terminated after *len bytes) and *len,
     * and *content_type when not NULL (the $bytes value's content type, or NULL). Returns
     * RAYD_OK, RAYD_EINVAL (value is neither), RAYD_ENOMEM. */
    int (*arg_bytes)(rayd_call *call, json_t *value, const void **data, size_t *len,
                     const char **content_type);

    /* ---- the outcome (exactly one; a later one replaces an earlier one) ---- */

    /* Returns a JSON value (stolen; NULL, as from a failed json_*() constructor, fails the
     * call with "out of memory"). */
    void (*return_json)(rayd_call *call, json_t *value);
    /* Returns bytes (copied) with a content type: printable ASCII, at most 255 bytes;
     * NULL means "application/octet-stream". A bad content type fails the call. */
    void (*return_bytes)(rayd_call *call, const void *data, size_t len, const char *content_type);
    /* Fails the call with a printf-style message. */
    void (*fail)(rayd_call *call, const char *fmt, ...) RAYD_MODULE_PRINTF(2, 3);
    /* Actor methods: fails the call and marks the state broken (the actor restarts or
     * dies; see above). In a function or constructor it is the same as fail. */
    void (*fail_fatal)(rayd_call *call, const char *fmt, ...) RAYD_MODULE_PRINTF(2, 3);

    /* ---- objects ---- */

    /* Puts an object (data copied) into rayd's object store, as POST /v1/objects does,
     * and writes its ref (NUL-terminated) to ref_out. Clients GET it at /v1/objects/<ref>;
     * returning {"$ref": ref} lets a client pass it on to another task as an argument. The
     * content type is as for return_bytes. RAYD_OK, RAYD_EINVAL (bad content type, or data
     * NULL with len > 0), RAYD_EFULL (does not fit even after eviction), RAYD_ENOMEM. */
    int (*put_object)(rayd_call *call, const void *data, size_t len, const char *content_type,
                      char ref_out[RAYD_REF_SIZE]);

    /* ---- misc ---- */

    /* A name for a RAYD_* code ("RAYD_EFULL"); never NULL. */
    const char *(*status_name)(int status);
} rayd_api;

/* True when the running rayd's table has `member` (for members added after version 1). */
#define RAYD_API_HAS(api, member)                                                                  \
    ((api)->size >= offsetof(rayd_api, member) + sizeof((api)->member))

/* The two symbols rayd looks up in a module. */
RAYD_MODULE_EXPORT extern const unsigned rayd_module_abi_version;
RAYD_MODULE_EXPORT int rayd_module_init(const rayd_api *api, rayd_module *module);

/* Defines rayd_module_abi_version (exported by the declaration above, also when the module
 * is built with -fvisibility=hidden); write it once at file scope, followed by ';'. */
#define RAYD_MODULE_DEFINE_ABI_VERSION                                                             \
    const unsigned rayd_module_abi_version = RAYD_MODULE_ABI_VERSION

#ifdef __cplusplus
}
#endif

#endif
