"""Ingest rate of the spool + embedded store (the part below HTTP).

    /work/venv/bin/python bench/bench_ingest_store.py --events 500000 --batch 50000

1. append: pre-serialized lines through Spool.append_line (the redirect's cost per click)
2. flush: sealed segments loaded into DuckDB by read_json with event_id dedupe, measured on
   top of an existing table (--base rows already stored, with their dedupe keys) so the
   anti-join has work to do.

    /work/venv/bin/python bench/bench_ingest_store.py --events 500000 --batch 50000 --base 10000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from liebian.events.spool import Spool
from liebian.events.store import duckdb_store, open_event_store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--base", type=int, default=1_000_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="liebian-ingest-"))
    try:
        store = open_event_store(work / "events.duckdb")
        if args.base:
            store.connection().execute(  # type: ignore[attr-defined]
                "INSERT INTO events (workspace_id, event_id, event, ts, is_bot, is_qr)"
                " SELECT 'ws', 'base' || i, 'click', TIMESTAMP '2024-01-01', false, false"
                " FROM range($n) t(i)",
                {"n": args.base},
            )
            # The stored rows' dedupe keys, as insert_ndjson would have written them.
            con = store.connection()  # type: ignore[attr-defined]
            if con.execute(
                "SELECT 1 FROM duckdb_tables() WHERE table_name = 'event_keys'"
            ).fetchone():
                con.execute(f"INSERT INTO event_keys SELECT {duckdb_store.KEY_SQL} FROM events")
        lines = [
            (
                json.dumps(
                    {
                        "workspace_id": "ws",
                        "event_id": f"evt-{i}",
                        "event": "click",
                        "ts": "2024-03-01 12:00:00.000",
                        "visitor_id": f"v{i % 50000}",
                        "link_id": f"lnk_{i % 100}",
                        "channel": "wx_group",
                        "platform": "wechat",
                        "is_bot": False,
                        "is_qr": i % 10 == 0,
                    }
                )
                + "\n"
            ).encode()
            for i in range(args.events)
        ]
        seg_bytes = sum(len(x) for x in lines[: args.batch])
        spool = Spool(work / "spool", max_segment_bytes=seg_bytes, max_segment_age=3600)
        t0 = time.perf_counter()
        for line in lines:
            spool.append_line(line)
        t_append = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = spool.flush_once(store)
        t_flush = time.perf_counter() - t0
        spool.close()
        n = args.events
        print(
            f"spool append_line: {n:,} lines in {t_append:.3f} s = {n / t_append:,.0f}/s"
            f" ({t_append / n * 1e6:.2f} us each)"
        )
        print(
            f"flush into DuckDB (batches of {args.batch:,}, {args.base:,} rows already"
            f" stored): {res.inserted:,} in {t_flush:.3f} s = {res.inserted / t_flush:,.0f}/s"
        )
        # Re-sending the same events: all dropped by the event_id anti-join.
        seg = work / "again.ndjson"
        seg.write_bytes(b"".join(lines[: args.batch]))
        t0 = time.perf_counter()
        dup = store.insert_ndjson(seg)
        dt = time.perf_counter() - t0
        print(f"re-send of {args.batch:,} known ids: {dup.duplicates:,} dropped in {dt:.3f} s")
        store.close()
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
