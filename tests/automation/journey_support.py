"""Helpers for journey tests (a unique top-level module name): a settable clock, a counting
receiver on 127.0.0.1, a workspace with contacts."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday, 09:00 in Shanghai


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class Counting:
    url: str = ""
    keys: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        return sum(self.keys.values())


@contextmanager
def counting_receiver(fail_first: int = 0, delay: float = 0.0) -> Iterator[Counting]:
    state = Counting(fail_first=fail_first)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if delay:
                time.sleep(delay)
            with state.lock:
                if state.fail_first > 0:
                    state.fail_first -= 1
                    status = 503
                else:
                    state.keys[self.headers.get("Idempotency-Key", "")] += 1
                    state.bodies.append(orjson.loads(body))
                    status = 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/journey"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def workspace_with_contacts(sessions: Any, n: int) -> tuple[str, list[str]]:
    from liebian.contacts.service import ensure_ids
    from liebian.kit.db import session_scope
    from liebian.workspaces.service import create_workspace

    with session_scope(sessions) as session:
        ws = create_workspace(session, "旅程测试").id
        ids = ensure_ids(session, ws, {f"u{i:06d}" for i in range(n)})
    return ws, [ids[f"u{i:06d}"] for i in range(n)]


def make_tag(sessions: Any, ws: str, name: str) -> str:
    from liebian.contacts.tags import create_tag
    from liebian.kit.db import session_scope

    with session_scope(sessions) as session:
        return create_tag(session, ws, name, "#2f6fed", None).id


def active_runs_after(sessions: Any, deadline: float, poll: float = 0.05) -> int:
    """Poll until no journey run is active or ``time.monotonic()`` passes ``deadline``; the
    number still active when it returned (0: all finished)."""
    from sqlalchemy import func, select

    from liebian.automation.models import JourneyRun
    from liebian.kit.db import session_scope

    while True:
        with session_scope(sessions) as session:
            left = int(
                session.scalar(
                    select(func.count())
                    .select_from(JourneyRun)
                    .where(JourneyRun.status == "active")
                )
                or 0
            )
        if left == 0 or time.monotonic() >= deadline:
            return left
        time.sleep(poll)
