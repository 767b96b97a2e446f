"""The HTTP transport: a pool of keep-alive HTTP/1.1 connections shared by threads,
retries that are safe, and the headers every request carries.

Standard library only (``socket``, ``ssl``). One ``Transport`` per client; any number of
threads may call ``request`` at once: each request takes an idle connection from the pool
(or opens one) and gives it back once the answer is read whole. A request goes out in one
write and its answer is parsed by hand: the part of a call's cost that is the client's is
what the benchmark (tests/bench/clients.py) compares with raw http.client.
"""
from __future__ import annotations

import contextvars
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
    """A whole answer: status, headers (lower-case names), body bytes, and the URL asked."""

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
    return min(2.0, 0.05 * float(2 ** attempt)) * (0.5 + random.random())


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
        base = {"User-Agent": "rayd-python/" + __version__}
        if token:
            base["Authorization"] = "Bearer " + token
        if headers:
            base.update(headers)
        for k, v in base.items():
            if "\r" in k + v or "\n" in k + v:
                raise ValueError("header %s: CR and LF are not allowed" % k)
        # Sent with every request, formatted once.
        self._base_lines = "".join("%s: %s\r\n" % kv for kv in base.items())
        default_port = 443 if self._https else 80
        self._hostport = self._host if self._port == default_port else \
            "%s:%d" % ("[%s]" % self._host if ":" in self._host else self._host, self._port)
        self._idle: List[_Conn] = []
        self._lock = threading.Lock()
        self._max_idle = max_idle
        self._closed = False

    # ---- connections ----------------------------------------------------------------

    def _take(self, timeout: float) -> Tuple["_Conn", bool]:
        """An idle connection that is still open (and True), or a new one (and False)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return _Conn(self._host, self._port, self._https, timeout), False
            try:
                # An idle keep-alive connection has nothing to read; if it is readable, the
                # server closed it (its idle timeout): drop it rather than fail on it.
                if select.select([conn.sock], [], [], 0)[0]:
                    conn.close()
                    continue
                conn.set_timeout(timeout)
            except (OSError, ValueError):
                conn.close()
                continue
            return conn, True

    def _give_back(self, conn: "_Conn") -> None:
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
        lines = [method, " ", self._prefix, path, " HTTP/1.1\r\nHost: ", self._hostport,
                 "\r\n", self._base_lines]
        ctx = _context.get()
        names = set()
        for extra in (ctx, headers):
            if extra:
                for k, v in extra.items():
                    if "\r" in v or "\n" in v or "\r" in k or "\n" in k:
                        raise ValueError("header %s: CR and LF are not allowed" % k)
                    lines += (k, ": ", v, "\r\n")
                    names.add(k.lower())
        if safe is None:
            safe = method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS") or \
                "idempotency-key" in names
        if body is not None:
            lines += ("Content-Length: ", str(len(body)), "\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1")
        if body:
            data += body
        sock_timeout = self.timeout + wait
        attempt = 0
        while True:
            conn, reused, sent = None, False, False
            try:
                conn, reused = self._take(sock_timeout)
                conn.sock.sendall(data)
                sent = True
                status, hdrs, payload, will_close = conn.read_response(method)
            except _BadAnswer as e:
                if conn is not None:
                    conn.close()
                raise ProtocolError("%s answered something rayd never answers (%s). Is rayd "
                                    "listening at that address?" % (self.url(path), e)) from None
            except OSError as e:
                if conn is not None:
                    conn.close()
                # A reused connection may simply have been closed by the server as we sent:
                # try again on a fresh one if the request is safe to repeat or was never sent.
                can_retry = attempt < self.retries and (safe or not sent)
                if not can_retry:
                    raise RaydConnectionError(
                        "cannot reach rayd at %s (%s %s): %s" % (
                            self.address, method, path, e or type(e).__name__)) from e
                if not reused:
                    time.sleep(_backoff(attempt))
                attempt += 1
                continue
            if will_close:
                conn.close()
            else:
                self._give_back(conn)
            res = Response(status, hdrs, payload, self.url(path))
            if status in (429, 503) and attempt < self.retries:
                after = _retry_after(hdrs.get("retry-after"))
                if after is not None:
                    time.sleep(min(after, 5.0) + random.random() * 0.05)
                    attempt += 1
                    continue
            return res


class _BadAnswer(Exception):
    """An answer that is not HTTP/1.x as rayd speaks it."""


class _Closed(ConnectionError):
    """The server closed the connection before a whole answer."""


class _Conn:
    """One HTTP/1.1 connection: a request goes out in one write, the answer is parsed by
    hand (status line, headers, a Content-Length or chunked body). Lighter than
    http.client, whose header parsing goes through the email package."""

    __slots__ = ("sock", "_buf", "_timeout")

    def __init__(self, host: str, port: int, https: bool, timeout: float):
        sock = socket.create_connection((host, port), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if https:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self._buf = b""
        self._timeout = timeout

    def set_timeout(self, timeout: float) -> None:
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed("the server closed the connection")
        self._buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self._buf.find(b"\r\n")
            if i >= 0:
                line, self._buf = self._buf[:i], self._buf[i + 2:]
                return line
            if len(self._buf) > 65536:
                raise _BadAnswer("a header line over 64 KiB")
            self._fill()

    def _exactly(self, n: int) -> bytes:
        have = len(self._buf)
        if have >= n:
            out, self._buf = self._buf[:n], self._buf[n:]
            return out
        # Read the rest straight into a buffer of the right size: no copy per read.
        buf = bytearray(n)
        buf[:have] = self._buf
        self._buf = b""
        view = memoryview(buf)
        while have < n:
            k = self.sock.recv_into(view[have:])
            if not k:
                raise _Closed("the server closed the connection mid-body")
            have += k
        return bytes(buf)

    def read_response(self, method: str) -> Tuple[int, Dict[str, str], bytes, bool]:
        while True:
            status_line = self._line()
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise _BadAnswer("status line %r" % status_line[:80])
            status = int(parts[1])
            headers: Dict[str, str] = {}
            while True:
                line = self._line()
                if not line:
                    break
                name, sep, value = line.partition(b":")
                if not sep:
                    raise _BadAnswer("header line %r" % line[:80])
                k = name.strip().decode("latin-1").lower()
                v = value.strip().decode("latin-1")
                headers[k] = headers[k] + ", " + v if k in headers else v
            if 100 <= status < 200:
                continue  # an interim answer; the real one follows
            break
        conn_hdr = headers.get("connection", "").lower()
        will_close = "close" in conn_hdr or (parts[0] == b"HTTP/1.0" and
                                             "keep-alive" not in conn_hdr)
        if method == "HEAD" or status in (204, 304):
            return status, headers, b"", will_close
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = []
            while True:
                size_line = self._line().split(b";", 1)[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise _BadAnswer("chunk size %r" % size_line[:40]) from None
                if size == 0:
                    while self._line():  # trailers
                        pass
                    break
                body.append(self._exactly(size))
                if self._exactly(2) != b"\r\n":
                    raise _BadAnswer("a chunk without its CRLF")
            return status, headers, b"".join(body), will_close
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise _BadAnswer("Content-Length %r" % length[:40])
            return status, headers, self._exactly(int(length)), will_close
        # no length: the body runs to the end of the connection
        body = [self._buf]
        self._buf = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            body.append(chunk)
        return status, headers, b"".join(body), True


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
