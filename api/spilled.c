/* Spilled objects in the HTTP layer: responses served from spill files (a spilled
 * object's bytes go from its file to the socket by sendfile, not through memory), and the
 * spill figures of /v1/status. */
#include <fcntl.h>
#include <unistd.h>

#include "api/request.h"

void api_system_spill_status(json_t *store, const rt_store_stats *s)
{
    static const char *const ON_FULL[] = {"evict", "refuse", "spill"};
    json_object_set_new(store, "on_full", json_string(ON_FULL[s->on_full]));
    json_object_set_new(store, "spilled", json_integer((json_int_t)s->spilled));
    json_object_set_new(store, "spilled_bytes", json_integer((json_int_t)s->spilled_bytes));
    json_object_set_new(store, "spills", json_integer((json_int_t)s->spills));
    json_object_set_new(store, "restores", json_integer((json_int_t)s->restores));
    json_object_set_new(store, "restored_bytes", json_integer((json_int_t)s->restored_bytes));
    json_object_set_new(store, "memory_objects",
                        json_integer((json_int_t)(s->objects - s->spilled)));
    json_object_set_new(store, "spill_write_bytes", json_integer((json_int_t)s->disk.write_bytes));
    json_object_set_new(store, "spill_thread_seconds", json_real(s->spill_thread_seconds));
    json_object_set_new(store, "spill_files", json_integer((json_int_t)s->disk.files));
    json_object_set_new(store, "spill_disk_bytes", json_integer((json_int_t)s->disk.disk_bytes));
    json_object_set_new(store, "spill_limit", json_integer((json_int_t)s->disk.disk_limit));
    json_object_set_new(store, "spill_removed_at_start",
                        json_integer((json_int_t)s->disk.removed_at_start));
}

struct MHD_Response *api_response_from_spilled(api_request *req, const rt_spilled *sp,
                                               size_t offset, size_t len)
{
    int fd = fcntl(rt_spilled_fd(sp), F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct MHD_Response *resp =
        MHD_create_response_from_fd_at_offset64(len, fd, (uint64_t)(sp->offset + offset));
    if (!resp) {
        close(fd);
        return NULL;
    }
    req->bytes_out = len;
    return resp;
}
