"""HTTP/1.1 persistent connections, as AWS endpoints keep them.

AWS service endpoints keep a connection open after a response (HTTP/1.1's default,
RFC 9112 section 9.3: "A recipient determines whether a connection is persistent or
not based on the protocol version and Connection header field"), and the SDKs pool
them. werkzeug's development server, under moto, answers every request with
``Connection: close``, because it cannot tell where an unread request body ends. So
each call paid a TCP connect on the client and a new thread on the emulator: the
benchmarks measured connection set-up rather than the worker.

Here the connection stays open when the request body has been read whole (the fault
middleware reads every body by its ``Content-Length``; what it left is drained), the
client did not ask to close, and the request was HTTP/1.1. ``close_all`` ends the open
connections when the emulator stops, so no client keeps talking to a stopped one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler

_open: set[socket.socket] = set()
_lock = threading.Lock()


class PersistentRequestHandler(MotoRequestHandler):  # type: ignore[misc]
    """moto's request handler, keeping the connection open between requests."""

    protocol_version = "HTTP/1.1"
    rfile: Any

    def setup(self) -> None:
        super().setup()
        # The status line and headers go out before the body, in two writes: without
        # this the body waits for the client's delayed ACK (40 ms) on a kept connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with _lock:
            _open.add(self.connection)

    def finish(self) -> None:
        with _lock:
            _open.discard(self.connection)
        super().finish()

    def run_wsgi(self) -> None:
        # werkzeug reads whatever the client sent after the request (it closes the
        # connection anyway): on a kept connection that is the next request, so the
        # body stream goes quiet once the response is on its way.
        connection: Any = self.rfile
        self._body = _RequestBody(connection)
        self.rfile = self._body
        try:
            super().run_wsgi()
        finally:
            self.rfile = connection

    def make_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().make_environ()
        try:
            self._length: int | None = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            self._length = None
        return environ

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection" and value.lower() == "close" and self._reusable():
            value = "keep-alive"
            self._body.quiet = True
        super().send_header(keyword, value)

    def _reusable(self) -> bool:
        """Whether the next request on this connection starts where this one ended."""
        if self.request_version != "HTTP/1.1" or self.headers.get("Transfer-Encoding"):
            return False
        if self.headers.get("Connection", "").lower() == "close" or self._length is None:
            return False
        unread = self._length - self._body.consumed
        return unread <= 0 or self._drain(unread)

    def _drain(self, unread: int) -> bool:
        try:
            return len(self._body.read(unread)) == unread
        except OSError:
            return False


class _RequestBody:
    """The connection's input while one request is served: counts what was read of it,
    and reads nothing more once ``quiet`` (the rest is the next request's)."""

    def __init__(self, stream: Any) -> None:
        self._stream, self.consumed, self.quiet = stream, 0, False

    def read(self, size: int = -1) -> bytes:
        return self._count(b"" if self.quiet else self._stream.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._count(b"" if self.quiet else self._stream.readline(size))

    def _count(self, data: bytes) -> bytes:
        self.consumed += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def close_all() -> None:
    """End every open connection (the emulator is stopping)."""
    with _lock:
        connections = list(_open)
    for connection in connections:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
