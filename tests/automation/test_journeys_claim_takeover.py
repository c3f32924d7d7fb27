"""Claims between workers. A worker whose claim was taken over while its effect was in flight marks nothing: on
PostgreSQL the mark is one statement that checks the claim token itself (decision 0043), on
SQLite the lock-and-check before the writes. The step is done once in the database, the run
gets one next row, and the receiver sees the key from both workers (deduped by key)."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta

import pytest
from journey_support import Clock, counting_receiver, workspace_with_contacts
from sqlalchemy import select

from liebian.app.runtime import Runtime
from liebian.automation import repository, service
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


def test_claims_of_a_gone_worker_come_back_before_their_lease(runtime: Runtime) -> None:
    """PostgreSQL: an executor's claims carry its worker id, shown by its own connection;
    once that connection is gone (its process killed), another executor's ``reap`` frees
    them at once — not after the lease — and never while it is there (decision 0043)."""
    if not runtime.settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("several worker processes share the work on PostgreSQL only")
    sessions = runtime.sessions
    ws, contacts = workspace_with_contacts(sessions, 3)
    clock = Clock()
    with counting_receiver() as rx:
        with session_scope(sessions) as s:
            definition = {
                "trigger": {"type": "manual"},
                "steps": [{"id": "hello", "type": "webhook", "url": rx.url}],
            }
            j = service.create(s, ws, "回收", definition, allow_private_urls=True)
            service.publish(s, j, allow_private_urls=True)
            service.enrol(s, j, contacts, trigger="manual", now=clock())
        config = ExecutorConfig(allow_private=True, lease=timedelta(minutes=10))
        gone = Executor(sessions, clock=clock, config=config, runtime=runtime)
        alive = Executor(sessions, clock=clock, config=config, runtime=runtime)
        try:
            # The first worker claims the three steps and does nothing more.
            with gone._direct_connection() as conn:
                token = gone._token()
                claimed = repository.claim(conn, clock(), clock() + config.lease, token, 10)
            assert len(claimed) == 3 and token.startswith(gone.worker_id + ".")
            assert alive.reap() == 0  # its connection is there: the claims stand
            assert alive.run_once().claimed == 0
            gone.close()  # its connection closes, as a killed process's would
            # Turned off (behind a transaction-pooling proxy), a gone worker's claims stand.
            off = Executor(
                sessions, clock=clock, runtime=runtime,
                config=dataclasses.replace(config, release_dead_claims=False),
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 10
                with off._direct_connection() as conn:
                    while gone.worker_id in repository.live_workers(conn):
                        assert time.monotonic() < deadline
                        time.sleep(0.02)
                assert off.reap() == 0
                assert off.run_once().claimed == 0
            finally:
                off.close()
            deadline = time.monotonic() + 10  # the server ends the backend asynchronously
            freed = 0
            while not freed and time.monotonic() < deadline:
                freed = alive.reap()
                time.sleep(0.02)
            assert freed == 3
            got = alive.run_once()
            assert got.claimed == 3 and got.done == 3
            assert alive.reap() == 0
        finally:
            alive.close()
    assert sorted(rx.keys.values()) == [1, 1, 1]
