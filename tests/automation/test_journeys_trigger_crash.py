"""Bus triggers survive a crash: a process tags people (each change committed with its trigger
outbox row) and is SIGKILLed mid-run with nothing drained; every committed tag change still
enrols its person exactly once, and no uncommitted one does (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from journey_support import make_tag, workspace_with_contacts
from sqlalchemy import select

from liebian.app.runtime import Runtime
from liebian.automation import service
from liebian.automation.models import JourneyRun, JourneyTriggerOutbox
from liebian.automation.triggers import drain_outbox
from liebian.contacts.models import ContactTag
from liebian.kit.db import session_scope
from testkit import TEST_SECRET

PEOPLE = 60


def test_sigkill_after_commit_loses_no_trigger(runtime: Runtime, tmp_path: Path) -> None:
    sessions = runtime.sessions
    ws, contacts = workspace_with_contacts(sessions, PEOPLE)
    vip, marker = make_tag(sessions, ws, "VIP"), make_tag(sessions, ws, "已欢迎")
    with session_scope(sessions) as s:
        definition = {
            "trigger": {"type": "tag_added", "tag_id": vip},
            "entry": {"mode": "every_time"},
            "steps": [{"id": "m", "type": "add_tag", "tag_ids": [marker]}],
        }
        j = service.create(s, ws, "打标签即欢迎", definition)
        service.publish(s, j)
        journey_id = j.id
    script = Path(__file__).parent / "trigger_writer.py"
    args = [sys.executable, str(script), runtime.settings.resolved_database_url,
            str(tmp_path / "proc"), TEST_SECRET, ws, vip, ",".join(contacts)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        lines = 0
        while lines < PEOPLE // 3 and time.monotonic() < deadline:
            if proc.stdout.readline():
                lines += 1
            elif proc.poll() is not None:
                break
        assert lines >= PEOPLE // 3, "the writer made no progress"
        proc.send_signal(signal.SIGKILL)  # mid-run: nothing was ever drained in that process
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with session_scope(sessions) as s:
        tagged = set(s.scalars(select(ContactTag.contact_id).where(ContactTag.tag_id == vip)))
        waiting = s.scalar(select(JourneyTriggerOutbox.id).limit(1))
    assert PEOPLE // 3 <= len(tagged) < PEOPLE, len(tagged)
    assert waiting is not None  # the rows the dead process committed
    drain_outbox(sessions)
    drain_outbox(sessions)  # nothing left, nothing twice
    with session_scope(sessions) as s:
        runs = list(s.scalars(select(JourneyRun.contact_id).where(
            JourneyRun.journey_id == journey_id)))  # fmt: skip
        assert s.scalar(select(JourneyTriggerOutbox.id).limit(1)) is None
    assert sorted(runs) == sorted(tagged)  # every committed change, once; nothing else
