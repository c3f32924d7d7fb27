"""Tests against a real Redis (scale mode): the URL, per-test key prefixes, an outage switch.

``LIEBIAN_TEST_REDIS_URL`` names the server (``.ci/run`` sets ``redis://127.0.0.1:6379/15``, a
database of its own); tests that need it skip with the reason when it is unset. Each test gets
a fresh key prefix and deletes only keys under it, so parallel workers and other users of the
database never collide.

:class:`TcpProxy` sits between a client and Redis and can be switched off and on: an outage
(connections cut, new ones refused) without touching the Redis server other tests share.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

REDIS_URL = os.environ.get("LIEBIAN_TEST_REDIS_URL", "")
needs_redis = pytest.mark.skipif(
    not REDIS_URL,
    reason="needs a Redis: set LIEBIAN_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15; .ci/run does)",
)


def fresh_prefix() -> str:
    return f"lbtest:{uuid.uuid4().hex[:12]}:"


def delete_prefix(prefix: str) -> None:
    """Delete every key under ``prefix`` (ours only; never FLUSHDB a shared database)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def prefix_fixture() -> Iterator[str]:
    prefix = fresh_prefix()
    yield prefix
    delete_prefix(prefix)


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until true; fail after ``timeout`` (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what or condition}")
        time.sleep(0.02)


def closed_port_url() -> str:
    """A redis:// URL on a local port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


class TcpProxy:
    """A switchable TCP relay to the test Redis, in threads (independent of any event loop)."""

    def __init__(self, target_url: str = "") -> None:
        parts = urlsplit(target_url or REDIS_URL)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._parts = parts
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        netloc = f"127.0.0.1:{self.port}"
        if self._parts.password:
            netloc = f":{self._parts.password}@{netloc}"
        return urlunsplit((self._parts.scheme, netloc, self._parts.path, "", ""))

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
