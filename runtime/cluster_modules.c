/* Reading the "modules" field of a heartbeat record. See cluster_modules.h. */
#include "runtime/cluster_modules.h"

#include <string.h>

#include "runtime/function.h"

static bool module_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > RT_CLUSTER_MODULE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return true;
}

/* A copy of a list of function or class names (absent: empty), or NULL when it is not an
 * array of valid names. */
static json_t *names_copy(const json_t *list)
{
    if (!list)
        return json_array();
    if (!json_is_array(list))
        return NULL;
    json_t *out = json_array();
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *name = json_string_value(v);
        if (!name || !rt_function_name_valid(name) ||
            json_array_append_new(out, json_string(name)) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

json_t *rt_cluster_modules_parse(const char *text, size_t len)
{
    if (!text || len > RT_CLUSTER_MODULES_TEXT_MAX)
        return NULL;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_array(doc) || json_array_size(doc) > RT_CLUSTER_MODULES_MAX) {
        json_decref(doc);
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(doc, i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        json_t *functions = names_copy(json_object_get(m, "functions"));
        json_t *classes = names_copy(json_object_get(m, "classes"));
        json_t *entry = name && module_name_valid(name) && functions && classes
                            ? json_pack("{s:s,s:O,s:O}", "name", name, "functions", functions,
                                        "classes", classes)
                            : NULL;
        json_decref(functions);
        json_decref(classes);
        if (!entry || json_array_append_new(out, entry) != 0) {
            json_decref(out);
            json_decref(doc);
            return NULL;
        }
    }
    json_decref(doc);
    return out;
}

const char *rt_cluster_modules_find(const json_t *modules, const char *name, bool is_class)
{
    if (!modules || !name)
        return NULL;
    size_t i, k;
    const json_t *m, *v;
    json_array_foreach(modules, i, m)
    {
        json_array_foreach(json_object_get(m, is_class ? "classes" : "functions"), k, v)
        {
            const char *s = json_string_value(v);
            if (s && strcmp(s, name) == 0)
                return json_string_value(json_object_get(m, "name"));
        }
    }
    return NULL;
}
