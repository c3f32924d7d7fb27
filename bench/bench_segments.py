"""Segments at the size the issue names: 1,000,000 contacts (SQLite) and 10,000,000 events
(DuckDB), the embedded default, generated in bulk inside each engine.

    PYTHONPATH=src /work/main/.venv/bin/python bench/bench_segments.py [--contacts 1000000]
        [--events 10000000] [--dir /tmp/liebian-bench-segments] [--runs 5] [--rate 20000]

The segment: has tag 宝妈 (30% of contacts) AND purchased ≥ 2 times in the last 30 days AND
no visit in the last 14 days. Figures (medians of --runs):

- evaluate: liebian.segments.evaluation.evaluate over everyone (the full membership);
- preview: POST /segments/preview's service call (count + sample of 20);
- build: a first full build that writes the members (once);
- reference: one hand-written DuckDB query over the same rows (the tagged people copied into
  DuckDB beforehand, untimed), to compare the engine work against;
- live: while a thread appends events to the spool at --rate events/s (the flusher loads
  them, the keeper follows), one purchase that completes a contact's membership is appended;
  the time until the member row is committed.

Peak memory is the process's max RSS. Print `uptime` with the figures: this machine is shared.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sqlite3
import statistics
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

WS = "ws_bench"
TAG = "tag_01BENCHMOMAAAAAAAAAAAAAAA"
NOW = datetime.now(UTC).replace(microsecond=0)

EVENTS_SQL = """
INSERT INTO events (workspace_id, event_id, event, ts, received_at, visitor_id, user_id,
                    channel, is_bot, is_qr, revenue, currency, person_key)
SELECT $ws, 'e' || i,
       CASE WHEN h % 100 < 60 THEN 'visit' WHEN h % 100 < 75 THEN 'purchase' ELSE 'click' END,
       $now - to_seconds(CAST(h2 % (90 * 86400) AS BIGINT)),
       $now, 'v' || p, 'u' || p,
       ['wx_group', 'moments', 'douyin'][1 + (h // 100) % 3], false, false,
       CASE WHEN h % 100 BETWEEN 60 AND 74 THEN CAST(100 + (h // 13) % 20000 AS BIGINT) END,
       'CNY', hash('u' || p)
FROM (SELECT i, CAST(hash(i) >> 2 AS BIGINT) AS h, CAST(hash(i * 7919 + 13) >> 2 AS BIGINT) AS h2,
             CAST(hash(i * 104729 + 7) >> 2 AS BIGINT) % $people AS p
      FROM range($n) t(i))
ORDER BY 4  -- by time, as ingestion appends them (DuckDB's zone maps then skip old blocks)
"""

CONDITION = {
    "type": "and",
    "conditions": [
        {"type": "tags", "match": "any", "tags": [TAG]},
        {
            "type": "event",
            "event": "purchase",
            "window": {"last_days": 30},
            "measure": "count",
            "op": "gte",
            "value": 2,
        },
        {"type": "event", "event": "visit", "window": {"last_days": 14}, "did": False},
    ],
}

REFERENCE_SQL = """
SELECT count(*) FROM (
  SELECT user_id FROM events WHERE workspace_id = $ws AND event = 'purchase'
    AND ts >= $d30 GROUP BY user_id HAVING count(*) >= 2
) b
WHERE b.user_id IN (SELECT external_id FROM tagged)
  AND b.user_id NOT IN (SELECT user_id FROM events WHERE workspace_id = $ws AND event = 'visit'
                        AND ts >= $d14)
"""


def generate(root: Path, n_contacts: int, n_events: int) -> None:
    from liebian.events.store import open_event_store
    from liebian.migrations import upgrade

    db = root / "liebian.db"
    upgrade(f"sqlite:///{db}")
    con = sqlite3.connect(db)
    t0 = time.perf_counter()
    now = NOW.strftime("%Y-%m-%d %H:%M:%S.000000")
    con.execute(
        "INSERT INTO workspaces (id, name, timezone, created_at) VALUES (?, ?, ?, ?)",
        (WS, "bench", "Asia/Shanghai", now),
    )
    con.execute(
        "INSERT INTO tags (id, workspace_id, name, color, kind, created_at)"
        " VALUES (?, ?, '宝妈', '#2f6fed', 'manual', ?)",
        (TAG, WS, now),
    )
    con.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1)"
        " INSERT INTO contacts (id, workspace_id, external_id, orders_count, gmv_cents,"
        " invites_made, invites_qualified, created_at, updated_at)"
        " SELECT printf('ctc_%026d', i), ?, 'u' || i, 0, 0, 0, 0, ?, ? FROM n",
        (n_contacts, WS, now, now),
    )
    con.execute(
        "INSERT INTO contact_tags (workspace_id, contact_id, tag_id, source, added_at)"
        " SELECT ?, id, ?, 'manual', ? FROM contacts"
        " WHERE workspace_id = ? AND (abs(random()) % 10) < 3",
        (WS, TAG, now, WS),
    )
    con.commit()
    con.execute("ANALYZE")
    con.close()
    print(f"contacts: {n_contacts:,} in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    store = open_event_store(root / "events.duckdb")
    duck = store.connection()  # type: ignore[attr-defined]
    duck.execute(
        EVENTS_SQL, {"ws": WS, "n": n_events, "people": n_contacts, "now": NOW.replace(tzinfo=None)}
    )
    duck.execute("CHECKPOINT")
    store.close()
    print(f"events: {n_events:,} in {time.perf_counter() - t0:.1f} s")


def median_ms(samples: list[float]) -> str:
    return (
        f"{statistics.median(samples) * 1000:.0f} ms (runs: "
        + ", ".join(f"{s * 1000:.0f}" for s in samples)
        + ")"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--dir", default="/tmp/liebian-bench-segments")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rate", type=int, default=20_000, help="events/s appended while live")
    ap.add_argument("--reuse", action="store_true", help="keep a data set made before")
    args = ap.parse_args()
    root = Path(args.dir)
    if not args.reuse or not (root / "events.duckdb").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        generate(root, args.contacts, args.events)

    from liebian.segments.reading import reader_factory

    from liebian.app.runtime import Runtime
    from liebian.events.spool import Flusher, Spool
    from liebian.events.store import open_event_store
    from liebian.kit.db import session_scope
    from liebian.kit.settings import Settings
    from liebian.segments import service
    from liebian.segments.evaluation import evaluate
    from liebian.segments.tasks import MembershipKeeper

    print(
        f"load before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
    )
    settings = Settings(data_dir=root, secret_key="11" * 32)
    runtime = Runtime.build(settings)
    store = open_event_store(root / "events.duckdb")
    readers = reader_factory(runtime.engine, runtime.extras)
    # untimed: the reference query needs the tagged people inside DuckDB
    duck = store.connection()  # type: ignore[attr-defined]
    with readers() as reader:
        tagged = (
            reader.execute(
                text(
                    "SELECT c.external_id FROM contact_tags t JOIN contacts c ON c.id = t.contact_id"
                    " WHERE t.workspace_id = :ws AND t.tag_id = :tag"
                ),
                {"ws": WS, "tag": TAG},
            )
            .scalars()
            .all()
        )
    duck.execute("CREATE OR REPLACE TEMP TABLE tagged (external_id VARCHAR)")
    duck.execute("INSERT INTO tagged SELECT unnest($x)", {"x": list(tagged)})

    evals, previews, refs = [], [], []
    size = 0
    for _ in range(args.runs):
        t0 = time.perf_counter()
        with readers() as reader:
            members = evaluate(reader, store, WS, CONDITION, now=NOW)
        evals.append(time.perf_counter() - t0)
        size = len(members)
        t0 = time.perf_counter()
        with session_scope(runtime.sessions) as session, readers() as reader:
            p = service.preview(session, reader, store, WS, CONDITION, now=NOW)
        previews.append(time.perf_counter() - t0)
        assert p.count == size
        t0 = time.perf_counter()
        ref = duck.execute(
            REFERENCE_SQL,
            {
                "ws": WS,
                "d30": (NOW - timedelta(days=30)).replace(tzinfo=None),
                "d14": (NOW - timedelta(days=14)).replace(tzinfo=None),
            },
        ).fetchone()
        refs.append(time.perf_counter() - t0)
        assert ref is not None and ref[0] == size, (ref, size)
    print(f"members: {size:,} of {args.contacts:,} contacts, {args.events:,} events")
    print(f"evaluate (full membership): {median_ms(evals)}")
    print(f"preview (count + sample 20): {median_ms(previews)}")
    print(f"reference hand-written DuckDB query (behaviour + tagged table): {median_ms(refs)}")

    t0 = time.perf_counter()
    with session_scope(runtime.sessions) as session, readers() as reader:
        seg = service.create(
            session,
            reader,
            store,
            WS,
            name=f"bench {time.time_ns()}",
            kind="dynamic",
            condition=CONDITION,
            now=NOW,
        )
        seg_id = seg.id
    print(f"first build with {size:,} member rows written: {time.perf_counter() - t0:.2f} s")

    # -- live: a purchase completes a membership while the spool is busy -------------------
    spool = Spool(root / "spool")
    keeper = MembershipKeeper(runtime.sessions, readers, store)
    flusher = Flusher(spool, store, interval=settings.flush_interval)
    spool.after_load.append(keeper.on_loaded)
    keeper.start()
    flusher.start()
    stop = threading.Event()
    sent = [0]

    def ingest() -> None:
        from liebian.events.store.base import EventRow

        i = 0
        batch = max(args.rate // 20, 1)
        while not stop.is_set():
            t = time.monotonic()
            now = datetime.now(UTC)
            lines = b"".join(
                EventRow(
                    workspace_id=WS,
                    event_id=f"live{i + k}",
                    event="click",
                    ts=now,
                    user_id=f"u{(i + k) * 7919 % args.contacts}",
                ).to_json_line()
                for k in range(batch)
            )
            spool.append_line(lines)
            i += batch
            sent[0] += batch
            time.sleep(max(0.0, 0.05 - (time.monotonic() - t)))

    feeder = threading.Thread(target=ingest, daemon=True)
    feeder.start()
    time.sleep(3)
    # candidates: tagged, not members, exactly one purchase in 30 days, no visit in 14
    cand = duck.execute(
        "SELECT user_id FROM events WHERE workspace_id = $ws AND event = 'purchase' AND ts >= $d30"
        " AND user_id IN (SELECT external_id FROM tagged) AND user_id NOT IN (SELECT user_id"
        " FROM events WHERE workspace_id = $ws AND event = 'visit' AND ts >= $d14)"
        " GROUP BY user_id HAVING count(*) = 1 LIMIT $k",
        {
            "ws": WS,
            "d30": (NOW - timedelta(days=30)).replace(tzinfo=None),
            "d14": (NOW - timedelta(days=14)).replace(tzinfo=None),
            "k": args.runs,
        },
    ).fetchall()
    from sqlalchemy import select

    from liebian.contacts.models import Contact
    from liebian.events.store.base import EventRow
    from liebian.segments.models import SegmentMember

    lags = []
    t_start = time.monotonic()
    sent_before = sent[0]
    for (user,) in cand:
        with readers() as reader:
            cid = reader.scalar(
                select(Contact.id).where(Contact.workspace_id == WS, Contact.external_id == user)
            )
        t0 = time.monotonic()
        spool.append_line(
            EventRow(
                workspace_id=WS,
                event_id=f"buy-{user}",
                event="purchase",
                ts=datetime.now(UTC),
                user_id=user,
                revenue=990,
            ).to_json_line()
        )
        while True:
            with readers() as reader:
                hit = reader.scalar(
                    select(SegmentMember.contact_id).where(
                        SegmentMember.segment_id == seg_id, SegmentMember.contact_id == cid
                    )
                )
            if hit or time.monotonic() - t0 > 30:
                break
            time.sleep(0.02)
        lags.append(time.monotonic() - t0 if hit else float("inf"))
    rate = (sent[0] - sent_before) / (time.monotonic() - t_start)
    if keeper.last_error or flusher.last_error:
        print(f"keeper error: {keeper.last_error!r}; flusher error: {flusher.last_error!r}")
    stop.set()
    feeder.join()
    flusher.stop()
    keeper.stop()
    spool.close()
    print(
        f"live: purchase → member row committed: {median_ms(lags)};"
        f" ingestion meanwhile ≈ {rate:,.0f} events/s through the spool; keeper passes:"
        f" {keeper.passes}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the process: {peak:.0f} MB")
    print(
        f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
    )
    store.close()
    runtime.close()


if __name__ == "__main__":
    main()
