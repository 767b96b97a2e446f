/* Lingering close: when rayd answers a request before reading its body (413, 507, 401, a
 * framing error...), libmicrohttpd closes the connection with the client's body still
 * arriving, and the kernel then resets the connection. A client that sends its whole body
 * before it reads (Python's http.client, most simple clients) gets a broken pipe or a reset
 * instead of the answer. As nginx's lingering close does, rayd keeps the socket open after
 * the answer (the write side shut), reads and throws away what the client still sends, and
 * closes once the client has closed, or after a bounded amount or time.
 *
 * DESIGN
 * - In libmicrohttpd's completion callback (the answer is sent, the socket still open) the
 *   connection's socket is dup()ed, so that libmicrohttpd's close of its descriptor no
 *   longer resets the connection; libmicrohttpd removes its own descriptor from its epoll
 *   set before closing it, so it never sees this socket again.
 * - One thread watches the kept sockets with epoll and discards what arrives: at most
 *   max_bytes per connection (RAYD_LINGER_MAX), API_LINGER_IDLE seconds without data,
 *   API_LINGER_TIME seconds in all, API_LINGER_CONNECTIONS sockets at once (beyond that a
 *   connection is closed at once, as without lingering).
 *
 * Thread-safety: api_linger_connection may be called from any thread. */
#ifndef RAYD_API_LINGER_H
#define RAYD_API_LINGER_H

#include <microhttpd.h>
#include <stddef.h>

#define API_LINGER_IDLE 5.0        /* seconds without data before closing */
#define API_LINGER_TIME 30.0       /* seconds at most */
#define API_LINGER_CONNECTIONS 256 /* lingering sockets at most */

typedef struct api_linger api_linger;

/* Starts the lingering thread. max_bytes 0 turns lingering off (nothing is started; the
 * result is still a valid handle). Returns NULL on failure. */
api_linger *api_linger_new(size_t max_bytes);

/* Closes every lingering socket and stops the thread. NULL accepted. */
void api_linger_free(api_linger *linger);

/* Keeps conn's socket open to read and discard the rest of its request. Call only from
 * libmicrohttpd's completion callback of a request answered in full (the answer is sent),
 * on a connection libmicrohttpd is about to close. Does nothing when lingering is off or
 * full. */
void api_linger_connection(api_linger *linger, struct MHD_Connection *conn);

#endif
