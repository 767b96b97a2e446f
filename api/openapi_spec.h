/* The OpenAPI document, embedded at build time from openapi/openapi.yaml by
 * openapi/embed.py (into build/.../gen/openapi_spec.c), so the binary serves the spec it
 * was built with. */
#ifndef RAYD_API_OPENAPI_SPEC_H
#define RAYD_API_OPENAPI_SPEC_H

extern const char rayd_openapi_yaml[];
extern const unsigned long rayd_openapi_yaml_len;
extern const char rayd_openapi_json[];
extern const unsigned long rayd_openapi_json_len;

#endif
