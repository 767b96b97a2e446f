/* Every route handler, one file per resource: api/objects.c, api/waiting.c,
 * api/system.c. Each answers one request (see api/request.h). */
#ifndef RAYD_API_HANDLERS_H
#define RAYD_API_HANDLERS_H

#include "api/request.h"

/* api/system.c */
enum MHD_Result api_system_healthz(api_request *req);
enum MHD_Result api_system_status(api_request *req);
enum MHD_Result api_system_openapi_yaml(api_request *req);
enum MHD_Result api_system_openapi_json(api_request *req);

/* api/objects.c */
enum MHD_Result api_objects_put(api_request *req);
enum MHD_Result api_objects_put_batch(api_request *req);
enum MHD_Result api_objects_list(api_request *req);
enum MHD_Result api_objects_get(api_request *req); /* GET and HEAD */
enum MHD_Result api_objects_delete(api_request *req);
enum MHD_Result api_objects_meta(api_request *req);

/* api/waiting.c */
enum MHD_Result api_objects_get_batch(api_request *req);
enum MHD_Result api_objects_wait(api_request *req);

#endif
