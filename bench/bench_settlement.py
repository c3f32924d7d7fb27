"""Settlement throughput: pending ledger entries approved and issued by the settlement job.

    /work/venv/bin/python bench/bench_settlement.py [--entries 100000] [--runs 3] \
        [--database-url postgresql+psycopg://root@127.0.0.1:5432/test]

Each run builds a fresh database (a temporary SQLite file by default — the embedded
default — or a fresh PostgreSQL database next to the given URL), fills it with ``--entries``
pending entries past their refund window (one in ten tied to an approved referral, one in
twenty to a held one, which must stay pending), then times ``rewards.service.settle`` plus the
commit. Reports entries settled per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from liebian.campaigns.models import Campaign, Participant, Referral
from liebian.contacts.models import Contact
from liebian.kit.clock import utcnow
from liebian.kit.db import make_engine, make_session_factory, session_scope
from liebian.kit.ids import new_id
from liebian.migrations import upgrade
from liebian.rewards import service as ledger
from liebian.rewards.models import RewardEntry
from liebian.workspaces.models import Workspace


def fresh_database(base_url: str | None) -> tuple[str, tuple[Engine, str] | None]:
    if not base_url:
        path = Path(tempfile.mkdtemp(prefix="liebian-settle-")) / "bench.db"
        return f"sqlite:///{path}", None
    admin = make_url(base_url)
    name = f"liebian_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return admin.set(database=name).render_as_string(hide_password=False), (engine, name)


def drop(handle: tuple[Engine, str] | None) -> None:
    if handle is None:
        return
    engine, name = handle
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def fill(url: str, entries: int) -> None:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    now = utcnow()
    past = now - timedelta(days=8)
    with session_scope(sessions) as s:
        ws = Workspace(id=new_id("ws"), name="bench")
        s.add(ws)
        s.flush()
        contacts = [
            {
                "id": new_id("ctc"),
                "workspace_id": ws.id,
                "external_id": f"u{i}",
                "created_at": now,
                "updated_at": now,
            }
            for i in range(1_000)
        ]
        s.execute(insert(Contact), contacts)
        cmp = Campaign(
            id=new_id("cmp"),
            workspace_id=ws.id,
            type="distribution",
            name="b",
            config={},
            status="active",
        )
        s.add(cmp)
        s.flush()
        parts = [
            {
                "id": new_id("par"),
                "workspace_id": ws.id,
                "campaign_id": cmp.id,
                "contact_id": c["id"],
                "invite_code": uuid.uuid4().hex[:12],
                "joined_at": now,
            }
            for c in contacts[:2]
        ]
        s.execute(insert(Participant), parts)
        refs: list[dict[str, Any]] = []
        for status in ("approved", "held"):
            refs.append({"id": new_id("ref"), "workspace_id": ws.id, "campaign_id": cmp.id, "referrer_participant_id": parts[0]["id"],
                         "referee_participant_id": parts[1]["id"], "referrer_contact_id": parts[0]["contact_id"],
                         "referee_contact_id": parts[1]["contact_id"], "seq": len(refs), "status": status, "risk_score": 0, "created_at": now})  # fmt: skip
        s.execute(insert(Referral), refs)
        rows = []
        for i in range(entries):
            referral = refs[0]["id"] if i % 10 == 0 else refs[1]["id"] if i % 20 == 5 else None
            rows.append({
                "id": new_id("rwd"), "workspace_id": ws.id, "contact_id": contacts[i % 1_000]["id"], "campaign_id": cmp.id,
                "idempotency_key": f"k{i}", "kind": "cash", "name": "佣金", "amount": 100 + i % 900, "currency": "CNY",
                "status": "pending", "reason": "commission", "referral_id": referral, "available_at": past, "meta": {},
                "created_at": past,
            })  # fmt: skip
            if len(rows) == 10_000:
                s.execute(insert(RewardEntry), rows)
                rows = []
        if rows:
            s.execute(insert(RewardEntry), rows)
    engine.dispose()


def one_run(base_url: str | None, entries: int) -> tuple[float, int, int]:
    url, handle = fresh_database(base_url)
    try:
        upgrade(url)
        fill(url, entries)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        start = time.perf_counter()
        with session_scope(sessions) as s:
            result = ledger.settle(s, utcnow())
        elapsed = time.perf_counter() - start
        engine.dispose()
        held = entries // 20
        assert result.issued == entries - held, (result, entries, held)
        return elapsed, result.approved, result.issued
    finally:
        drop(handle)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    backend = make_url(args.database_url).get_backend_name() if args.database_url else "sqlite"
    rates = []
    for run in range(args.runs):
        elapsed, approved, issued = one_run(args.database_url or None, args.entries)
        rates.append(issued / elapsed)
        print(
            f"run {run + 1}: {issued} entries settled (approved {approved}) in {elapsed:.3f} s → {issued / elapsed:,.0f} entries/s"
        )
    print(
        f"{backend}: median {statistics.median(rates):,.0f} entries/s over {args.runs} runs of {args.entries} pending entries"
    )
    print("command:", " ".join([Path(sys.executable).as_posix(), *sys.argv]))


if __name__ == "__main__":
    main()
