"""send_many(): a batch recorded in one transaction, delivered in a pool, marked in one — each
key once at a loopback receiver that dedupes by Idempotency-Key; guards, bad input and keys
seen before handled in place (SQLite and PostgreSQL)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent))

from channel_fakes import channel, contact, serve, webhook_receiver, workspace

from liebian.app.runtime import Runtime
from liebian.channels.config import opt_out
from liebian.channels.models import ChannelSend
from liebian.channels.service import SendOutcome, SendRequest, send_many
from liebian.kit.db import session_scope
from liebian.kit.errors import DomainError

NOON = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
NIGHT = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai: quiet hours


def test_send_many_each_key_once_guards_and_errors_in_place(runtime: Runtime) -> None:
    ws = workspace(runtime)
    people = [contact(runtime, ws, f"m{i}") for i in range(5)]
    with session_scope(runtime.sessions) as s:
        opt_out(s, ws, people[4], "*", via="api")
    with serve(webhook_receiver(lambda: None), "/hook") as receiver:
        chn = channel(runtime, ws, "webhook", {"url": receiver.url})

        def req(i: int, who: int, *, channel_id: str = chn, category: str = "marketing"
                ) -> SendRequest:  # fmt: skip
            return SendRequest(workspace_id=ws, channel_id=channel_id, contact_id=people[who],
                               content={"text": f"第 {i} 条"}, idempotency_key=f"run_{i}:s",
                               source="journey", category=category)  # type: ignore[arg-type]  # fmt: skip

        batch = [req(i, i % 4) for i in range(12)]
        batch += [req(3, 3), req(20, 4), req(21, 0, channel_id="chn_nope")]
        got = send_many(runtime, batch, now=NOON, threads=4)
        assert len(got) == len(batch)
        assert all(isinstance(o, SendOutcome) and o.status == "sent" for o in got[:12])
        dup, opted, bad = got[12], got[13], got[14]
        assert isinstance(dup, SendOutcome) and dup.replayed and dup.send_id == got[3].send_id  # type: ignore[union-attr]
        assert isinstance(opted, SendOutcome) and (opted.status, opted.reason) == (
            "suppressed", "opted_out")  # fmt: skip
        assert isinstance(bad, DomainError) and bad.code == "channel_not_found"
        assert sorted(receiver.accepted) == sorted(f"run_{i}:s" for i in range(12))
        assert receiver.count() == 12
        # The same batch again: every key replayed, nothing sent twice.
        again = send_many(runtime, batch[:12], now=NOON)
        assert all(isinstance(o, SendOutcome) and o.replayed for o in again)
        assert receiver.count() == 12
        # Quiet hours: deferred with the key, recorded, no adapter call.
        night = send_many(runtime, [req(30, 1)], now=NIGHT)
        assert isinstance(night[0], SendOutcome) and night[0].status == "deferred"
        assert receiver.count() == 12
    with session_scope(runtime.sessions) as s:
        rows = {r.idempotency_key: r for r in s.scalars(select(ChannelSend))}
    assert {k for k, r in rows.items() if r.status == "sent"} == {f"run_{i}:s" for i in range(12)}
    assert rows["run_20:s"].status == "suppressed" and rows["run_30:s"].status == "deferred"
    assert "run_21:s" not in rows  # bad input: nothing written
