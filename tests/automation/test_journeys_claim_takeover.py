"""A worker whose claim was taken over while its effect was in flight marks nothing: on
PostgreSQL the mark is one statement that checks the claim token itself (decision 0043), on
SQLite the lock-and-check before the writes. The step is done once in the database, the run
gets one next row, and the receiver sees the key from both workers (deduped by key)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from journey_support import Clock, counting_receiver, workspace_with_contacts
from sqlalchemy import select

from liebian.app.runtime import Runtime
from liebian.automation import service
from liebian.automation.executor import BatchResult, Executor, ExecutorConfig
from liebian.automation.models import JourneyRun, JourneyStepExecution
from liebian.kit.db import session_scope


def test_a_worker_that_lost_its_claim_marks_nothing(runtime: Runtime) -> None:
    sessions = runtime.sessions
    ws, contacts = workspace_with_contacts(sessions, 3)
    lease = timedelta(seconds=30)
    slow, late = Clock(), Clock()
    late.advance(seconds=lease.total_seconds() + 1)  # the other worker: after the lease
    with counting_receiver(delay=0.6) as rx:
        with session_scope(sessions) as s:
            definition = {
                "trigger": {"type": "manual"},
                "steps": [
                    {"id": "hello", "type": "webhook", "url": rx.url},
                    {"id": "pause", "type": "wait", "duration": {"hours": 1}},
                ],
            }
            j = service.create(s, ws, "接管", definition, allow_private_urls=True)
            service.publish(s, j, allow_private_urls=True)
            service.enrol(s, j, contacts, trigger="manual", now=slow())
        config = ExecutorConfig(allow_private=True, lease=lease, retry_threads=0)
        first = Executor(sessions, clock=slow, config=config, runtime=runtime)
        second = Executor(sessions, clock=late, config=config, runtime=runtime)
        got: list[BatchResult] = []
        try:
            worker = threading.Thread(target=lambda: got.append(first.run_once()))
            worker.start()
            # Wait until the first worker holds the three rows, then take them over.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with session_scope(sessions) as s:
                    held = s.scalars(
                        select(JourneyStepExecution.claim_token).where(
                            JourneyStepExecution.step_id == "hello"
                        )
                    ).all()
                if len(held) == 3 and all(held):
                    break
                time.sleep(0.02)
            taken = second.run_once()
            worker.join(timeout=30)
        finally:
            first.close()
            second.close()
    assert taken.claimed == 3 and taken.done == 3
    assert got and got[0].claimed == 3 and got[0].lost == 3 and got[0].done == 0
    # Both POSTed each key (the receiver dedupes by it); the database did each step once.
    assert sorted(rx.keys.values()) == [2, 2, 2]
    with session_scope(sessions) as s:
        rows = list(s.scalars(select(JourneyStepExecution)))
        hello = [r for r in rows if r.step_id == "hello"]
        assert {(r.status, r.attempts) for r in hello} == {("done", 2)}
        assert sorted(r.step_id for r in rows).count("pause") == 3
        runs = list(s.scalars(select(JourneyRun)))
        assert {(r.status, r.current_step) for r in runs} == {("active", "pause")}
