"""The event hooks: a registry of consumers fed from the hooks spool, in order, once each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, select

from liebian.events.hooks import HookEvent
from liebian.events.models import AppliedEvent


class Recorder:
    name = "recorder"
    events = frozenset({"signup", "purchase", "visit"})

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.batches = 0

    def __call__(self, session: Any, events: Sequence[HookEvent]) -> None:
        self.batches += 1
        self.seen += [(e.user_id or "", e.event_id) for e in events]


def test_consumers_see_each_person_s_events_once_in_order(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    recorder = Recorder()
    runtime.extras["event_hooks"].registry.register(recorder)
    worker = runtime.extras["event_hooks_worker"]
    worker.batch_size = 7  # many batches, so the order must hold across them too
    sent: dict[str, list[str]] = {}
    with worker.paused():
        for request in range(4):
            batch = []
            for i in range(12):
                user = f"u{(request * 12 + i) % 5}"
                name = ("signup", "visit", "purchase", "page_view")[i % 4]
                event_id = f"r{request}-{i}"
                batch.append({"event": name, "event_id": event_id, "user_id": user, "revenue": 100 if name == "purchase" else None})  # fmt: skip
                if name != "page_view":
                    sent.setdefault(user, []).append(event_id)
            # A client retry of the first request's events: stored once, applied once.
            resp = client.post("/api/v1/events", json=batch, headers=owner)
            assert resp.status_code == 202, resp.text
        assert client.post("/api/v1/events", json=batch, headers=owner).status_code == 202
    runtime.apply_event_hooks()
    seen: dict[str, list[str]] = {}
    for user, event_id in recorder.seen:
        seen.setdefault(user, []).append(event_id)
    assert seen == sent
    assert recorder.batches > 1
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AppliedEvent)) == sum(
            len(v) for v in sent.values()
        )


def test_a_segment_replayed_after_its_commit_applies_nothing_twice(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    """The crash window between the batch's commit and the segment's deletion: the segment
    comes back (as after a SIGKILL there) and the markers make its replay a no-op."""
    recorder = Recorder()
    runtime.extras["event_hooks"].registry.register(recorder)
    worker = runtime.extras["event_hooks_worker"]
    body = [{"event": "signup", "event_id": f"s{i}", "user_id": f"u{i}"} for i in range(20)]
    with worker.paused():
        assert client.post("/api/v1/events", json=body, headers=owner).status_code == 202
        worker.spool.seal()
        saved = {path: path.read_bytes() for path in worker.spool.sealed_segments()}
        assert saved
        assert runtime.apply_event_hooks() == 20
        for path, data in saved.items():
            path.write_bytes(data)
        assert runtime.apply_event_hooks() == 0
    assert sorted(event_id for _, event_id in recorder.seen) == sorted(f"s{i}" for i in range(20))
    assert not worker.spool.sealed_segments()


def test_a_consumer_failing_on_one_event_does_not_block_the_others(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    class Picky(Recorder):
        name = "picky"

        def __call__(self, session: Any, events: Sequence[HookEvent]) -> None:
            if any(e.event_id == "bad" for e in events):
                raise RuntimeError("a bug this event triggers")
            super().__call__(session, events)

    picky = Picky()
    runtime.extras["event_hooks"].registry.register(picky)
    worker = runtime.extras["event_hooks_worker"]
    body = [{"event": "signup", "event_id": e, "user_id": "u"} for e in ("ok1", "bad", "ok2")]
    with worker.paused():
        assert client.post("/api/v1/events", json=body, headers=owner).status_code == 202
    runtime.apply_event_hooks()
    assert [event_id for _, event_id in picky.seen] == ["ok1", "ok2"]
    failed = (worker.spool.directory / "failed.ndjson").read_text()
    assert '"event_id":"bad"' in failed and "a bug this event triggers" in failed
    with runtime.sessions() as session:  # the failed one is not marked: it can be replayed
        marked = set(session.scalars(select(AppliedEvent.event_id)))
    assert marked == {"ok1", "ok2"}


def test_markers_are_pruned_after_their_window_and_recent_ones_still_dedupe(
    runtime: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    from datetime import timedelta

    from liebian.events import hooks, repository
    from liebian.events.spool import Spool
    from liebian.kit.clock import utcnow
    from liebian.kit.db import session_scope
    from liebian.workspaces.service import bootstrap

    monkeypatch.setattr(hooks, "PRUNE_CHUNK", 3)  # several chunks, several transactions
    with session_scope(runtime.sessions) as session:
        ws = bootstrap(session, "hooks")[0].id
    now = utcnow()

    def event(i: int, days_ago: float) -> HookEvent:
        at = now - timedelta(days=days_ago)
        return HookEvent(ws, f"e{i}", "purchase", at, at)

    old = [event(i, 8) for i in range(7)]
    recent = [event(i, 1) for i in range(7, 10)]
    with session_scope(runtime.sessions) as session:
        repository.mark_applied(session, old, now - timedelta(days=8))
        repository.mark_applied(session, recent, now - timedelta(days=1))
    worker = hooks.HookWorker(
        hooks.HookQueue(hooks.HookRegistry(), Spool(tmp_path / "spool")),
        runtime.sessions,
        marker_days=7,
    )
    assert worker.prune_markers(now, max_chunks=2) == 6  # a bounded slice …
    assert worker.prune_markers(now) == 1  # … and the rest
    with session_scope(runtime.sessions) as session:
        left = set(session.scalars(select(AppliedEvent.event_id)))
        assert left == {"e7", "e8", "e9"}
        # a replay inside the window is still recognized; a pruned id would apply again
        assert repository.mark_applied(session, [recent[0], old[0]], now) == [old[0]]
    assert hooks.HookWorker(worker.queue, runtime.sessions, marker_days=0).prune_markers() == 0
    # Pacing: a batch that took 0.2 s of the thread's CPU is followed by 0.2 s of rest at a
    # share of one half (computed, not timed).
    worker._stop.set()  # rest returns at once
    worker._rest(0.2)
    assert worker.rested_seconds == 0.2
    # Behind (the newest event of the last batch waited over CATCH_UP_AFTER): no rest.
    worker._newest_received = utcnow() - timedelta(seconds=hooks.CATCH_UP_AFTER + 5)
    assert worker.behind()
    worker._rest(0.2)
    assert worker.rested_seconds == 0.2 and worker.catch_up_batches == 1
    worker._newest_received = utcnow()
    assert not worker.behind()
    worker._rest(0.1)
    assert worker.rested_seconds == pytest.approx(0.3) and worker.catch_up_batches == 1


class _Selecting:
    """A selecting consumer that wants events carrying ``key``."""

    events: frozenset[str] = frozenset()

    def __init__(self, key: str) -> None:
        self.name = f"wants-{key}"
        self.key = key

    def __call__(self, session: Any, events: Sequence[HookEvent]) -> None:
        pass

    def select(self, event: Any) -> bool:
        return bool(event.get(self.key))


@pytest.mark.parametrize("keys", [(), ("a",), ("a", "b"), ("a", "b", "c")])
def test_the_request_path_writes_what_any_consumer_names_or_selects(
    tmp_path: Any, keys: tuple[str, ...]
) -> None:
    """However many selecting consumers there are (one and two take their own branches), an
    event goes to the hooks spool when a consumer names it or any selector accepts it."""
    from datetime import UTC, datetime

    import orjson

    from liebian.events import hooks
    from liebian.events.spool import Spool

    registry = hooks.HookRegistry()
    registry.register(Recorder())  # names signup, purchase, visit
    for key in keys:
        registry.register(_Selecting(key))
    queue = hooks.HookQueue(registry, Spool(tmp_path / "spool"))
    events: list[Any] = [
        {"event": "signup", "event_id": "named"},
        {"event": "page_view", "event_id": "plain"},
        {"event": "page_view", "event_id": "has-a", "a": 1},
        {"event": "page_view", "event_id": "has-b", "b": 1},
        {"event": "page_view", "event_id": "has-c", "c": 1},
        {"event": "click", "event_id": "has-b-and-c", "b": 1, "c": 1},
    ]
    written = queue.lines("ws_1", events, datetime(2026, 1, 1, tzinfo=UTC))
    got = [orjson.loads(line)["event_id"] for line in written.splitlines()]
    expected = ["named"] + [str(e["event_id"]) for e in events[1:] if any(e.get(k) for k in keys)]
    assert got == expected
