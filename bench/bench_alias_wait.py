"""Time the realistic mix's request path spends writing the identity map into DuckDB
(``store.add_aliases``, under the store's write lock) while the spool flusher loads segments
— the wait that keeps the mix's acknowledged rate far below page views' (docs/benchmarks.md).

In process: two client threads call ``events.service.ingest`` with the mix's 10,000-event
batches (bench_ingest_api.mix_bodies) into a real spool, DuckDB and SQLite under a temp
directory, with the flusher running (``--no-flusher``: without it). Wall time, so run it on
a quiet machine and compare runs taken back to back.

    PYTHONPATH=src python bench/bench_alias_wait.py [--events 300000] [--people 12000]
    PYTHONPATH=src python bench/bench_alias_wait.py --known   # 200 known pairs, memory on/off
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_ingest_api import mix_bodies
from liebian.app.runtime import Runtime
from liebian.app.wiring import wire
from liebian.events import service
from liebian.events.spool import Flusher
from liebian.events.store import Alias
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.settings import Settings
from liebian.migrations import upgrade
from liebian.workspaces.service import bootstrap


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--people", type=int, default=12_000)
    parser.add_argument("--no-flusher", action="store_true")
    parser.add_argument("--known", action="store_true", help="only time re-sent known pairs")
    args = parser.parse_args()
    if args.known:
        known_pairs()
        return
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), secret_key="11" * 32, jobs_interval=0, webhook_interval=0)  # fmt: skip
        upgrade(settings.resolved_database_url)
        runtime = Runtime.build(settings)
        wire(runtime)
        with session_scope(runtime.sessions) as session:
            workspace_id = bootstrap(session, "bench")[0].id
        store = runtime.event_store
        assert store is not None and runtime.spool is not None
        add_aliases = store.add_aliases
        calls: list[tuple[int, int, float]] = []  # (aliases given, written, wall seconds)
        lock = threading.Lock()

        def timed(aliases: Sequence[Alias]) -> int:
            start = time.perf_counter()
            written = add_aliases(aliases)
            with lock:
                calls.append((len(aliases), written, time.perf_counter() - start))
            return written

        store.add_aliases = timed  # type: ignore[method-assign]
        bodies, _ = mix_bodies(0, total=args.events, people=args.people)
        flusher = None
        if not args.no_flusher:
            flusher = Flusher(runtime.spool, store, interval=0.2)
            flusher.start()
        hooks = runtime.extras["event_hooks"]

        def client(part: list[bytes]) -> None:
            for body in part:
                service.ingest(workspace_id=workspace_id, raw=body, spool=runtime.spool,
                               store=store, now=utcnow(), hooks=hooks)  # fmt: skip

        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(bodies[i::2],)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        if flusher is not None:
            flusher.stop()
        runtime.close()
    inside = sum(c[2] for c in calls)
    print(
        f"{len(bodies)} requests of the realistic mix ({args.events:,} events), flusher "
        f"{'off' if args.no_flusher else 'on'}: ingest wall {wall:.2f} s "
        f"({args.events / wall:,.0f} events/s); add_aliases {len(calls)} calls, "
        f"{sum(c[0] for c in calls):,} aliases given, {sum(c[1] for c in calls):,} written, "
        f"{inside:.2f} s inside ({inside / (2 * wall) * 100:.0f}% of the client threads' time; "
        f"max {max((c[2] for c in calls), default=0):.2f} s)"
    )


def known_pairs(calls: int = 30, pairs: int = 200) -> None:
    """``calls`` × ``pairs`` (visitor → user) pairs the store holds already, with the store's
    memory of written pairs on and off (alternated twice), no other thread."""
    from datetime import datetime

    from liebian.events.store import duckdb_store, open_event_store

    size = duckdb_store.ALIAS_CACHE_SIZE
    for memory in (False, True, False, True):
        duckdb_store.ALIAS_CACHE_SIZE = size if memory else 0
        with tempfile.TemporaryDirectory() as tmp:
            store = open_event_store(Path(tmp) / "events.duckdb")
            batch = [Alias("ws", f"v{i}", f"u{i}", datetime(2026, 11, 1)) for i in range(pairs)]
            store.add_aliases(batch)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                store.add_aliases(batch)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            store.close()
        print(f"memory {'on ' if memory else 'off'}: {calls} calls of {pairs} known pairs "
              f"{wall:.3f} s wall, {cpu:.3f} s CPU")  # fmt: skip
    duckdb_store.ALIAS_CACHE_SIZE = size


if __name__ == "__main__":
    main()
