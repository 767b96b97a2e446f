/* Request framing (RFC 9112) checks that libmicrohttpd 0.9.75 does not make itself: how long
 * a request's body is must be unambiguous before rayd reads a byte of it, because a proxy
 * in front of rayd that reads the framing differently would let one request hide another
 * (request smuggling). And limits on the request target that keep libmicrohttpd's per-
 * connection memory from running out while it splits the query string (which 0.9.75 does
 * not recover from: the connection stalls until its idle timeout).
 *
 * Refused requests are answered before their body is read; libmicrohttpd then closes the
 * connection, as RFC 9112 asks after faulty framing. Thread-safe: no shared state. */
#ifndef RAYD_API_FRAMING_H
#define RAYD_API_FRAMING_H

#include <microhttpd.h>
#include <stdbool.h>

#include "api/request.h"

/* Longest request target (path and query) accepted, in bytes; longer ones get 414. */
#define API_URI_MAX 8192
/* Most query arguments accepted; more get 414. Each costs libmicrohttpd about 50 bytes of
 * the connection's memory, so this keeps a request line within it with room to spare. */
#define API_QUERY_ARGS_MAX 256

/* Checks the request's header section: every field name a token (no whitespace before the
 * colon), at most one Content-Length value, not both Transfer-Encoding and Content-Length,
 * and a Transfer-Encoding that is exactly "chunked" once, as the last coding. version is the
 * request's HTTP version as MHD gives it. Returns 0 when the framing is sound; otherwise
 * answers (400, or 501 for a transfer coding rayd does not implement) and returns -1. */
int api_framing_check(api_request *req, const char *version);

/* MHD_OPTION_URI_LOG_CALLBACK: sees the raw request target before libmicrohttpd splits its
 * query. Returns NULL for a target within the limits (the access handler then starts with
 * *con_cls NULL as usual), or a mark that api_uri_refused recognises; for a target with too
 * many arguments it also cuts the query off in libmicrohttpd's buffer, so that they are
 * never parsed (see framing.c). */
void *api_uri_check(void *cls, const char *uri, struct MHD_Connection *conn);

/* True when con_cls is a mark api_uri_check returned (not a request). */
bool api_uri_refused(const void *con_cls);

/* Answers 414 for the mark (see api_uri_refused) on req. */
enum MHD_Result api_uri_refuse(api_request *req, const void *mark);

#endif
