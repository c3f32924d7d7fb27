"""Lanes and the effect window (decision 0048). An ExecutorThread runs several executors on
PostgreSQL (one on SQLite); a group of effects is marked on a marker thread while the next
effects run. Whatever the lanes, at most ``in_flight`` effects of one process are delivered
and not yet marked at any moment — what a SIGKILL can leave to be resent — and every step is
done once."""

from __future__ import annotations

import threading
import time

import pytest
from journey_support import (
    active_runs_after,
    counting_receiver,
    make_tag,
    workspace_with_contacts,
)
from sqlalchemy import func, select

from liebian.app.runtime import Runtime
from liebian.automation import executor as executor_module
from liebian.automation import service
from liebian.automation.executor import Executor, ExecutorConfig, ExecutorThread
from liebian.automation.models import JourneyStepExecution
from liebian.contacts.models import ContactTag
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope

PEOPLE = 60


def _journey(runtime: Runtime, url: str) -> tuple[str, list[str], str]:
    sessions = runtime.sessions
    ws, contacts = workspace_with_contacts(sessions, PEOPLE)
    done = make_tag(sessions, ws, "完成")
    with session_scope(sessions) as s:
        definition = {
            "trigger": {"type": "manual"},
            "steps": [
                {"id": "hello", "type": "webhook", "url": url},
                {"id": "tag", "type": "add_tag", "tag_ids": [done]},
            ],
        }
        j = service.create(s, ws, "车道", definition, allow_private_urls=True)
        service.publish(s, j, allow_private_urls=True)
        service.enrol(s, j, contacts, trigger="manual")
    return ws, contacts, done


def test_lanes_share_one_effect_window_and_do_each_step_once(runtime: Runtime) -> None:
    sessions = runtime.sessions
    in_flight = 4
    config = ExecutorConfig(
        allow_private=True, batch=10, in_flight=in_flight, mark_every=2, lanes=0, retry_threads=0
    )
    # Delivered and not yet marked, seen by the receiver at each POST: the keys it got so far
    # whose row is not done yet (this POST's own included).
    worst = [0]
    lock = threading.Lock()
    with counting_receiver(delay=0.01) as rx:
        _ws, _contacts, done = _journey(runtime, rx.url)
        original = rx.keys

        class Watching(dict):  # type: ignore[type-arg]
            def __missing__(self, key: str) -> int:
                return 0

            def __setitem__(self, key: str, value: int) -> None:
                super().__setitem__(key, value)
                runs = [k.split(":")[0] for k in self]
                with session_scope(sessions) as s:
                    marked = s.scalar(
                        select(func.count()).where(
                            JourneyStepExecution.step_id == "hello",
                            JourneyStepExecution.status == "done",
                            JourneyStepExecution.run_id.in_(runs),
                        )
                    )
                with lock:
                    worst[0] = max(worst[0], len(runs) - int(marked or 0))

        watching = Watching(original)
        rx.keys = watching  # type: ignore[assignment]
        thread = ExecutorThread(Executor(sessions, config=config, runtime=runtime), interval=0.05)
        postgres = runtime.settings.resolved_database_url.startswith("postgresql")
        assert len(thread.executors) == (executor_module.LANES_POSTGRESQL if postgres else 1)
        assert len({e.worker_id for e in thread.executors}) == len(thread.executors)
        assert len({id(e._window) for e in thread.executors}) == 1
        thread.start()
        try:
            active_runs_after(sessions, time.monotonic() + 60)
        finally:
            thread.stop()
        assert thread.last_error is None
        keys = dict(watching)
    assert len(keys) == PEOPLE and set(keys.values()) == {1}
    assert 1 <= worst[0] <= in_flight, worst[0]
    assert all(e._window.used == 0 for e in thread.executors)
    with session_scope(sessions) as s:
        rows = list(s.scalars(select(JourneyStepExecution)))
        assert len(rows) == 2 * PEOPLE and {r.status for r in rows} == {"done"}
        assert s.scalar(select(func.count()).where(ContactTag.tag_id == done)) == PEOPLE


def test_a_failed_mark_stops_the_batch_and_gives_the_window_back(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The marker thread's failure comes out of run_once like a failed mark did before; the
    effects already started finish first, the window is whole again, and the unmarked rows
    are done (once in the database, with the same key at the receiver) after their lease."""
    sessions = runtime.sessions
    config = ExecutorConfig(allow_private=True, in_flight=4, mark_every=2, retry_threads=0)
    with counting_receiver() as rx:
        _journey(runtime, rx.url)
        ex = Executor(sessions, config=config, runtime=runtime)
        real = Executor._mark
        calls = [0]

        def failing(self: Executor, items: list, now: object, out: object) -> None:  # type: ignore[type-arg]
            if items and items[0].step_id == "hello":
                calls[0] += 1
                if calls[0] == 2:
                    raise RuntimeError("the database went away")
            real(self, items, now, out)  # type: ignore[arg-type]

        monkeypatch.setattr(Executor, "_mark", failing)
        try:
            with pytest.raises(RuntimeError, match="went away"):
                ex.run_once()
            assert ex._window.used == 0
            monkeypatch.setattr(Executor, "_mark", real)
            # The rows left claimed come back once the lease is over.
            ex.clock = lambda: utcnow() + 2 * config.lease
            ex.run_until_idle()
        finally:
            ex.close()
    # Every key arrived; sent twice only what was started and unmarked when the mark failed
    # (the group being marked and the effects running beside it): at most in_flight.
    assert len(rx.keys) == PEOPLE
    assert 1 <= sum(n - 1 for n in rx.keys.values()) <= config.in_flight
    with session_scope(sessions) as s:
        hello = list(
            s.scalars(select(JourneyStepExecution).where(JourneyStepExecution.step_id == "hello"))
        )
        assert len(hello) == PEOPLE and {r.status for r in hello} == {"done"}
        # Marked once each: a row marked before the failure was not claimed again.
        assert {r.attempts for r in hello} <= {1, 2}
