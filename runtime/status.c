/* Names for rt_status values, for logs and messages. */
#include "runtime/status.h"

const char *rt_status_name(rt_status status)
{
    switch (status) {
    case RT_OK: return "RT_OK";
    case RT_ENOMEM: return "RT_ENOMEM";
    case RT_ENOTFOUND: return "RT_ENOTFOUND";
    case RT_ELOST: return "RT_ELOST";
    case RT_EFULL: return "RT_EFULL";
    case RT_EINVAL: return "RT_EINVAL";
    case RT_EEXIST: return "RT_EEXIST";
    case RT_EPENDING: return "RT_EPENDING";
    case RT_ELIMIT: return "RT_ELIMIT";
    case RT_ESTATE: return "RT_ESTATE";
    case RT_ESHUTDOWN: return "RT_ESHUTDOWN";
    }
    return "RT_EUNKNOWN";
}
