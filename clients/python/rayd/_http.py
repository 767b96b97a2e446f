"""The HTTP transport: a pool of keep-alive connections shared by threads, retries that are
safe, and the headers every request carries.

Standard library only (``http.client``). One ``Transport`` per client; any number of
threads may call ``request`` at once: each request takes an idle connection from the pool
(or opens one) and gives it back once the answer is read whole.
"""
from __future__ import annotations

import contextvars
import http.client
import json
import random
import select
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import (ProtocolError, RaydConnectionError, RaydError)

__version__ = "0.1.0"

# X-Request-Id and traceparent to send with every request made in this context (see
# rayd.request_context; a worker sets them from the call it is answering).
_context: "contextvars.ContextVar[Optional[Dict[str, str]]]" = contextvars.ContextVar(
    "rayd_request_context", default=None)


class Response:
    """A whole answer: status, headers (lower-case names), body bytes."""

    __slots__ = ("status", "headers", "body", "url")

    def __init__(self, status: int, headers: Dict[str, str], body: bytes, url: str):
        self.status, self.headers, self.body, self.url = status, headers, body, url

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def request_id(self) -> Optional[str]:
        return self.headers.get("x-request-id")

    def is_json(self) -> bool:
        ct = self.content_type.split(";", 1)[0].strip().lower()
        return ct == "application/json" or ct.endswith("+json")

    def json(self) -> Any:
        """The body as JSON; ``ProtocolError`` naming the URL if it is not."""
        if not self.is_json():
            raise self.not_rayd("a JSON body was expected")
        try:
            return json.loads(self.body)
        except ValueError:
            raise self.not_rayd("the JSON body does not parse") from None

    def not_rayd(self, why: str) -> ProtocolError:
        snippet = self.body[:200].decode("utf-8", "replace").strip()
        return ProtocolError(
            "%s answered something rayd never answers (%s): HTTP %d, Content-Type %r%s. "
            "Is rayd listening at that address?" % (
                self.url, why, self.status, self.content_type or "(none)",
                ", body %r" % snippet if snippet else ""))

    def error(self) -> RaydError:
        """The problem+json answer as an exception of the class its title names."""
        ct = self.content_type.split(";", 1)[0].strip().lower()
        if ct == "application/problem+json":
            try:
                doc = json.loads(self.body)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("title"), str):
                return RaydError.from_problem(doc, self.request_id)
        return self.not_rayd("an error without a problem+json body")


def _backoff(attempt: int) -> float:
    return min(2.0, 0.05 * (2 ** attempt)) * (0.5 + random.random())


class Transport:
    """Keep-alive connections to one rayd, safe to share between threads.

    ``retries``: how many times a request is tried again after a connection failure or a
    ``429``/``503`` answer carrying ``Retry-After`` (which mean nothing was done). A request
    that may have reached the server is only tried again when repeating it is harmless:
    reads, ``PUT``, ``DELETE``, and ``POST``s that carry an ``Idempotency-Key``.
    """

    def __init__(self, address: str, *, token: Optional[str] = None, timeout: float = 30.0,
                 retries: int = 3, headers: Optional[Mapping[str, str]] = None,
                 max_idle: int = 32):
        u = urllib.parse.urlsplit(address)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("rayd address must be http://host:port or https://host:port, "
                             "got %r" % address)
        self.address = address.rstrip("/")
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._base_headers = {"User-Agent": "rayd-python/" + __version__,
                              "Accept": "application/json, */*"}
        if token:
            self._base_headers["Authorization"] = "Bearer " + token
        if headers:
            self._base_headers.update(headers)
        self._idle: List[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._max_idle = max_idle
        self._closed = False

    # ---- connections ----------------------------------------------------------------

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _take(self, timeout: float) -> Tuple[http.client.HTTPConnection, bool]:
        """An idle connection that is still open (and True), or a new one (and False)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new_connection(timeout), False
            sock = conn.sock
            try:
                # An idle keep-alive connection has nothing to read; if it is readable, the
                # server closed it (its idle timeout): drop it rather than fail on it.
                if sock is None or select.select([sock], [], [], 0)[0]:
                    conn.close()
                    continue
                sock.settimeout(timeout)
            except (OSError, ValueError):
                conn.close()
                continue
            return conn, True

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Closes every idle connection; connections in use close when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    # ---- requests --------------------------------------------------------------------

    def headers_for(self, extra: Optional[Mapping[str, str]]) -> Dict[str, str]:
        h = dict(self._base_headers)
        ctx = _context.get()
        if ctx:
            h.update(ctx)
        if extra:
            h.update(extra)
        return h

    def url(self, path: str) -> str:
        return self.address + path

    def request(self, method: str, path: str, body: Optional[bytes] = None, *,
                headers: Optional[Mapping[str, str]] = None, safe: Optional[bool] = None,
                wait: float = 0.0) -> Response:
        """Sends one request (retrying as the class says) and reads the whole answer.

        ``safe`` says whether repeating the request is harmless (default: by method, and a
        ``POST`` with an ``Idempotency-Key`` is). ``wait`` is how long the server may hold
        the request before answering; the socket timeout is that plus ``timeout``.
        """
        hdrs = self.headers_for(headers)
        if safe is None:
            safe = method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS") or \
                "Idempotency-Key" in hdrs
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        target = self._prefix + path
        sock_timeout = self.timeout + wait
        attempt = 0
        while True:
            conn, reused = self._take(sock_timeout)
            sent = False
            try:
                conn.request(method, target, body=body, headers=hdrs)
                sent = True
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                # A reused connection that failed may simply have been closed by the server
                # as we sent: one more try on a fresh connection, whatever the request, if
                # nothing was answered and the request is safe or was never sent.
                can_retry = attempt < self.retries and (safe or not sent)
                if isinstance(e, socket.timeout) and sent:
                    can_retry = can_retry and safe
                if not can_retry:
                    raise RaydConnectionError(
                        "cannot reach rayd at %s (%s %s): %s" % (
                            self.address, method, path, e or type(e).__name__)) from e
                if not reused:
                    time.sleep(_backoff(attempt))
                attempt += 1
                continue
            res = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                           self.url(path))
            if resp.will_close:
                conn.close()
            else:
                self._give_back(conn)
            if res.status in (429, 503) and attempt < self.retries:
                after = _retry_after(res.headers.get("retry-after"))
                if after is not None:
                    time.sleep(min(after, 5.0) + random.random() * 0.05)
                    attempt += 1
                    continue
            return res


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
