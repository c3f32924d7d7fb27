"""Large batches prepared by the ingest pool's processes (decision 0058): the same lines, answer
and hooks lines as the request thread makes; refusals as the same domain errors; a killed pool
process costs nothing but a fallback to the request thread, and the pool starts again. Then the
same through a real ``liebian serve``, with its pool process SIGKILLed while batches arrive."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from faults_support import Server
from liebian.events import ingest_pool, service
from liebian.events.hooks import HookQueue, HookRegistry
from liebian.events.ingest_pool import POOL_BYTES, HookFilter, IngestPool
from liebian.events.schemas import EventIn
from liebian.events.spool import Spool
from liebian.kit.errors import Invalid
from testkit import errors_in_threads

NOW = datetime(2026, 12, 4, 3, 0, 0, 123456, tzinfo=UTC)


class Named:
    name = "named"
    events = frozenset({"signup", "purchase"})

    def __call__(self, session: Any, events: Any) -> None:  # pragma: no cover - not applied here
        pass


class Selecting:
    """Like the people consumer: wants events with a user id, and remembers whom it took."""

    name = "selecting"
    events: frozenset[str] = frozenset()
    select_needs = "user_id"

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def select(self, event: EventIn) -> bool:
        user, visitor = event.get("user_id"), event.get("visitor_id")
        if not user or not visitor or (user, visitor) in self.seen:
            return False
        self.seen.add((user, visitor))
        return True

    def __call__(self, session: Any, events: Any) -> None:  # pragma: no cover
        pass


def _hooks(tmp_path: Path, name: str) -> HookQueue:
    registry = HookRegistry()
    registry.register(Named())
    registry.register(Selecting())
    return HookQueue(registry, Spool(tmp_path / name))


def _mix(n: int, seed: int = 0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(n):
        kind = ("signup", "purchase", "page_view", "click", "visit")[(i * 7 + seed) % 5]
        event: dict[str, Any] = {"event": kind}
        if i % 3:
            event["event_id"] = f"p{seed}-{i}"
        if kind == "signup":
            event.update(user_id=f"u{i % 50}", visitor_id=f"v{i % 50}")
        elif kind == "purchase":
            event.update(user_id=f"u{i % 50}", revenue=100 + i, currency="CNY")
            event["properties"] = {"order_id": f"o{i}", "price": 1.5}
        elif i % 4 == 0:
            event.update(user_id=f"u{i % 50}", ts="2026-12-04T10:00:00+08:00")
        else:
            event.update(visitor_id=f"v{i}", properties={"path": "/课程/1"})
        events.append(event)
    return events


@pytest.fixture(scope="module")
def pool() -> Iterator[IngestPool]:
    started = IngestPool(1)
    started.start()
    yield started
    started.stop()


def _same_ids(text: bytes) -> bytes:
    return re.sub(rb"evt_[0-9A-Za-z]+", b"evt_*", text)


def _inline(tmp_path: Path, raw: bytes, key: str | None) -> tuple[bytes, bytes, bytes]:
    hooks = _hooks(tmp_path, "inline")
    accepted = service.prepare(workspace_id="ws1", raw=raw, now=NOW, idempotency_key=key)
    return accepted.line, accepted.payload(), hooks.lines("ws1", accepted.events, NOW)


@pytest.mark.parametrize("key", [None, "batch-7"])
def test_the_pool_prepares_what_the_request_thread_does(
    pool: IngestPool, tmp_path: Path, key: str | None
) -> None:
    events = _mix(3000)
    events[5] = {"event": "bad name!", "event_id": "x"}  # one rejected item: named in the answer
    events[9]["ts"] = "2099-01-01T00:00:00Z"  # too far ahead: rejected by the rules
    raw = json.dumps(events, ensure_ascii=False).encode()
    assert len(raw) >= POOL_BYTES
    line, payload, hook_lines = _inline(tmp_path, raw, key)

    hooks = _hooks(tmp_path, "pooled")
    prepared = pool.run("ws1", raw, NOW, key, HookFilter.of(hooks))
    assert prepared is not None
    # Events with neither an id nor a time get a random one (without a key): alike but for it.
    assert _same_ids(prepared.line) == _same_ids(line)
    assert _same_ids(prepared.payload) == _same_ids(payload)
    answer = json.loads(prepared.payload)
    assert answer["accepted"] == 2998 and [r["index"] for r in answer["rejected"]] == [5, 9]
    ids = [json.loads(one)["event_id"] for one in prepared.line.splitlines()]
    assert ids == answer["event_ids"]
    # The candidates hold every event the hooks want, and the selection makes the same lines.
    assert _same_ids(hooks.lines("ws1", prepared.candidates, NOW)) == _same_ids(hook_lines)
    assert len(prepared.candidates) < 2998 and hook_lines.count(b"\n") > 1000


def test_a_refused_batch_is_the_same_domain_error(pool: IngestPool, tmp_path: Path) -> None:
    raw = json.dumps([{"event": "bad name!", "pad": "x" * 200}] * 600).encode()
    with pytest.raises(Invalid) as inline:
        service.prepare(workspace_id="ws1", raw=raw, now=NOW)
    with pytest.raises(Invalid) as pooled:
        pool.run("ws1", raw, NOW, None, None)
    assert pooled.value.code == inline.value.code == "invalid_events"
    assert pooled.value.status == inline.value.status
    assert pooled.value.to_body() == inline.value.to_body()


def test_hook_filter_without_a_common_key_keeps_every_event() -> None:
    events: list[EventIn] = [{"event": "page_view"}, {"event": "signup"}]  # type: ignore[typeddict-item]
    assert HookFilter(frozenset({"signup"}), False, None).candidates(events) == [events[1]]
    assert HookFilter(frozenset({"signup"}), True, None).candidates(events) == events


def test_a_killed_pool_process_falls_back_then_the_pool_starts_again() -> None:
    pool = IngestPool(1)
    pool.start()
    try:
        raw = json.dumps(_mix(2000)).encode()
        assert pool.run("ws1", raw, NOW, None, None) is not None
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)
        # The next request meets the dead process (or none yet): the caller prepares it.
        assert pool.run("ws1", raw, NOW, None, None) is None
        deadline = time.monotonic() + 60
        while pool.pids() in ([], [pid]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool.pids()) == 1 and pool.pids() != [pid]  # another one, started for it
        assert pool.fallbacks >= 1 and pool.restarts == 1
        again = pool.run("ws1", raw, NOW, None, None)
        assert again is not None
        assert _same_ids(again.line) == _same_ids(
            service.prepare(workspace_id="ws1", raw=raw, now=NOW).line
        )
    finally:
        pool.stop()
    assert pool.run("ws1", raw, NOW, None, None) is None  # stopped: callers prepare themselves


def test_a_pool_process_that_stops_answering_is_killed_and_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stuck process (here SIGSTOPped) costs its request a bounded wait, not a hang."""
    monkeypatch.setattr(ingest_pool, "REPLY_TIMEOUT", 1.0)
    pool = IngestPool(1)
    pool.start()
    try:
        raw = json.dumps(_mix(2000)).encode()
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGSTOP)
        assert pool.run("ws1", raw, NOW, None, None) is None  # the caller prepares it
        assert pool.fallbacks == 1
        deadline = time.monotonic() + 60
        while pool.pids() in ([], [pid]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool.pids()) == 1 and pool.pids() != [pid]
        assert pool.run("ws1", raw, NOW, None, None) is not None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        pool.stop()


def test_a_start_that_fails_is_tried_again_without_waiting_for_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first start's process died in its warm-up (seen: SIGKILLed by a test at that
    moment): the pool used to stay empty for good, every body prepared in the request thread."""
    monkeypatch.setattr(ingest_pool, "RETRY_FIRST", 0.1)
    real_add = IngestPool._add
    calls: list[int] = []

    def flaky_add(self: IngestPool) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("ingest pool process could not start: it died")
        real_add(self)

    monkeypatch.setattr(IngestPool, "_add", flaky_add)
    pool = IngestPool(1)
    try:
        raw = json.dumps(_mix(2000)).encode()
        assert pool.run("ws1", raw, NOW, None, None) is None  # the first: prepared by the caller
        deadline = time.monotonic() + 60
        while not pool.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool.pids()) == 1 and len(calls) == 2  # no request was needed for it
        assert pool.run("ws1", raw, NOW, None, None) is not None
    finally:
        pool.stop()


def test_a_dead_process_closed_twice_at_once_is_closed_once() -> None:
    """The starter (its warm-up failed) and the death handler may close the same process at the
    same moment: neither may fail (one did, with EBADF, and no process was started again)."""
    process = ingest_pool._Process(lambda _p, _e: None)
    assert process.submit(ingest_pool._WARM_UP).result(timeout=60)[0] == "ok"
    os.kill(process.process.pid or 0, signal.SIGKILL)
    errors = errors_in_threads(process.close, 4)
    assert not errors and not process.process.is_alive()


def _pool_pids(server_pid: int) -> list[int]:
    """The spawned pool processes among the server's descendants (multiprocessing's)."""
    found: list[int] = []
    pending = [server_pid]
    while pending:
        pid = pending.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            children = (
                (task / "children").read_text().split() if (task / "children").exists() else []
            )
            pending.extend(int(c) for c in children)
            for child in children:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                    found.append(int(child))
    return found


def test_served_batches_survive_a_sigkilled_pool_process(tmp_path: Path) -> None:
    """A real server with its default pool: batches sent from two threads while its pool
    process is SIGKILLed. Every request is answered 202, and every event is stored once."""
    server = Server(tmp_path / "data")
    try:
        key = server.key()
        headers = {"Authorization": f"Bearer {key}"}
        # No pool process until a large batch comes: that one is prepared in the request
        # thread while the pool starts for the next ones.
        assert _pool_pids(server.proc.pid) == []
        first_events = _mix(1500, seed=99)
        for i, event in enumerate(first_events):
            event["event_id"] = f"first-{i}"
        first = json.dumps(first_events)
        resp = httpx.post(server.base + "/api/v1/events", content=first, headers=headers)
        assert resp.status_code == 202 and resp.json()["accepted"] == 1500
        # Ready (warmed up, taking bodies), not only spawned: one killed in its warm-up is
        # not a restart but a start tried again (test above).
        deadline = time.monotonic() + 60
        while (
            "liebian_ingest_pool_processes 1.0" not in httpx.get(server.base + "/metrics").text
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        pids = _pool_pids(server.proc.pid)
        assert len(pids) == 1, pids
        statuses: list[int] = []
        sent: list[int] = []
        errors: list[BaseException] = []

        def send(thread: int) -> None:
            try:
                _send(thread)
            except BaseException as exc:  # reported by the test below
                errors.append(exc)

        def _send(thread: int) -> None:
            with httpx.Client(base_url=server.base, timeout=60) as http:
                for batch in range(8):
                    events = _mix(1500, seed=thread * 100 + batch)
                    for i, event in enumerate(events):
                        event["event_id"] = f"s{thread}-{batch}-{i}"
                    resp = http.post("/api/v1/events", content=json.dumps(events), headers=headers)
                    statuses.append(resp.status_code)
                    if resp.status_code == 202:
                        sent.append(resp.json()["accepted"])

        threads = [threading.Thread(target=send, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        os.kill(pids[0], signal.SIGKILL)
        for t in threads:
            t.join()
        assert not errors, errors
        assert statuses == [202] * 16
        assert sum(sent) == 16 * 1500
        # A bad batch is still a 422 with what to fix, from a new pool process.
        bad = httpx.post(
            server.base + "/api/v1/events",
            content=json.dumps([{"event": "bad name!", "pad": "y" * 200}] * 600),
            headers=headers,
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_events"
        deadline = time.monotonic() + 60
        stored = 0
        while time.monotonic() < deadline:
            resp = httpx.post(
                server.base + "/api/v1/analytics/counts",
                json={
                    "events": ["signup", "purchase", "page_view", "click", "visit"],
                    "from": "2024-01-01T00:00:00Z",
                    "to": "2032-01-01T00:00:00Z",
                    "interval": "month",
                },
                headers=headers,
                timeout=60,
            )
            if resp.status_code == 200:
                stored = sum(int(row["count"]) for row in resp.json()["rows"])
                if stored >= 17 * 1500:
                    break
            time.sleep(0.2)
        assert stored == 17 * 1500
        # Started again (in the background: it imports liebian, slower on a loaded machine).
        deadline = time.monotonic() + 60
        while len(_pool_pids(server.proc.pid)) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_pool_pids(server.proc.pid)) == 1
        metrics = httpx.get(server.base + "/metrics").text
        assert "liebian_ingest_pool_restarts_total 1.0" in metrics
        assert "liebian_ingest_pool_fallbacks_total 0.0" not in metrics
    finally:
        server.stop()


def test_the_processes_start_with_the_first_large_body() -> None:
    pool = IngestPool(1)
    try:
        raw = json.dumps(_mix(1500)).encode()
        assert pool.pids() == []  # nothing started by constructing it
        assert pool.run("ws1", raw, NOW, None, None) is None  # the caller prepares this one
        deadline = time.monotonic() + 60
        while not pool.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool.pids()) == 1
        prepared = pool.run("ws1", raw, NOW, None, None)
        assert prepared is not None and json.loads(prepared.payload)["accepted"] == 1500
        assert pool.fallbacks == 0 and pool.restarts == 0  # starting is not a failure
    finally:
        pool.stop()
