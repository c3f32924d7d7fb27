"""The webhook step's pinned http.client poster against a real loopback HTTP server: keep-alive
reuse, the name kept as Host while connecting to the checked address, private addresses
refused unless allowed, a server-closed keep-alive connection retried once, no redirects."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from liebian.automation.webhook_http import PinnedPoster
from liebian.kit.netguard import ForbiddenAddress


@contextmanager
def server(close_after: int = 0) -> Iterator[dict[str, Any]]:
    seen: dict[str, Any] = {"hosts": [], "peers": set(), "bodies": [], "n": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            seen["bodies"].append(self.rfile.read(int(self.headers["Content-Length"])))
            seen["hosts"].append(self.headers["Host"])
            seen["peers"].add(self.client_address)
            seen["n"] += 1
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:9/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            if close_after and seen["n"] % close_after == 0:
                self.close_connection = True  # without saying so: a stale keep-alive

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    seen["port"] = httpd.server_address[1]
    try:
        yield seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_keep_alive_host_and_pinning() -> None:
    with server() as seen:
        port = seen["port"]
        poster = PinnedPoster(timeout=5, allow_all=True)
        try:
            for i in range(3):
                got = poster.post(f"http://127.0.0.1:{port}/hook", b'{"i": %d}' % i,
                                  {"Idempotency-Key": f"k{i}"})  # fmt: skip
                assert got.status == 200
            assert len(seen["peers"]) == 1  # one kept-alive connection
            assert seen["bodies"] == [b'{"i": 0}', b'{"i": 1}', b'{"i": 2}']
            # A redirect is not followed: the step sees the 302 (a failed attempt).
            assert poster.post(f"http://127.0.0.1:{port}/moved", b"{}", {}).status == 302
        finally:
            poster.close()
        # A name resolved once and checked: connects to the checked address, the name is
        # the Host header.
        loopback = [ipaddress.ip_network("127.0.0.0/8")]
        named = PinnedPoster(timeout=5, allowed=loopback,
                             resolver=lambda host, p: ["127.0.0.1"])  # fmt: skip
        try:
            assert named.post(f"http://hooks.example:{port}/h", b"{}", {}).status == 200
            assert seen["hosts"][-1] == f"hooks.example:{port}"
        finally:
            named.close()


def test_private_addresses_are_refused() -> None:
    strict = PinnedPoster(timeout=5)
    with pytest.raises(ForbiddenAddress):
        strict.post("http://127.0.0.1:9/hook", b"{}", {})
    rebinding = PinnedPoster(timeout=5, resolver=lambda host, p: ["8.8.8.8", "10.0.0.5"])
    with pytest.raises(ForbiddenAddress):
        rebinding.post("http://hooks.example/hook", b"{}", {})


def test_a_stale_keep_alive_connection_is_retried_once() -> None:
    with server(close_after=1) as seen:
        poster = PinnedPoster(timeout=5, allow_all=True)
        try:
            for i in range(4):
                url = f"http://127.0.0.1:{seen['port']}/hook"
                assert poster.post(url, b"%d" % i, {}).status == 200
        finally:
            poster.close()
        assert seen["bodies"] == [b"0", b"1", b"2", b"3"]
