"""Two `liebian worker` processes on PostgreSQL share one journey's steps; one is SIGKILLed
mid-run. Every (run, step) is done once in the database and every message key reaches the
loopback receiver — the survivor takes the dead worker's claims over after their lease and
resends with the same Idempotency-Key, which the receiver dedupes.

Both outside steps are webhook actions: a channels send claimed by the killed worker is held
by channels' own 60 s send lease before the survivor may resume it (channels' tests cover that
path); the journey lease here is 2 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from journey_support import (
    active_runs_after,
    counting_receiver,
    make_tag,
    workspace_with_contacts,
)
from sqlalchemy import func, select

import liebian
from liebian.app.runtime import Runtime
from liebian.automation import service
from liebian.automation.models import JourneyRun, JourneyStepExecution
from liebian.kit.db import session_scope
from testkit import TEST_SECRET

PEOPLE = 150


def _worker(runtime: Runtime, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(liebian.__file__).parents[1]),
        "LIEBIAN_DATA_DIR": str(data_dir),
        "LIEBIAN_DATABASE_URL": runtime.settings.resolved_database_url,
        "LIEBIAN_SECRET_KEY": TEST_SECRET,
        "LIEBIAN_ALLOW_PRIVATE_WEBHOOKS": "true",
        "LIEBIAN_JOURNEYS_LEASE": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "liebian.cli", "worker", "--batch", "50", "--interval", "0.05"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir.parent / f"{data_dir.name}.log").open("wb"),
    )


def test_two_workers_one_killed_each_step_once(runtime: Runtime, tmp_path: Path) -> None:
    if not runtime.settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("several worker processes share steps on PostgreSQL")
    sessions = runtime.sessions
    ws, contacts = workspace_with_contacts(sessions, PEOPLE)
    done = make_tag(sessions, ws, "完成")
    with counting_receiver(delay=0.004) as rx:
        with session_scope(sessions) as s:
            definition = {
                "trigger": {"type": "manual"},
                "steps": [
                    {"id": "msg", "type": "webhook", "url": rx.url, "payload": {"n": 1}},
                    {"id": "hook", "type": "webhook", "url": rx.url},
                    {"id": "tag", "type": "add_tag", "tag_ids": [done]},
                ],
            }  # fmt: skip
            j = service.create(s, ws, "并发", definition, allow_private_urls=True)
            service.publish(s, j, allow_private_urls=True)
            service.enrol(s, j, contacts, trigger="manual")
        workers = [_worker(runtime, tmp_path / f"w{i}") for i in range(2)]
        try:
            deadline = time.monotonic() + 60
            while rx.total < PEOPLE // 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert rx.total >= PEOPLE // 2, (tmp_path / "w0.log").read_text()[-3000:]
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait()
            left = active_runs_after(sessions, deadline, poll=0.1)
            assert left == 0, (tmp_path / "w1.log").read_text()[-3000:]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
                    w.wait(timeout=30)
        assert workers[1].returncode == 0
        keys = rx.keys
        expected = {f"{r}:{step}" for r in _run_ids(runtime) for step in ("msg", "hook")}
        # The receiver stores a message once per Idempotency-Key: what it stored is exactly
        # the expected set — none missed, none unknown, none stored twice.
        assert set(keys) == expected
        resent = {k: n for k, n in keys.items() if n > 1}
        # A repeated POST can only be a step the killed worker had started and not marked:
        # the executor keeps at most ExecutorConfig.in_flight (IN_FLIGHT) of those.
        from liebian.automation.executor import IN_FLIGHT

        assert len(resent) <= IN_FLIGHT, resent
        assert rx.total - len(expected) <= IN_FLIGHT
        print(f"\n{len(expected)} keys, {rx.total} POSTs, {len(resent)} resent after SIGKILL")
    with session_scope(sessions) as s:
        rows = list(s.scalars(select(JourneyStepExecution)))
        assert len(rows) == 3 * PEOPLE
        assert {r.status for r in rows} == {"done"}
        from liebian.contacts.models import ContactTag

        assert s.scalar(select(func.count()).where(ContactTag.tag_id == done)) == PEOPLE


def _run_ids(runtime: Runtime) -> list[str]:
    with session_scope(runtime.sessions) as s:
        return list(s.scalars(select(JourneyRun.id)))
