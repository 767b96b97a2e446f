/* Which C modules a node loaded, as its heartbeat record carries them (cluster mode).
 *
 * C modules stay per node (`--module`), so the nodes tell each other what they loaded: the
 * record node:<tag> has a field "modules", a JSON array written once when the record is
 * made (not every second), read by the others once per node (runtime/cluster_node.c):
 *
 *   [{"name": "text.so", "functions": ["text.upper", ...], "classes": ["text.Buffer"]}]
 *
 * name is the module file's base name. With it a node that lacks a module can tell a
 * client which module and which nodes have the function it asked for, /v1/status lists
 * every node's modules, and spillback sends module work only to nodes that have it.
 *
 * Thread-safety: pure functions of their arguments. */
#ifndef RAYD_RUNTIME_CLUSTER_MODULES_H
#define RAYD_RUNTIME_CLUSTER_MODULES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define RT_CLUSTER_MODULES_MAX 256              /* modules per node accepted in a record */
#define RT_CLUSTER_MODULE_NAME_MAX 255          /* bytes of a module's name */
#define RT_CLUSTER_MODULES_TEXT_MAX (1u << 20)  /* bytes of the field accepted */

/* Reads a record's "modules" field (len bytes, no NUL needed): a new array of
 * {"name", "functions", "classes"} objects, every name checked (a module's name 1 to
 * RT_CLUSTER_MODULE_NAME_MAX bytes without control characters, function and class names as
 * rt_function_name_valid wants them), other members dropped. NULL when the text is not
 * such a list (not JSON, another shape, a bad name, too long): the node's modules are
 * then unknown. */
json_t *rt_cluster_modules_parse(const char *text, size_t len);

/* The name of the module in modules (as rt_cluster_modules_parse makes them) that provides
 * name as a function (is_class false) or an actor class (true); borrowed from modules.
 * NULL when none does, or modules is NULL. */
const char *rt_cluster_modules_find(const json_t *modules, const char *name, bool is_class);

#endif
