"""The audit hook's cost (team/audit.py): link create and update through the API with the
session hook on and off, in the same process and the same run, alternating rounds.

    PYTHONPATH=src python bench/bench_audit.py [--rounds 6] [--requests 300] [--database-url URL]

In process (FastAPI's TestClient, SQLite in a temporary data directory unless
``--database-url`` is given): each round creates ``--requests`` links and updates each once,
with the hook installed ("on") or its listeners removed ("off"), the modes alternating so drift
of a noisy machine falls on both. Prints per mode the median over rounds of requests per
second (wall) and CPU microseconds per request (``time.process_time``, this process: the app
and the client), the difference, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _hook(runtime: Any, on: bool) -> None:
    from liebian.team import audit

    for factory in (runtime.sessions, runtime.read_sessions):
        if on:
            audit.install(factory)
            continue
        for name, fn in (
            ("before_flush", audit._before_flush),
            ("after_begin", audit._after_begin),
            ("before_commit", audit._before_commit),
        ):
            if event.contains(factory, name, fn):
                event.remove(factory, name, fn)
        bind = factory.kw.get("bind")
        if bind is not None and event.contains(bind, "after_execute", audit._after_execute):
            event.remove(bind, "after_execute", audit._after_execute)


def _round(client: Any, headers: dict[str, str], n: int, tag: str) -> tuple[float, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ids = []
    for i in range(n):
        resp = client.post(
            "/api/v1/links",
            json={"url": f"https://example.com/{tag}/{i}", "channel": "wx_group_01"},
            headers=headers,
        )
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    for link_id in ids:
        resp = client.patch(
            f"/api/v1/links/{link_id}", json={"channel": "wx_group_02"}, headers=headers
        )
        assert resp.status_code == 200, resp.text
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return 2 * n / wall, cpu / (2 * n) * 1e6


def statements(rounds: int, n: int) -> None:
    """The engine-level listener (``_after_execute``) on statements no audited session owns —
    every statement of the hot paths (joins, helps, scans): µs per UPDATE with and without it."""
    from sqlalchemy import text

    from liebian.kit.db import make_engine
    from liebian.team import audit

    tmp = Path(tempfile.mkdtemp(prefix="liebian-audit-stmt-"))
    engine = make_engine(f"sqlite:///{tmp / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1, 0)"))
    stmt = text("UPDATE t SET n = n + 1 WHERE id = 1")
    results: dict[str, list[float]] = {"on": [], "off": []}
    for r in range(rounds):
        for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
            listening = event.contains(engine, "after_execute", audit._after_execute)
            if mode == "on" and not listening:
                event.listen(engine, "after_execute", audit._after_execute)
            if mode == "off" and listening:
                event.remove(engine, "after_execute", audit._after_execute)
            with engine.begin() as conn:
                cpu0 = time.process_time()
                for _ in range(n):
                    conn.execute(stmt)
                results[mode].append((time.process_time() - cpu0) / n * 1e6)
    engine.dispose()
    on, off = (statistics.median(results[m]) for m in ("on", "off"))
    print(
        f"un-audited statements: {off:.1f} µs CPU each without the listener, {on:.1f} with "
        f"({on - off:+.2f} µs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--statements", type=int, default=20_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    statements(args.rounds, args.statements)

    from fastapi.testclient import TestClient
    from sqlalchemy import func, select

    from liebian.app.factory import create_app
    from liebian.app.runtime import Runtime
    from liebian.kit.db import session_scope
    from liebian.kit.settings import Settings
    from liebian.team.models import AuditEntry
    from liebian.workspaces.service import bootstrap

    tmp = Path(tempfile.mkdtemp(prefix="liebian-audit-bench-"))
    extra = {"database_url": args.database_url} if args.database_url else {}
    settings = Settings(
        data_dir=tmp / "data", secret_key="11" * 32, base_url="http://sho.rt", jobs_interval=0,
        webhook_interval=0, segments_rebuild_interval=0, journeys_interval=0, **extra,
    )  # fmt: skip
    from liebian.migrations import upgrade

    upgrade(settings.resolved_database_url)
    runtime = Runtime.build(settings)
    app = create_app(settings, runtime)
    with session_scope(runtime.sessions) as session:
        _ws, key = bootstrap(session, "bench")
    headers = {"Authorization": f"Bearer {key}"}
    print(f"load average before: {_loadavg()}  pid {os.getpid()}")
    results: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    with TestClient(app, base_url="http://sho.rt") as client:
        _round(client, headers, 30, "warm")  # imports, caches, first statements
        for r in range(args.rounds):
            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                _hook(runtime, mode == "on")
                results[mode].append(_round(client, headers, args.requests, f"{mode}{r}"))
        _hook(runtime, True)
    with runtime.read_sessions() as session:
        audited = session.scalar(select(func.count()).select_from(AuditEntry))
    runtime.close()
    print(f"load average after:  {_loadavg()}")
    medians = {
        mode: (
            statistics.median(rate for rate, _ in rows),
            statistics.median(cpu for _, cpu in rows),
        )
        for mode, rows in results.items()
    }
    for mode, (rate, cpu) in medians.items():
        spread = sorted(round(c) for _, c in results[mode])
        print(f"hook {mode:3}: {rate:7.0f} req/s  {cpu:6.0f} µs CPU/request  (rounds: {spread})")
    on, off = medians["on"], medians["off"]
    print(
        f"hook cost: {on[1] - off[1]:+.0f} µs CPU/request ({(on[1] / off[1] - 1) * 100:+.1f} %), "
        f"throughput {(on[0] / off[0] - 1) * 100:+.1f} %"
    )
    on_requests = 30 * 2 + args.rounds * args.requests * 2
    print(f"audit rows written: {audited} (requests with the hook on: {on_requests})")
    print(
        "command: PYTHONPATH=src python bench/bench_audit.py "
        f"--rounds {args.rounds} --requests {args.requests} --statements {args.statements}"
        + (f" --database-url {args.database_url}" if args.database_url else "")
    )


if __name__ == "__main__":
    main()
