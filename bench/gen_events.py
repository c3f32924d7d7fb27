"""Generate a deterministic event data set inside DuckDB (no Python loops).

    /work/venv/bin/python bench/gen_events.py --events 10000000 --out /tmp/liebian-bench/events.duckdb

People click (with a channel), view, some sign up, some buy, and come back over 60 days.
The hash of the row number drives every choice, so the same arguments give the same data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from liebian.events.store import duckdb_first_touch, open_event_store
from liebian.events.store.duckdb_store import PERSON_KEY_SQL

WS = "ws_bench"

GEN_SQL = """
INSERT INTO events
SELECT g.*, {person_key} AS person_key FROM (
WITH r AS (
    SELECT i, CAST(hash(i) >> 2 AS BIGINT) AS h, CAST(hash(i * 7919 + 13) >> 2 AS BIGINT) AS h2
    FROM range($n) t(i)
)
SELECT
    $ws AS workspace_id,
    'e' || i AS event_id,
    CASE WHEN h % 100 < 30 THEN 'click' WHEN h % 100 < 65 THEN 'view'
         WHEN h % 100 < 80 THEN 'open' WHEN h % 100 < 90 THEN 'signup'
         WHEN h % 100 < 95 THEN 'purchase' ELSE 'share' END AS event,
    TIMESTAMP '2024-01-01' + to_seconds(CAST(h2 % (60 * 86400) AS BIGINT)) AS ts,
    TIMESTAMP '2024-03-01' AS received_at,
    'v' || ((h2 // 1000003) % $people) AS visitor_id,
    NULL AS user_id, NULL AS click_id,
    'lnk_' || (h % 500) AS link_id,
    CASE WHEN h % 100 < 30 THEN ['wx_group', 'moments', 'wecom', 'douyin', 'poster'][1 + (h // 100) % 5] END
        AS channel,
    NULL AS campaign_id,
    ['wechat', 'wecom', 'qq', 'browser', 'alipay'][1 + (h // 1000) % 5] AS platform,
    NULL AS device, NULL AS os, NULL AS browser, NULL AS referrer, NULL AS ip_hash,
    (h // 7) % 50 = 0 AS is_bot, (h // 11) % 10 = 0 AS is_qr,
    NULL AS utm_source, NULL AS utm_medium, NULL AS utm_campaign, NULL AS utm_term,
    NULL AS utm_content,
    CASE WHEN h % 100 BETWEEN 90 AND 94 THEN CAST(100 + (h // 13) % 20000 AS BIGINT) END AS revenue,
    'CNY' AS currency,
    NULL AS properties
FROM r
) g
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--out", default="/tmp/liebian-bench/events.duckdb")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    store = open_event_store(out)
    t0 = time.perf_counter()
    con = store.connection()
    # person_key: what the store's own insert path computes for every event.
    con.execute(
        GEN_SQL.format(person_key=PERSON_KEY_SQL),
        {"n": args.events, "ws": WS, "people": args.people},
    )
    # The rows bypassed the store's insert, so the first-touch table is derived here, as the
    # store would have kept it batch by batch.
    con.execute("BEGIN TRANSACTION")
    duckdb_first_touch.rebuild(con)
    con.execute("COMMIT")
    store.rebuild_rollup()  # the campaign dashboard's rollup, likewise
    con.execute("CHECKPOINT")
    dt = time.perf_counter() - t0
    print(
        f"generated {store.count(WS):,} events for {args.people:,} visitors in {dt:.1f} s -> {out}"
    )
    store.close()


if __name__ == "__main__":
    main()
