/* Request framing checks (RFC 9112 sections 5, 6 and 3.2) and request-target limits, made
 * when the headers are in and before any body is read. See framing.h. */
#include "api/framing.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/problem.h"

/* ---- the header section -------------------------------------------------------------- */

/* What one pass over the request's header fields found. */
typedef struct framing_scan {
    const char *bad_name; /* the first field name that is not a token, or NULL */
    size_t bad_name_len;
    unsigned cl_fields; /* Content-Length fields */
    unsigned long long cl;
    bool cl_bad;          /* a Content-Length that is not a decimal number */
    bool cl_differ;       /* two Content-Length fields with different values */
    unsigned te_fields;   /* Transfer-Encoding fields */
    unsigned te_codings;  /* transfer codings listed, over all of them */
    unsigned te_chunked;  /* how many of them were "chunked" */
    bool te_last_chunked; /* the last coding listed was "chunked" */
    bool te_bad;          /* an element that is not a transfer coding */
} framing_scan;

/* RFC 9110 5.6.2: tchar. */
static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return n == strlen(want) && strncasecmp(name, want, n) == 0;
}

/* One Content-Length field: a decimal number, the same in every such field (RFC 9112 6.3:
 * different values are an unrecoverable framing error). */
static void scan_content_length(framing_scan *s, const char *v, size_t n)
{
    unsigned long long x = 0;
    bool ok = n > 0 && n <= 19; /* 19 digits cannot overflow */
    for (size_t i = 0; ok && i < n; i++) {
        ok = v[i] >= '0' && v[i] <= '9';
        x = x * 10 + (unsigned long long)(v[i] - '0');
    }
    if (!ok)
        s->cl_bad = true;
    else if (s->cl_fields > 0 && x != s->cl)
        s->cl_differ = true;
    s->cl = x;
    s->cl_fields++;
}

/* One Transfer-Encoding field: a comma-separated list of codings (RFC 9110 5.6.1: empty
 * elements are allowed and ignored), each a token with optional parameters. Several fields
 * make one list in order (RFC 9110 5.3). */
static void scan_transfer_encoding(framing_scan *s, const char *v, size_t n)
{
    s->te_fields++;
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i == n)
            break;
        size_t start = i;
        while (i < n && is_tchar((unsigned char)v[i]))
            i++;
        size_t name_len = i - start;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        bool has_params = i < n && v[i] == ';';
        if (name_len == 0 || (i < n && v[i] != ',' && !has_params)) {
            s->te_bad = true;
            return;
        }
        while (i < n && v[i] != ',')
            i++; /* parameters: chunked takes none, and no other coding is implemented */
        bool chunked = !has_params && name_is(v + start, name_len, "chunked");
        s->te_codings++;
        s->te_chunked += chunked;
        s->te_last_chunked = chunked;
    }
}

static enum MHD_Result scan_field(void *cls, enum MHD_ValueKind kind, const char *name,
                                  size_t name_len, const char *value, size_t value_len)
{
    framing_scan *s = cls;
    (void)kind;
    if (!is_token(name, name_len)) {
        if (!s->bad_name) {
            s->bad_name = name;
            s->bad_name_len = name_len;
        }
        return MHD_YES;
    }
    if (!value)
        value = "";
    if (name_is(name, name_len, "Content-Length"))
        scan_content_length(s, value, value_len);
    else if (name_is(name, name_len, "Transfer-Encoding"))
        scan_transfer_encoding(s, value, value_len);
    return MHD_YES;
}

/* A field name fit for a problem's detail: printable ASCII, others shown as '?', at most
 * 64 bytes. */
static void printable_name(char *out, size_t size, const char *name, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size && i < 64; i++) {
        unsigned char c = (unsigned char)name[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = '\0';
}

int api_framing_check(api_request *req, const char *version)
{
    framing_scan s = {0};
    MHD_get_connection_values_n(req->conn, MHD_HEADER_KIND, scan_field, &s);

    if (s.bad_name) {
        /* Typically "Transfer-Encoding : chunked": libmicrohttpd keeps the space in the
         * name, so it would not see the field while a proxy might (RFC 9112 5.1). */
        char shown[72];
        printable_name(shown, sizeof(shown), s.bad_name, s.bad_name_len);
        api_problemf(req, 400, "BadRequest",
                     "the header field name '%s' is not a token (no whitespace may come before "
                     "the colon)",
                     shown);
        return -1;
    }
    if (s.cl_bad || s.cl_differ) {
        api_problem(req, 400, "BadRequest",
                    s.cl_bad ? "Content-Length is not a number"
                             : "the request has Content-Length fields with different values",
                    NULL);
        return -1;
    }
    if (s.te_fields == 0)
        return 0;
    if (s.cl_fields > 0) {
        api_problem(req, 400, "BadRequest",
                    "a request must not carry both Transfer-Encoding and Content-Length", NULL);
        return -1;
    }
    if (version && strcmp(version, MHD_HTTP_VERSION_1_0) == 0) {
        /* RFC 9112 6.1: faulty framing in HTTP/1.0, where the coding did not exist. */
        api_problem(req, 400, "BadRequest", "Transfer-Encoding is not allowed in HTTP/1.0", NULL);
        return -1;
    }
    if (s.te_bad || s.te_codings == 0 || !s.te_last_chunked || s.te_chunked != 1) {
        /* RFC 9112 6.3: without chunked as the final coding, applied once, the body's
         * length cannot be known. */
        api_problem(req, 400, "BadRequest",
                    "Transfer-Encoding must end with chunked, applied once; rayd takes "
                    "exactly 'Transfer-Encoding: chunked'",
                    NULL);
        return -1;
    }
    if (s.te_codings > 1) {
        /* RFC 9112 6.1: a transfer coding the server does not understand. */
        api_problem(req, 501, "NotImplemented",
                    "rayd implements no transfer coding but chunked; send the body with "
                    "'Transfer-Encoding: chunked' or a Content-Length",
                    NULL);
        return -1;
    }
    return 0;
}

/* ---- the request target -------------------------------------------------------------- */

/* The marks api_uri_check returns in place of a request: their addresses are what counts. */
static const char uri_marks[2];
#define MARK_TOO_LONG ((void *)&uri_marks[0])
#define MARK_TOO_MANY_ARGS ((void *)&uri_marks[1])

void *api_uri_check(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    if (!uri)
        return NULL;
    size_t len = strnlen(uri, API_URI_MAX + 1);
    const char *query = strchr(uri, '?');
    size_t args = 0;
    if (query) {
        args = 1;
        for (const char *p = query + 1; *p && args <= API_QUERY_ARGS_MAX; p++)
            args += *p == '&';
    }
    if (len <= API_URI_MAX && args <= API_QUERY_ARGS_MAX)
        return NULL;
    if (query) {
        /* libmicrohttpd 0.9.75 splits the query right after this call, allocating each
         * argument from the connection's memory; when that runs out it queues its own 431
         * and then resets the connection's state, so the connection stalls until its idle
         * timeout. uri points into the connection's (writable) read buffer, and the query
         * starts after this '?': ending the string there leaves no arguments to split. The
         * request is refused anyway (api_uri_refuse), so nothing reads them.
         *
         * Not covered: a target with a NUL byte before its '?' hides the query from this
         * callback (it sees a C string) but not from libmicrohttpd, which then stalls as
         * before, until the idle timeout: no worse than any client that goes silent. */
        ((char *)query)[1] = '\0';
    }
    return len > API_URI_MAX ? MARK_TOO_LONG : MARK_TOO_MANY_ARGS;
}

bool api_uri_refused(const void *con_cls)
{
    return con_cls == MARK_TOO_LONG || con_cls == MARK_TOO_MANY_ARGS;
}

enum MHD_Result api_uri_refuse(api_request *req, const void *mark)
{
    if (mark == MARK_TOO_LONG)
        return api_problemf(req, 414, "URITooLong", "the request target is longer than %d bytes",
                            API_URI_MAX);
    return api_problemf(req, 414, "URITooLong",
                        "the request target has more than %d query arguments", API_QUERY_ARGS_MAX);
}
