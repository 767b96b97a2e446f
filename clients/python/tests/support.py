"""Test support: a real rayd (build/rayd, or $RAYD_BIN) started for a test module.

``Rayd(remote_allow=[...], env={...})`` starts ``rayd --bind 127.0.0.1 --port 0`` and reads
its port from the ``listening`` log line; ``stop()`` sends SIGTERM and waits for the exit.
``free_port()`` reserves nothing: it asks the kernel for a port free now, for a worker
that rayd must be allowed to call before it starts.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))


def rayd_bin() -> str:
    b = os.environ.get("RAYD_BIN") or os.path.join(ROOT, "build", "rayd")
    if not os.path.isabs(b):
        b = os.path.join(ROOT, b)
    if not os.access(b, os.X_OK):
        raise RuntimeError("no rayd binary at %s: run `make -j2 build/rayd` or set RAYD_BIN"
                           % b)
    return b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rayd:
    """A rayd process for tests. ``url`` is its address once started."""

    def __init__(self, *args: str, remote_allow: Optional[List[str]] = None,
                 env: Optional[Dict[str, str]] = None):
        cmd = [rayd_bin(), "--bind", "127.0.0.1", "--port", "0", "--log-format", "json"]
        if remote_allow:
            cmd += ["--remote-allow", ",".join(remote_allow)]
        cmd += list(args)
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=e)
        self.lines: List[str] = []
        self._lines_lock = threading.Lock()
        self._listening = threading.Event()
        self.port = 0
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._drain_stderr, daemon=True)]
        for t in self._readers:
            t.start()
        if not self._listening.wait(10) or not self.port:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("rayd did not start: %s" % self.stderr_tail)
        self.url = "http://127.0.0.1:%d" % self.port

    stderr_tail = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            with self._lines_lock:
                self.lines.append(line)
            if not self.port and '"listening"' in line:
                try:
                    self.port = int(json.loads(line)["port"])
                except (ValueError, KeyError):
                    pass
                self._listening.set()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + raw.decode("utf-8", "replace"))[-2000:]
        self._listening.set()

    def log_lines(self) -> List[dict]:
        """rayd's JSON log lines so far."""
        out = []
        with self._lines_lock:
            lines = list(self.lines)
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_log(self, pred, timeout: float = 10.0) -> dict:
        """The first log line for which pred(line) is true, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while True:
            for d in self.log_lines():
                if pred(d):
                    return d
            if time.monotonic() > deadline:
                raise AssertionError("no such log line within %gs" % timeout)
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self._readers:
            t.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        return self.proc.returncode


class Proxy:
    """An HTTP/1.1 proxy on loopback in front of a server, for what a client does on the
    wire: it counts connections, records each request's method, path and headers, and can
    swallow the answer to a request (``drop_answer(pred)``): the request reaches the server,
    which does the work, and the client sees the connection close with no answer."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.connections = 0
        self.requests: List[dict] = []
        self._drop = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_answer(self, pred) -> None:
        """Swallow the answer to the next request for which pred(request dict) is true."""
        with self._lock:
            self._drop.append(pred)

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _read_message(f, is_request: bool):
        head = f.readline()
        if not head:
            return None
        lines = [head]
        headers = {}
        while True:
            line = f.readline()
            lines.append(line)
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length") or 0)
        body = f.read(n) if n else b""
        return head, b"".join(lines), headers, body

    def _serve(self, c: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self.target_port))
        cf, uf = c.makefile("rb"), up.makefile("rb")
        try:
            while True:
                req = self._read_message(cf, True)
                if req is None:
                    return
                head, raw, headers, body = req
                method, path = head.decode("latin-1").split(" ")[:2]
                info = {"method": method, "path": path, "headers": headers}
                with self._lock:
                    self.requests.append(info)
                    drop = next((p for p in self._drop if p(info)), None)
                    if drop is not None:
                        self._drop.remove(drop)
                up.sendall(raw + body)
                resp = self._read_message(uf, False)
                if resp is None:
                    return
                if drop is not None:
                    return  # the server did the work; the client gets no answer
                c.sendall(resp[1] + resp[3])
        except OSError:
            return
        finally:
            for x in (cf, uf, c, up):
                x.close()
