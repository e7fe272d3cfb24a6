"""A local HTTP server for download tests: serves a folder on 127.0.0.1 (random
port), answers HEAD and GET with ``Range`` support, and fails on purpose when a
test scripts it to (N times 500, always 404, drop the connection mid-body).

Use the ``http_server`` fixture (``from http_server import http_server``) or
``ScriptedHTTPServer(root)`` as a context manager::

    server.fail("zips/a.zip", status=500, times=2)   # next 2 GETs answer 500
    server.status("zips/b.zip", 404)                 # always 404 (GET and HEAD)
    server.drop("zips/c.zip", after=1000, times=1)   # next GET: 1000 bytes, then close
    server.html("zips/a.zip", times=1)               # next GET: 200 text/html (a login/error page)
    server.cut("a.jpg", after=100, times=1)          # next GET: no Content-Length, 100 bytes, close
    server.short("zips/a.zip", length=500, times=1)  # next GET: Content-Length 500, 500 bytes (a short file)
    server.stall("zips/a.zip", after=1000)           # next GET: 1000 bytes, then nothing (until stop)
    server.trickle("zips/a.zip", interval=0.5)       # next GET: one byte every 0.5 s
    server.hang("zips/a.zip")                        # next GET: no answer at all (until stop)
    server.url("zips/a.zip")                         # http://127.0.0.1:PORT/zips/a.zip
    server.requests                                  # [(method, path, range header or None)]
"""
from __future__ import annotations

import re
import socket
import sys
import threading
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client hanging up is part of the tests
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class ScriptedHTTPServer:
    """Serve ``root`` over HTTP on 127.0.0.1 with scripted failures per path."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.requests: list[tuple[str, str, str | None]] = []
        self.ignore_range = False  # True: answer 200 with the whole file even to a Range request
        self._lock = threading.Lock()
        self._actions: dict[str, deque] = defaultdict(deque)
        self._fixed_status: dict[str, int] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # releases stalled and trickling answers

    # -- scripting -----------------------------------------------------------------
    @staticmethod
    def _key(path: str) -> str:
        return "/" + path.lstrip("/")

    def fail(self, path: str, status: int = 500, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` answer ``status`` (then it is served normally)."""
        with self._lock:
            self._actions[self._key(path)].extend([("status", status)] * times)

    def drop(self, path: str, after: int | None = None, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` send the headers (full length) and only
        ``after`` bytes of the body (default: half of what was asked), then close."""
        with self._lock:
            self._actions[self._key(path)].extend([("drop", after)] * times)

    def html(self, path: str, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` answer 200 with an HTML page (what a captive
        portal, a login wall or a misconfigured mirror sends)."""
        with self._lock:
            self._actions[self._key(path)].extend([("html", None)] * times)

    def cut(self, path: str, after: int | None = None, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` send no Content-Length, ``after`` bytes (default:
        half), then close cleanly: a dropped connection the client cannot see by length."""
        with self._lock:
            self._actions[self._key(path)].extend([("cut", after)] * times)

    def short(self, path: str, length: int, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` announce and send only ``length`` bytes."""
        with self._lock:
            self._actions[self._key(path)].extend([("short", length)] * times)

    def stall(self, path: str, after: int = 0, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` send the headers and ``after`` bytes, then nothing
        until the server stops (a hung connection)."""
        with self._lock:
            self._actions[self._key(path)].extend([("stall", after)] * times)

    def trickle(self, path: str, interval: float = 0.5, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` send one byte every ``interval`` seconds."""
        with self._lock:
            self._actions[self._key(path)].extend([("trickle", interval)] * times)

    def hang(self, path: str, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` get no answer at all, not even headers."""
        with self._lock:
            self._actions[self._key(path)].extend([("hang", None)] * times)

    def status(self, path: str, status: int) -> None:
        """Every request (GET and HEAD) for ``path`` answers ``status`` from now on."""
        with self._lock:
            self._fixed_status[self._key(path)] = status

    def url(self, path: str = "") -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/" + path.lstrip("/")

    def count(self, method: str, path: str) -> int:
        key = self._key(path)
        return sum(1 for m, p, _ in self.requests if m == method and p == key)

    # -- life cycle ----------------------------------------------------------------
    def start(self) -> "ScriptedHTTPServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                server._serve(self, head=True)

            def do_GET(self):
                server._serve(self, head=False)

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ScriptedHTTPServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        key = unquote(urlsplit(h.path).path)
        rng = h.headers.get("Range")
        with self._lock:
            self.requests.append(("HEAD" if head else "GET", key, rng))
            fixed = self._fixed_status.get(key)
            action = None
            if not head and self._actions[key]:
                action = self._actions[key].popleft()
        if fixed is not None:
            return self._send_status(h, fixed, head)
        if action and action[0] == "status":
            return self._send_status(h, action[1], head)
        if action and action[0] == "hang":
            self._stopping.wait(120)
            h.close_connection = True
            return
        if action and action[0] == "html":
            page = b"<!DOCTYPE html><html><body><h1>Please sign in</h1></body></html>\n"
            h.send_response(200)
            h.send_header("Content-Type", "text/html; charset=utf-8")
            h.send_header("Content-Length", str(len(page)))
            h.end_headers()
            h.wfile.write(page)
            return
        file = (self.root / key.lstrip("/")).resolve()
        if not file.is_file() or self.root.resolve() not in file.parents:
            return self._send_status(h, 404, head)
        data = file.read_bytes()
        size = len(data)
        start, end, code = 0, size - 1, 200
        if rng and not self.ignore_range:
            m = re.match(r"bytes=(\d+)-(\d*)$", rng.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size:
                    h.send_response(416)
                    h.send_header("Content-Range", f"bytes */{size}")
                    h.send_header("Content-Length", "0")
                    h.end_headers()
                    return
                code = 206
        body = data[start:end + 1]
        if action and action[0] in ("cut", "short", "stall", "trickle"):
            return self._send_hostile(h, action, body, size)
        h.send_response(code)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        if code == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        h.end_headers()
        if head:
            return
        if action and action[0] == "drop":
            n = action[1] if action[1] is not None else len(body) // 2
            h.wfile.write(body[:n])
            h.wfile.flush()
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        h.wfile.write(body)

    def _send_hostile(self, h: BaseHTTPRequestHandler, action: tuple, body: bytes, size: int) -> None:
        kind, arg = action
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        if kind == "short":
            body = body[:arg]
            h.send_header("Content-Length", str(len(body)))
        elif kind in ("stall", "trickle"):
            h.send_header("Content-Length", str(len(body)))
        else:  # cut: no length, the end of the connection is the end of the body
            h.send_header("Connection", "close")
        h.end_headers()
        try:
            if kind == "cut":
                h.wfile.write(body[: arg if arg is not None else len(body) // 2])
            elif kind == "short":
                h.wfile.write(body)
            elif kind == "stall":
                h.wfile.write(body[:arg])
                h.wfile.flush()
                self._stopping.wait(120)
            else:
                for i in range(len(body)):
                    h.wfile.write(body[i:i + 1])
                    h.wfile.flush()
                    if self._stopping.wait(arg):
                        break
            h.wfile.flush()
        except OSError:
            pass
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @staticmethod
    def _send_status(h: BaseHTTPRequestHandler, code: int, head: bool) -> None:
        body = f"status {code}\n".encode()
        h.send_response(code)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)


@pytest.fixture
def http_server(tmp_path):
    """A started ``ScriptedHTTPServer`` serving ``tmp_path / "www"`` (created empty)."""
    root = tmp_path / "www"
    root.mkdir()
    with ScriptedHTTPServer(root) as server:
        yield server
