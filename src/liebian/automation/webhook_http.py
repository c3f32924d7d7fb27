"""The webhook step's HTTP client: http.client with keep-alive, pinned to a checked address.

httpx spent ~700 µs of CPU per POST on the loopback benchmark (about half of a 3-step
journey's CPU per person); ``http.client`` ~130 µs. This client keeps what the executor needs
from ``kit.netguard.PinnedTransport``: the host is resolved once per request and every
address it has must be public (or allowed), the connection goes to the address that was
checked, the name stays the Host header and the TLS server name (SNI and the certificate's
hostname check), redirects are not followed (a 3xx is a failed attempt), and a timeout bounds
connect and read. One keep-alive connection per thread and target.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from liebian.kit.netguard import (
    Network,
    Resolver,
    literal_address,
    resolve_checked,
    system_resolver,
)

# A reply body is read to keep the connection usable; a bigger one closes it instead.
MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class Reply:
    status: int


_MAX_LINE = 65536
_MAX_HEADERS = 100


class _Response(http.client.HTTPResponse):
    """``http.client``'s response with the header block parsed by a plain loop instead of
    the ``email`` package's parser (~40 µs a reply, most of a loopback POST's client CPU).
    The rest is ``HTTPResponse.begin`` of CPython 3.11: 1xx replies skipped, chunked bodies,
    Content-Length, the connection's close rule."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            self._header_lines()
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        msg = http.client.HTTPMessage()
        name = ""
        for line in self._header_lines():
            text = line.decode("iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and name:  # an obsolete folded continuation
                msg.replace_header(name, f"{msg[name]} {text.strip()}")
                continue
            name, sep, value = text.partition(":")
            if not sep:
                continue  # not a header line: ignored, as the email parser's defects are
            msg[name] = value.strip()
        self.headers = self.msg = msg
        encoding = msg.get("transfer-encoding")
        self.chunked = bool(encoding and encoding.lower() == "chunked")
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = msg.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200:
            self.length = 0
        if self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True

    def _header_lines(self) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            line = self.fp.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                raise http.client.LineTooLong("header line")
            if line in (b"\r\n", b"\n", b""):
                return lines
            lines.append(line)
            if len(lines) > _MAX_HEADERS:
                raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")


class _PinnedHTTP(http.client.HTTPConnection):
    response_class = _Response

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(http.client.HTTPSConnection):
    response_class = _Response

    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


class PinnedPoster:
    def __init__(
        self,
        *,
        timeout: float,
        allow_all: bool = False,
        allowed: Sequence[Network] = (),
        resolver: Resolver = system_resolver,
    ) -> None:
        self.timeout = timeout
        self.allow_all = allow_all
        self.allowed = tuple(allowed)
        self.resolver = resolver
        self._tls = ssl.create_default_context()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[http.client.HTTPConnection] = []

    def _pool(self) -> dict[tuple[str, str, int, str], http.client.HTTPConnection]:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """POST ``body``; the status of the reply. Raises OSError / http.client errors on
        transport failures and ``ForbiddenAddress`` for an address that is not allowed."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        if self.allow_all:
            address = str(literal_address(host) or host)
        else:
            address = resolve_checked(host, port, self.allowed, self.resolver)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (scheme, host, port, address)
        pool = self._pool()
        conn = pool.get(key)
        reused = conn is not None
        if conn is None:
            conn = self._open(scheme, host, port, address)
            pool[key] = conn
        try:
            return self._exchange(conn, path, body, headers)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()
            pool.pop(key, None)
            if not reused:
                raise
            # A kept-alive connection the server had closed: once more on a new one (the
            # receiver dedupes by Idempotency-Key should the first have arrived after all).
            conn = self._open(scheme, host, port, address)
            pool[key] = conn
            return self._exchange(conn, path, body, headers)
        except BaseException:
            conn.close()
            pool.pop(key, None)
            raise

    def _open(self, scheme: str, host: str, port: int, address: str) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = _PinnedHTTPS(host, port, address, self.timeout, self._tls)
        else:
            conn = _PinnedHTTP(host, port, address, self.timeout)
        with self._lock:
            self._all.append(conn)
        return conn

    def _exchange(
        self, conn: http.client.HTTPConnection, path: str, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        conn.request("POST", path, body=body, headers=dict(headers))
        response = conn.getresponse()
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            conn.close()
        else:
            response.read(MAX_BODY + 1)
            if not response.isclosed():
                conn.close()  # more than MAX_BODY: not worth reading to keep the connection
        if response.will_close:
            conn.close()
        return Reply(response.status)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
