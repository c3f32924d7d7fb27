"""Email exactly once at a real SMTP server (aiosmtpd) under SIGKILL: two sender processes
share 24 keys, one is killed while its SMTP sessions are in flight, the survivor and the
recovery job finish. The mailbox files a message once per Message-ID (derived from the
idempotency key, the same on a resend), so it holds exactly one message per key; at most the
one message the killed process had in flight arrived twice on the wire."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent))

from channel_fakes import channel, contact, workspace

from liebian.app.runtime import Runtime
from liebian.channels.models import ChannelSend
from liebian.channels.service import recover
from testkit import TEST_SECRET


@pytest.mark.parametrize(
    "db_url",
    ["postgresql" if os.environ.get("LIEBIAN_TEST_DATABASE_URL") else "sqlite"],
    indirect=True,
)
def test_sigkill_mid_smtp_each_message_once_in_the_mailbox(
    runtime: Runtime, tmp_path: Path
) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    n = 24
    mailbox: dict[str, Any] = {}  # Message-ID → the message (what the person sees)
    wire: list[str] = []
    lock = threading.Lock()

    class Mailbox(Message):
        def handle_message(self, msg: Any) -> None:
            time.sleep(0.02)  # a server that takes its time: the kill lands mid-session
            with lock:
                wire.append(msg["Message-ID"])
                mailbox.setdefault(msg["Message-ID"], msg)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Mailbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        ws = workspace(runtime)
        people = [contact(runtime, ws, f"e{i}", email=f"e{i}@example.com") for i in range(4)]
        chn = channel(runtime, ws, "smtp", {"host": "127.0.0.1", "port": port,
                                            "security": "none",
                                            "from_address": "hello@brand.example"})  # fmt: skip
        script = Path(__file__).parent / "sigkill_sender.py"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        args = [sys.executable, str(script), runtime.settings.resolved_database_url,
                str(tmp_path / "proc"), TEST_SECRET, ws, chn, ",".join(people), str(n)]  # fmt: skip
        victim = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        survivor = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while len(wire) < n // 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(wire) >= n // 3, "no mail arrived"
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            assert survivor.wait(timeout=120) == 0
        finally:
            for proc in (victim, survivor):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        recover(runtime, now=datetime.now(UTC) + timedelta(minutes=2))  # the victim's claims
        with runtime.sessions() as session:
            rows = session.scalars(select(ChannelSend).where(ChannelSend.workspace_id == ws)).all()
        assert len(rows) == n and {r.status for r in rows} == {"sent"}
        assert set(mailbox) == {r.provider_message_id for r in rows}  # one per key, none lost
        keys = sorted(str(m["X-Liebian-Idempotency-Key"]) for m in mailbox.values())
        assert keys == sorted(f"jrn_{i}:step_1" for i in range(n))
        assert n <= len(wire) <= n + 1  # the one SMTP session the victim had in flight
    finally:
        controller.stop()
