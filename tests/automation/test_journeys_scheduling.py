"""Picking due work promptly (decision 0034): the executor thread wakes on an enrolment and at
the earliest due time instead of at its next look, and a retry held up at a slow receiver
runs outside the batch, so the steps due beside it are not held up."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from journey_support import Clock, counting_receiver, workspace_with_contacts
from sqlalchemy import select

from liebian.app.runtime import Runtime
from liebian.automation import service
from liebian.automation.executor import Executor, ExecutorConfig, ExecutorThread
from liebian.automation.models import JourneyStepExecution as E
from liebian.kit.db import session_scope


def _journey(runtime: Runtime, ws: str, url: str) -> Any:
    with session_scope(runtime.sessions) as s:
        j = service.create(s, ws, "提醒", {"trigger": {"type": "manual"}, "entry": {"mode": "once"},
                           "steps": [{"id": "hello", "type": "webhook", "url": url}]},
                           allow_private_urls=True)  # fmt: skip
        service.publish(s, j, allow_private_urls=True)
        return j.id


def _rows(runtime: Runtime) -> dict[str, Any]:
    with session_scope(runtime.sessions) as s:
        return {r.run_id: r for r in s.scalars(select(E))}


def test_thread_wakes_on_enrolment_and_at_the_due_time(runtime: Runtime) -> None:
    ws, contacts = workspace_with_contacts(runtime.sessions, 2)
    with counting_receiver() as rx:
        jid = _journey(runtime, ws, rx.url)
        # A look every 60 s: only the wake-up on commit and the sleep until the next due time
        # can run these steps before the deadline below.
        ex = Executor(runtime.sessions, config=ExecutorConfig(allow_private=True), runtime=runtime)
        thread = ExecutorThread(ex, interval=60)
        thread.start()
        try:
            soon = datetime.now(UTC) + timedelta(seconds=1)
            with session_scope(runtime.sessions) as s:
                j = service.get(s, ws, jid)
                service.enrol(s, j, [contacts[0]], trigger="manual")
                service.enrol(s, j, [contacts[1]], trigger="manual", due=soon)
            deadline = time.monotonic() + 20
            while rx.total < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            thread.stop()
        assert rx.total == 2
    rows = list(_rows(runtime).values())
    assert {r.status for r in rows} == {"done"}
    # The step enrolled with a due time (found by it, not by "due after its row was written":
    # on a loaded machine the enrolment itself can take longer than the 1 s) was not started
    # before it was due.
    later = [r for r in rows if abs(r.due_at - soon) < timedelta(milliseconds=1)]
    assert len(later) == 1 and later[0].started_at >= later[0].due_at


@contextmanager
def _receiver(gate: threading.Event) -> Iterator[tuple[str, Counter[str]]]:
    """First POST of a key ending in ``:hello`` of the first run: 503; its second waits for
    ``gate`` (a receiver that has become slow). Every other POST: 200 at once."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    slow: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            key = self.headers.get("Idempotency-Key", "")
            with lock:
                if not slow:
                    slow.append(key)
                seen[key] += 1
                n = seen[key]
            if key == slow[0] and n == 2:
                gate.wait(30)
            status = 503 if key == slow[0] and n == 1 else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    finally:
        gate.set()
        server.shutdown()
        server.server_close()


def test_a_slow_retry_does_not_hold_up_the_batch(runtime: Runtime) -> None:
    ws, contacts = workspace_with_contacts(runtime.sessions, 3)
    clock = Clock()
    gate = threading.Event()
    with _receiver(gate) as (url, seen):
        jid = _journey(runtime, ws, url)
        config = ExecutorConfig(allow_private=True, http_timeout=5,
                                retry_backoff=timedelta(seconds=30))  # fmt: skip
        ex = Executor(runtime.sessions, clock=clock, config=config, runtime=runtime)
        try:
            with session_scope(runtime.sessions) as s:
                service.enrol(s, service.get(s, ws, jid), [contacts[0]], trigger="manual",
                              now=clock())  # fmt: skip
            ex.run_once()  # 503: given back for a retry in 30 s
            (first,) = _rows(runtime).values()
            assert first.status == "pending" and first.result.startswith("retry:")
            clock.advance(seconds=31)
            with session_scope(runtime.sessions) as s:
                service.enrol(s, service.get(s, ws, jid), contacts[1:], trigger="manual",
                              now=clock())  # fmt: skip
            got = ex.run_once()  # the retry (held at the receiver) and two first tries
            assert (got.claimed, got.retried, got.done) == (3, 1, 2)
            rows = _rows(runtime)
            # The new steps are done while the retry is still in flight (claimed, unmarked).
            assert rows[first.run_id].status == "pending"
            assert rows[first.run_id].claim_token is not None
            assert {r.status for k, r in rows.items() if k != first.run_id} == {"done"}
            gate.set()
            assert ex.drain_retries(timeout=20)
        finally:
            gate.set()
            ex.close()
        assert _rows(runtime)[first.run_id].status == "done"
        assert sorted(seen.values()) == [1, 1, 2]
