"""send(): exactly once per idempotency key (threads on SQLite and PostgreSQL, counted at a
loopback receiver), crash recovery (lookup before resending), guards recorded with the key,
events spooled after the commit."""

from __future__ import annotations

import os
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

sys.path.insert(0, str(Path(__file__).parent))

from channel_fakes import (
    channel,
    contact,
    quiet_off,
    serve,
    sms_provider,
    webhook_receiver,
    workspace,
)

from liebian.app.runtime import Runtime
from liebian.channels.models import ChannelSend
from liebian.channels.service import SendRequest, recover, send
from liebian.events.spool import Spool
from liebian.kit.db import session_scope

NOON = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai: outside quiet hours


def _spooled(runtime: Runtime) -> list[dict]:
    lines = []
    for path in sorted(runtime.settings.spool_dir.glob("seg-*")):
        lines += [orjson.loads(x) for x in path.read_bytes().splitlines() if x]
    return lines


def test_concurrent_callers_send_each_key_once(runtime: Runtime) -> None:
    runtime.spool = Spool(runtime.settings.spool_dir)
    ws = workspace(runtime)
    people = [contact(runtime, ws, f"u{i}") for i in range(6)]
    secret: list[str] = []
    with serve(webhook_receiver(lambda: secret[0] if secret else None), "/hook") as receiver:
        chn = channel(runtime, ws, "webhook", {"url": receiver.url}, secret="whsec_test_secret_1")
        secret.append("whsec_test_secret_1")
        requests = [
            SendRequest(
                workspace_id=ws,
                channel_id=chn,
                contact_id=people[i % 6],
                content={"text": f"你好 {i}"},
                idempotency_key=f"run_{i}:step_1",
                source="journey",
            )
            for i in range(12)
        ]
        outcomes: list[str] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(6)

        def worker() -> None:
            try:
                barrier.wait()
                for request in requests:
                    with runtime.sessions() as session:
                        outcomes.append(send(session, runtime, request, now=NOON).status)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        # Every key reached the receiver exactly once, although 6 callers sent each.
        assert receiver.count() == 12
        assert len(receiver.accepted) == 12
        # Callers that lost the race were told "in flight" or got the recorded "sent".
        assert set(outcomes) <= {"sent", "deferred"}
        assert outcomes.count("sent") >= 12
        with runtime.sessions() as session:
            rows = session.scalars(select(ChannelSend).where(ChannelSend.workspace_id == ws)).all()
            assert len(rows) == 12 and {r.status for r in rows} == {"sent"}
            assert all(r.attempts == 1 for r in rows)
            # A later call replays the record; nothing is sent.
            again = send(session, runtime, requests[0], now=NOON)
        assert again.status == "sent" and again.replayed and receiver.count() == 12
        body = receiver.hits[0].json()
        assert body["contact"]["external_id"].startswith("u") and "email" not in body["contact"]
        assert body["unsubscribe_url"].startswith("http://sho.rt/h5/unsubscribe/")
    sent_events = [e for e in _spooled(runtime) if e["event"] == "message_sent"]
    assert len(sent_events) == 12
    props = orjson.loads(sent_events[0]["properties"]) if isinstance(
        sent_events[0]["properties"], str) else sent_events[0]["properties"]  # fmt: skip
    assert props["channel"] == "webhook" and props["source"] == "journey"
    assert props["idempotency_key"].startswith("run_")


def test_crash_left_sending_is_looked_up_then_resent_with_its_key(runtime: Runtime) -> None:
    ws = workspace(runtime)
    quiet_off(runtime, ws)
    person = contact(runtime, ws, "p1", phone="13800138000")
    with serve(sms_provider("sms-secret-0001")) as provider:
        chn = channel(runtime, ws, "sms", {"url": provider.url + "send",
                      "lookup_url": provider.url + "lookup", "app_id": "app1"},
                      secret="sms-secret-0001")  # fmt: skip
        request = SendRequest(workspace_id=ws, channel_id=chn, contact_id=person,
                              content={"text": "您的验证码 1234"}, idempotency_key="k-1",
                              category="transactional")  # fmt: skip
        with runtime.sessions() as session:
            first = send(session, runtime, request)
        assert first.status == "sent" and first.provider_message_id == "sms-1"
        assert provider.accepted["k-1"]["phone"] == "13800138000"
        # A crash after the provider accepted, before the mark: the record says "sending".
        past = datetime.now(UTC) - timedelta(minutes=5)
        with session_scope(runtime.sessions) as session:
            session.execute(update(ChannelSend).values(status="sending", claimed_until=past,
                                                       provider_message_id=None))  # fmt: skip
        posts = provider.count("POST")
        with runtime.sessions() as session:
            again = send(session, runtime, request)
        # Looked up (GET), found delivered: marked sent with the provider's id, not resent.
        assert again.status == "sent" and again.provider_message_id == "sms-1"
        assert provider.count("POST") == posts and provider.count("GET") == 1
        # A crash before the provider saw it: lookup says not found → sent (once).
        with session_scope(runtime.sessions) as session:
            session.execute(update(ChannelSend).values(status="sending", claimed_until=past))
        provider.accepted.clear()
        assert recover(runtime) == 1
        assert provider.count("POST") == posts + 1 and len(provider.accepted) == 1
        with runtime.sessions() as session:
            row = session.scalars(select(ChannelSend)).one()
            assert row.status == "sent" and row.attempts == 3
        # A claim still running is left alone: the caller hears "in flight".
        future = datetime.now(UTC) + timedelta(minutes=5)
        with session_scope(runtime.sessions) as session:
            session.execute(update(ChannelSend).values(status="sending", claimed_until=future))
        with runtime.sessions() as session:
            busy = send(session, runtime, request)
        assert busy.status == "deferred" and busy.reason == "in_flight"
        assert provider.count("POST") == posts + 1
        # A provider fault: failed and retryable; the job retries it after its backoff.
        provider.state["fail_next"] = 1
        retry = SendRequest(workspace_id=ws, channel_id=chn, contact_id=person,
                            content={"text": "发货通知"}, idempotency_key="k-2",
                            category="transactional")  # fmt: skip
        with runtime.sessions() as session:
            failed = send(session, runtime, retry)
        assert (failed.status, failed.reason, failed.retryable) == ("failed", "http_503", True)
        assert recover(runtime) == 0  # the backoff has not passed
        assert recover(runtime, now=datetime.now(UTC) + timedelta(seconds=31)) == 1
        assert "k-2" in provider.accepted
        with runtime.sessions() as session:
            assert send(session, runtime, retry).status == "sent"


def test_quiet_hours_defer_and_the_job_sends_when_the_window_opens(runtime: Runtime) -> None:
    runtime.spool = Spool(runtime.settings.spool_dir)
    ws = workspace(runtime)
    person = contact(runtime, ws, "night-owl")
    with serve(webhook_receiver(lambda: None), "/hook") as receiver:
        chn = channel(runtime, ws, "webhook", {"url": receiver.url}, monthly_cap=1)
        night = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai
        request = SendRequest(workspace_id=ws, channel_id=chn, contact_id=person,
                              content={"text": "晚安"}, idempotency_key="night-1")  # fmt: skip
        with runtime.sessions() as session:
            deferred = send(session, runtime, request, now=night)
        opens = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)  # 09:00 the next morning
        assert (deferred.status, deferred.reason) == ("deferred", "quiet_hours")
        assert deferred.deferred_until == opens and receiver.count() == 0
        # Asked again before the window opens: still deferred, nothing sent.
        with runtime.sessions() as session:
            assert send(session, runtime, request, now=night).status == "deferred"
        assert recover(runtime, now=night + timedelta(hours=1)) == 0
        assert recover(runtime, now=opens) == 1
        assert receiver.count() == 1
        with runtime.sessions() as session:
            assert send(session, runtime, request, now=opens).status == "sent"
            # The monthly cap (1 here; WeCom's limit for its kinds): the next is suppressed
            # until the 1st of next month in Shanghai.
            capped = send(session, runtime, SendRequest(
                workspace_id=ws, channel_id=chn, contact_id=person, content={"text": "再来"},
                idempotency_key="night-2", category="transactional"), now=opens)  # fmt: skip
        assert (capped.status, capped.reason) == ("suppressed", "monthly_cap")
        assert capped.deferred_until == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
        assert receiver.count() == 1
    events = [e["event"] for e in _spooled(runtime)]
    assert sorted(events) == ["message_deferred", "message_sent", "message_suppressed"]
    # The lines load into the event store like any event, so analytics counts them.
    from liebian.events.store.factory import open_event_store

    runtime.event_store = open_event_store(runtime.settings.resolved_events_url)
    runtime.flush_events()
    rows = runtime.event_store.query(
        "SELECT event, user_id FROM events WHERE workspace_id = $ws ORDER BY event", {"ws": ws}
    )
    assert [tuple(r) for r in rows] == [
        ("message_deferred", "night-owl"), ("message_sent", "night-owl"),
        ("message_suppressed", "night-owl"),
    ]  # fmt: skip


# Processes and a crash against the shared database: PostgreSQL when the run has it.
@pytest.mark.parametrize(
    "db_url",
    ["postgresql" if os.environ.get("LIEBIAN_TEST_DATABASE_URL") else "sqlite"],
    indirect=True,
)
def test_sigkill_mid_send_two_processes_each_key_once_at_the_receiver(
    runtime: Runtime, tmp_path: Path
) -> None:
    """Two sender processes share 30 keys; one is SIGKILLed while its POSTs are in flight.
    The survivor and then the recovery job finish: every key is accepted once at the
    receiver (which dedupes by Idempotency-Key), and the only repeat POST possible is the
    one the killed process had in flight."""
    import signal
    import subprocess
    import time

    from testkit import TEST_SECRET

    n = 30
    ws = workspace(runtime)
    people = [contact(runtime, ws, f"k{i}") for i in range(5)]

    def slow(server: Any, hit: Any) -> tuple[int, Any]:
        time.sleep(0.02)  # a receiver that takes its time: the kill lands mid-request
        return webhook_receiver(lambda: None)(server, hit)

    with serve(slow, "/hook") as receiver:
        chn = channel(runtime, ws, "webhook", {"url": receiver.url})
        script = Path(__file__).parent / "sigkill_sender.py"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        args = [sys.executable, str(script), runtime.settings.resolved_database_url,
                str(tmp_path / "proc"), TEST_SECRET, ws, chn, ",".join(people), str(n)]  # fmt: skip
        victim = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        survivor = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert _wait(lambda: receiver.count() >= n // 3), "no deliveries arrived"
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            assert survivor.wait(timeout=120) == 0
        finally:
            for proc in (victim, survivor):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        survivor_lines = (survivor.stdout.read() if survivor.stdout else "").splitlines()
        assert len(survivor_lines) == n
        # Claims the victim left: the job takes them over once their lease has passed.
        later = datetime.now(UTC) + timedelta(minutes=2)
        recover(runtime, now=later)
        with runtime.sessions() as session:
            rows = session.scalars(select(ChannelSend).where(ChannelSend.workspace_id == ws)).all()
        assert len(rows) == n and {r.status for r in rows} == {"sent"}
        assert sorted(receiver.accepted) == sorted(f"jrn_{i}:step_1" for i in range(n))
        assert n <= receiver.count() <= n + 1


def _wait(predicate: Any, timeout: float = 60.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False
