"""A refused ingestion request never breaks the client's keep-alive connection.

Seen under load (session 11): a client that sent a bad key, a bad Idempotency-Key or a body
over the limit on a kept-alive connection sometimes had its *next* request on that connection
fail with "Server disconnected without sending a response". The lean ingestion app answered
the refusal before reading the body, and the server then dropped the connection whose unread
body it could not skip, without saying so — while the client, told nothing, reused it.

The contract here, on a real ``liebian serve`` (granian, as in production): after any refusal
either the connection is still usable (the next request on it is answered), or the refusal
said ``Connection: close`` so the client opens a new one. ``http.client`` reuses a connection
unless the response said close, and never retries on its own: a dropped connection fails the
test instead of being papered over.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
from collections.abc import Iterator
from pathlib import Path

import pytest

from faults_support import Server

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    data_dir: Path = tmp_path_factory.mktemp("keepalive")
    server = Server(data_dir, env={"LIEBIAN_MAX_BODY_BYTES": str(512 * 1024)})
    try:
        yield server, server.key()
    finally:
        server.stop()


def _events(n: int, pad: int = 0) -> bytes:
    return json.dumps(
        [
            {
                "event": "page_view",
                "event_id": f"ka-{i}-{pad}",
                "user_id": f"u{i}",
                "properties": {"path": "/" + "x" * pad},
            }
            for i in range(n)
        ]
    ).encode()


def _post(
    conn: http.client.HTTPConnection,
    body: bytes,
    headers: dict[str, str],
    *,
    split: bool = False,
    path: str = "/api/v1/events",
) -> tuple[int, str | None, bytes]:
    """POST ``body``; with ``split``, the second half only once the server has answered or
    had half a second to: a server that answers before it has read the body does so while
    the rest is still on its way — the race the load showed, made to happen every time.

    A server may answer a body over its limit without reading it and close: sending the rest
    may then fail, and the answer is still read (as httpx does)."""
    conn.putrequest("POST", path)
    for name, value in {**headers, "Content-Length": str(len(body))}.items():
        conn.putheader(name, value)
    half = len(body) // 2 if split else 0
    conn.endheaders(message_body=body[:half] or None)
    assert conn.sock is not None
    if split:
        select.select([conn.sock], [], [], 0.5)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.send(body[half:])
    response = conn.getresponse()
    data = response.read()
    return response.status, response.getheader("connection"), data


BOGUS = "lb_" + "b" * 43

# (what is wrong, the headers it goes with, the body, the status it must get)
REFUSALS = [
    ("a bogus key, small body", {"Authorization": f"Bearer {BOGUS}"}, _events(3), 401),
    ("a bogus key, 200 KB body", {"Authorization": f"Bearer {BOGUS}"}, _events(400, 400), 401),
    ("no key at all, 200 KB body", {"Authorization": ""}, _events(400, 400), 401),
    ("a 300-character Idempotency-Key", {"Idempotency-Key": "k" * 300}, _events(400, 400), 422),
    ("a body over the limit", {}, _events(1300, 400), 413),
    ("malformed JSON", {}, b"[{" * 1000, 422),
]


@pytest.mark.parametrize(
    ("what", "extra", "body", "status"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_the_next_request_on_the_connection_is_answered(
    served: tuple[Server, str], what: str, extra: dict[str, str], body: bytes, status: int
) -> None:
    server, key = served
    good = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for round_ in range(4):
            headers = {k: v for k, v in {**good, **extra}.items() if v}
            got, connection, data = _post(conn, body, headers, split=round_ % 2 == 1)
            assert got == status, (what, got, data[:200])
            assert b"error" in data
            if got == 413:  # the body was left unread: the answer must say so
                assert connection == "close", (what, connection)
            # The next request: on the same connection unless the refusal said close.
            ok, _, data = _post(conn, _events(2, round_), good)
            assert ok == 202, (what, ok, data[:200])
            assert json.loads(data)["accepted"] == 2
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("path", "extra", "status"),
    [
        ("/api/v1/links", {"Authorization": f"Bearer {BOGUS}"}, 401),
        ("/api/v1/links", {}, 422),  # 200 KB of events is not a link
        ("/api/v1/contacts/import", {"Authorization": f"Bearer {BOGUS}"}, 401),
        # A route the framework answers without reading the body at all: BodySizeLimit
        # reads it before the answer starts.
        ("/api/v1/no-such-route", {}, 404),
    ],
)
def test_the_framework_routes_keep_the_connection_too(
    served: tuple[Server, str], path: str, extra: dict[str, str], status: int
) -> None:
    """The same contract on the framework's side: the key gate in front of it, and routes
    that answer without reading the body."""
    server, key = served
    good = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for round_ in range(4):
            headers = {**good, **extra}
            got, _, data = _post(conn, _events(400, 400), headers, split=True, path=path)
            assert got == status, (path, got, data[:200])
            ok, _, data = _post(conn, _events(2, 100 + round_), good)
            assert ok == 202, (path, ok, data[:200])
    finally:
        conn.close()
