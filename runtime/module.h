/* rt_modules: loads C modules (shared objects written against runtime/rayd_module.h) with
 * dlopen and registers their functions and actor classes, with kind RT_FUNCTION_MODULE,
 * in a registry and an actor system.
 *
 * A loaded module stays loaded for the life of the process, and what it registered stays
 * in a process-wide table: the adapters that turn rt_calls into the module's calls find
 * the module's functions there by name. So one module is loaded once per process.
 *
 * Thread-safety: rt_modules_load must not run concurrently with itself; the functions it
 * registers may run on any thread (their lookups take a read lock). */
#ifndef RAYD_RUNTIME_MODULE_H
#define RAYD_RUNTIME_MODULE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "runtime/actor.h"
#include "runtime/function.h"
#include "runtime/status.h"

/* Loads the n modules at paths (borrowed) in order: checks each one's
 * rayd_module_abi_version, runs its rayd_module_init, and registers what it registered in
 * registry and actors (borrowed; they must outlive every call of a module function). Run it
 * after the built-ins are registered: a name taken by a built-in, by another module or
 * (for classes) by any class is an error. A path without '/' names a file in the current
 * directory, not one on the library search path.
 *
 * Returns RT_OK, or on the first module that cannot be loaded: RT_ENOTFOUND (dlopen failed:
 * no such file, not a shared object, unresolved symbols), RT_EINVAL (no init function or
 * version constant, another ABI version, init failed or a definition was bad), RT_EEXIST
 * (a name is taken, or the module is already loaded), RT_ENOMEM; with a one-line message
 * naming the module in err (err_size bytes, may be 0). A refused module registers nothing;
 * the modules before it stay registered (the caller is expected to exit). */
rt_status rt_modules_load(const char *const *paths, size_t n, rt_registry *registry,
                          rt_actors *actors, char *err, size_t err_size);

/* The modules loaded, in load order, as a new JSON array of {"name": the file's base name,
 * "path": as given (with_path only), "functions": [names], "classes": [names]} (names in
 * the order the module registered them); an empty array when none. NULL when out of
 * memory. Call it after rt_modules_load returned (it reads the list that load wrote). */
json_t *rt_modules_list(bool with_path);

/* Whether a loaded module provides name as a function (is_class false) or a class. */
bool rt_modules_provide(const char *name, bool is_class);

#endif
