"""The campaign dashboard (实时数据看板) and the fission tree at issue 12's scale.

    flock /work/brief/bench.lock env PYTHONPATH=src /work/main/.venv/bin/python \\
        bench/bench_dashboard.py --events 10000000 --participants 100000

Builds, deterministically and inside the engines (no Python loops over events):
- a DuckDB event store holding ``--events`` events of ONE campaign (the worst case: every event
  is the dashboard's) from ``--participants`` participants plus anonymous friends: page views,
  joins, shares, invite clicks, invites, qualified invites, group orders with revenue, over
  30 days and five channels;
- a SQLite OLTP database with the campaign's ``--participants`` participants as an invite
  forest (each participant's referrer a hash-chosen earlier one: depth and wide branches).

Then times, medians of ``--repeat`` runs, wall and CPU (the process's, DuckDB's threads
included): the three engine queries one dashboard request runs (totals, by channel, by day,
``dashboard.event_counts``) and a reference in the same run (a bare ``count(*)`` of the
campaign's events), the OLTP part (reward cost), and the tree (roots level and one expanded
node, ``dashboard.tree``). Prints the machine's load average before and after.

Target (issue 12): a campaign dashboard over 10,000,000 events and 100,000 participants
answers in ≤ 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from liebian.campaigns import dashboard
from liebian.campaigns.models import Campaign, Participant
from liebian.contacts.models import Contact
from liebian.events.store import open_event_store
from liebian.events.store.base import COLUMN_NAMES
from liebian.events.store.duckdb_store import PERSON_KEY_SQL
from liebian.kit.crypto import PiiCipher
from liebian.migrations import upgrade
from liebian.workspaces.models import Workspace

WS = "ws_bench"
CID = "cmp_bench"

# One campaign's events. The row's hash picks the action; participants are u0…u{P-1} (their
# actions carry user_id), friends who only look or click are visitors.
GEN_SQL = """
INSERT INTO events
SELECT g.*, {person_key} AS person_key FROM (
WITH r AS (
    SELECT i, CAST(hash(i) >> 2 AS BIGINT) AS h, CAST(hash(i * 7919 + 13) >> 2 AS BIGINT) AS h2
    FROM range($n) t(i)
), a AS (
    SELECT i, h, h2,
        CASE WHEN i < $people THEN 'campaign_join'
             WHEN h % 100 < 45 THEN 'page_view' WHEN h % 100 < 60 THEN 'share'
             WHEN h % 100 < 88 THEN 'invite_click' WHEN h % 100 < 93 THEN 'invite'
             WHEN h % 100 < 96 THEN 'invite_qualified' WHEN h % 100 < 98 THEN 'group_joined'
             ELSE 'order' END AS ev
    FROM r
)
SELECT
    $ws AS workspace_id,
    'e' || i AS event_id,
    ev AS event,
    TIMESTAMP '2026-11-01' + to_seconds(CAST(h2 % (30 * 86400) AS BIGINT)) AS ts,
    TIMESTAMP '2026-12-01' AS received_at,
    'v' || ((h2 // 1000003) % ($people * 5)) AS visitor_id,
    CASE WHEN i < $people THEN 'u' || i
         WHEN ev IN ('page_view', 'invite_click') THEN NULL
         ELSE 'u' || ((h2 // 7) % $people) END AS user_id,
    NULL AS click_id,
    NULL AS link_id,
    ['wechat_group', 'moments', 'official_account', 'wecom', 'sms'][1 + (h // 100) % 5] AS channel,
    $cid AS campaign_id,
    'wechat' AS platform,
    NULL AS device, NULL AS os, NULL AS browser, NULL AS referrer, NULL AS ip_hash,
    (h // 7) % 200 = 0 AS is_bot, FALSE AS is_qr,
    NULL AS utm_source, NULL AS utm_medium, NULL AS utm_campaign, NULL AS utm_term,
    NULL AS utm_content,
    CASE WHEN ev = 'order' THEN CAST(1000 + (h // 13) % 20000 AS BIGINT) END AS revenue,
    'CNY' AS currency,
    NULL AS properties
FROM a
) g
"""


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(median wall ms, median CPU ms, last result)."""
    walls, cpus = [], []
    result = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append((time.perf_counter() - w0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    return statistics.median(walls), statistics.median(cpus), result


def build_events(path: Path, events: int, people: int) -> Any:
    store = open_event_store(path)
    t0 = time.perf_counter()
    con = store.connection()
    con.execute(
        GEN_SQL.format(person_key=PERSON_KEY_SQL),
        {"n": events, "ws": WS, "people": people, "cid": CID},
    )
    con.execute("CHECKPOINT")
    print(f"built {store.count(WS):,} campaign events in {time.perf_counter() - t0:.1f} s")
    # The rows bypassed the store's load, so the dashboard's rollup is derived here, as the
    # load would have kept it batch by batch.
    t0, c0 = time.perf_counter(), time.process_time()
    store.rebuild_rollup()
    con.execute("CHECKPOINT")
    print(
        f"built the campaign rollup in {time.perf_counter() - t0:.1f} s"
        f" ({time.process_time() - c0:.1f} s CPU): "
        + ", ".join(
            f"{t} {con.execute(f'SELECT count(*) FROM {t}').fetchone()[0]:,} rows"
            for t in ("campaign_rollup", "campaign_people")
        )
    )
    return store


def build_oltp(path: Path, people: int) -> Session:
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = create_engine(url)
    session = Session(engine)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    session.add(Workspace(id=WS, name="bench"))
    session.add(
        Campaign(
            id=CID,
            workspace_id=WS,
            type="invite",
            name="bench",
            status="active",
            config={
                "type": "invite",
                "tiers": [
                    {"invites": 1, "reward": {"kind": "coupon", "name": "券", "amount": 500}}
                ],
            },
            share_text="",
            starts_at=now,
            ends_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    t0 = time.perf_counter()
    contacts, parts = [], []
    for i in range(people):
        # Roots: 1 in 50; everyone else was brought by a hash-chosen earlier participant, a
        # few of them (i % 997 == 0) by the same handful, which makes wide branches.
        h = (i * 2654435761) % 2**32
        if i % 50 == 0:
            ref = None
        elif i % 7 == 0:
            ref = f"par_{(h % 20) * 50}"
        else:
            ref = f"par_{h % i}"
        contacts.append({"id": f"ctc_{i}", "workspace_id": WS, "external_id": f"u{i}"})
        parts.append(
            {
                "id": f"par_{i}",
                "workspace_id": WS,
                "campaign_id": CID,
                "contact_id": f"ctc_{i}",
                "invite_code": f"c{i}",
                "referrer_participant_id": ref,
                "joined_at": now,
                "config_version": 1,
            }
        )
    session.execute(insert(Contact), contacts)
    session.execute(insert(Participant), parts)
    session.commit()
    print(f"built {people:,} participants (invite forest) in {time.perf_counter() - t0:.1f} s")
    return session


def load_cost(store: Any, tmp: Path, n: int) -> list[tuple[str, float, float]]:
    """insert_ndjson of ``n`` new events copied from the campaign's (new ids, a second later),
    once as campaign events and once with no campaign (no rollup work), alternating, 3 each."""
    con = store.connection()
    out: list[tuple[str, float, float]] = []
    walls: dict[str, list[float]] = {"campaign": [], "none": []}
    cpus: dict[str, list[float]] = {"campaign": [], "none": []}
    for i in range(6):
        kind = "campaign" if i % 2 == 0 else "none"
        path = tmp / f"batch{i}.ndjson"
        cols = ", ".join(
            f"'b{i}_' || event_id AS event_id" if c == "event_id"
            else (f"{'campaign_id' if kind == 'campaign' else 'NULL'} AS campaign_id"
                  if c == "campaign_id" else c)
            for c in COLUMN_NAMES
        )  # fmt: skip
        con.execute(
            f"COPY (SELECT {cols} FROM events USING SAMPLE {n} ROWS (reservoir, {i})) TO $p"
            " (FORMAT json)",
            {"p": str(path)},
        )
        w0, c0 = time.perf_counter(), time.process_time()
        res = store.insert_ndjson(path, segment=f"bench-{i}")
        walls[kind].append((time.perf_counter() - w0) * 1000)
        cpus[kind].append((time.process_time() - c0) * 1000)
        assert res.inserted == n, res
    for kind, label in (("none", "no campaign"), ("campaign", "campaign, rollup kept")):
        out.append(
            (
                f"load {n:,} new events ({label})",
                statistics.median(walls[kind]),
                statistics.median(cpus[kind]),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--participants", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tz", default="Asia/Shanghai")
    ap.add_argument("--chdb", action="store_true", help="also time the engine queries on chdb")
    ap.add_argument(
        "--from-events",
        action="store_true",
        help="also run the 3 queries from the events once (the path before the rollup) and"
        " check they give the rollup's answer",
    )
    ap.add_argument(
        "--load-batch",
        type=int,
        default=50_000,
        help="time loading a batch of this many new campaign events into the full store,"
        " against the same batch without a campaign (the rollup's cost at load); 0: skip",
    )
    args = ap.parse_args()
    print("load before:", Path("/proc/loadavg").read_text().strip(), f"· cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="liebian-bench-dash-") as tmp:
        store = build_events(Path(tmp) / "events.duckdb", args.events, args.participants)
        session = build_oltp(Path(tmp) / "oltp.db", args.participants)
        campaign = session.get(Campaign, CID)
        assert campaign is not None
        cipher = PiiCipher(b"\0" * 32)
        con = store.connection()

        def reference() -> Any:
            return con.execute(
                "SELECT count(*) FROM events WHERE workspace_id = $1 AND campaign_id = $2",
                [WS, CID],
            ).fetchone()

        def queries() -> Any:
            return [
                dashboard.event_counts(store, WS, CID, by=by, tz=args.tz)
                for by in (None, "channel", "day")
            ]

        def from_events() -> Any:
            return [
                dashboard.counts_from_events(store, WS, CID, by=by, tz=args.tz)
                for by in (None, "channel", "day")
            ]

        def whole() -> Any:
            return dashboard.dashboard(session, store, campaign, tz=args.tz)

        def roots() -> Any:
            return dashboard.tree(session, cipher, campaign, parent=None, offset=0, limit=50)

        rows: list[tuple[str, float, float]] = []
        wall, cpu, _ = timed(reference, args.repeat)
        rows.append(("reference: count(*) of the campaign's events", wall, cpu))
        wall, cpu, q = timed(queries, args.repeat)
        rows.append(("rollup: totals + by channel + by day (3 queries)", wall, cpu))
        if args.from_events:
            wall, cpu, raw = timed(from_events, 1)
            rows.append(("from events (before): the same 3, once", wall, cpu))
            assert raw == q, "the rollup and the events disagree"
        wall, cpu, d = timed(whole, args.repeat)
        rows.append(("dashboard() whole (engine + OLTP reward cost)", wall, cpu))
        dashboard._FORESTS.clear()
        wall, cpu, t = timed(roots, 1)
        rows.append(("tree: roots level, first (builds the forest)", wall, cpu))
        wall, cpu, t = timed(roots, args.repeat)
        rows.append(("tree: roots level again (forest re-validated)", wall, cpu))
        widest = t["widest"][0]["participant_id"]
        wall, cpu, child = timed(
            lambda: dashboard.tree(session, cipher, campaign, parent=widest, offset=0, limit=50),
            args.repeat,
        )
        rows.append(("tree: expand the widest branch", wall, cpu))
        totals = d["totals"]
        print(
            f"campaign: {args.events:,} events · participants {totals['participants']:,} · "
            f"seen {totals['seen']:,} · sharers {totals['sharers']:,} · days {len(d['by_day'])} · "
            f"channels {len(d['by_channel'])} · tree {t['participants']:,} people, depth "
            f"{t['max_depth']}, widest {t['widest'][0]['children']} direct"
        )
        assert len(q) == 3 and child["items"]
        if args.chdb:
            parquet = Path(tmp) / "events.parquet"
            con.execute(
                f"COPY (SELECT {', '.join(COLUMN_NAMES)} FROM events) TO $p (FORMAT parquet)",
                {"p": str(parquet)},
            )
            ch = open_event_store("chdb://:memory:?database=bench_dash")
            t0 = time.perf_counter()
            ch.query(
                f"INSERT INTO {ch.events_table} SELECT * FROM file({{p:String}}, Parquet)",
                {"p": str(parquet)},
            )
            print(f"chdb: loaded {ch.count(WS):,} events in {time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            ch.rebuild_rollup()
            print(f"chdb: built the campaign rollup in {time.perf_counter() - t0:.1f} s")
            wall, cpu, chq = timed(
                lambda: [
                    dashboard.event_counts(ch, WS, CID, by=by, tz=args.tz)
                    for by in (None, "channel", "day")
                ],
                args.repeat,
            )
            rows.append(("chdb rollup: totals + by channel + by day", wall, cpu))
            assert chq == q, "chdb and DuckDB disagree"  # same figures on both engines
            ch.close()
        if args.load_batch:  # last: it adds events
            rows.extend(load_cost(store, Path(tmp), args.load_batch))
        print(f"{'median of ' + str(args.repeat):<52} {'wall ms':>9} {'CPU ms':>9}")
        for name, wall, cpu in rows:
            print(f"{name:<52} {wall:>9.1f} {cpu:>9.1f}")
        store.close()
        session.close()
    print("load after:", Path("/proc/loadavg").read_text().strip())


if __name__ == "__main__":
    main()
