"""Journeys at scale: N contacts enter a 3-step journey at once; step executions per second,
deliveries counted at a loopback receiver (duplicates, missed), lateness of due steps.

    PYTHONPATH=src /work/main/.venv/bin/python bench/bench_journeys.py [--contacts 100000]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_journeys]
        [--workers 2 --kill-after 0.3]

The journey: ``hello`` (webhook POST to the receiver, Idempotency-Key = run:step) → ``pause``
(wait 1 second) → ``done`` (add a tag). The receiver is a separate process (asyncio, HTTP/1.1
keep-alive) that counts every POST per key.

- Embedded (default): a SQLite database in a temporary directory and one in-process executor
  (the code `liebian serve` runs).
- ``--workers K`` (PostgreSQL): K `liebian worker` processes; with ``--kill-after F`` the first
  one is SIGKILLed once F of the deliveries have arrived (lease 3 s for the takeover).

Prints: contacts, steps, wall time of the run, step executions/s, POSTs / distinct keys /
keys seen twice / keys missing, and the lateness (started_at − due_at) of the wait's next
steps: p50 / p99 / max.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, text


def receiver_main(port_q: Any, stop_ev: Any, out_q: Any, delivered: Any = None) -> None:
    counts: dict[str, int] = {}
    first: dict[str, float] = {}  # key → wall time of its first POST (for the lateness)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, key = 0, ""
                for line in head.split(b"\r\n"):
                    low = line.lower()
                    if low.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                    elif low.startswith(b"idempotency-key:"):
                        key = line.split(b":", 1)[1].strip().decode()
                if length:
                    await reader.readexactly(length)
                counts[key] = counts.get(key, 0) + 1
                if key not in first:
                    first[key] = time.time()
                    if delivered is not None:
                        delivered.value += 1  # distinct keys, read by the kill trigger
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_q.put(server.sockets[0].getsockname()[1])
        while not stop_ev.is_set():
            await asyncio.sleep(0.1)
        server.close()
        out_q.put((counts, first))

    asyncio.run(main())


def build(
    url: str,
    n: int,
    receiver_url: str,
    via_channel: bool = False,
    pace: float = 0.0,
    start_in: float = 1.0,
) -> tuple[str, str, float, float]:
    from liebian.automation import service
    from liebian.contacts.models import Contact
    from liebian.kit.db import make_engine, make_session_factory, session_scope
    from liebian.kit.ids import new_id
    from liebian.migrations import upgrade
    from liebian.workspaces.service import create_workspace

    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    now = datetime.now(UTC)
    with session_scope(sessions) as s:
        ws = create_workspace(s, "bench").id
    with session_scope(sessions) as s:
        rows = [{"id": new_id("ctc"), "workspace_id": ws, "external_id": f"u{i}",
                 "created_at": now, "updated_at": now} for i in range(n)]  # fmt: skip
        for i in range(0, n, 5000):
            s.execute(insert(Contact), rows[i : i + 5000])
        from liebian.contacts.tags import create_tag

        tag = create_tag(s, ws, "完成", "#2f6fed", None).id
    first: dict[str, Any] = {"id": "hello", "type": "webhook", "url": receiver_url}
    if via_channel:
        # The same POST as a channel message: channels.send_many records and marks it.
        from liebian.app.runtime import Runtime
        from liebian.channels.config import ChannelInput, create_channel
        from liebian.kit.settings import Settings

        rt = Runtime.build(Settings(data_dir=Path(tempfile.mkdtemp()), database_url=url,
                                    secret_key="22" * 32, allow_private_webhooks=True))  # fmt: skip
        with session_scope(sessions) as s:
            chn, _ = create_channel(s, rt, ws, ChannelInput(kind="webhook", name="bench",
                                                             config={"url": receiver_url}))  # fmt: skip
            first = {"id": "hello", "type": "send", "channel_id": chn.id,
                     "content": {"text": "欢迎 {{ contact.external_id }}"},
                     "category": "transactional"}  # fmt: skip
        rt.close()
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            first,
            {"id": "pause", "type": "wait", "duration": {"seconds": 1}},
            {"id": "done", "type": "add_tag", "tag_ids": [tag]},
        ],
    }
    with session_scope(sessions) as s:
        j = service.create(s, ws, "bench", definition, allow_private_urls=True)
        service.publish(s, j, allow_private_urls=True)
        jid = j.id
    t = time.perf_counter()
    with session_scope(sessions) as s:
        got = service.enrol(s, service.get(s, ws, jid), [r["id"] for r in rows], trigger="manual")
    print(f"enrolled {got.entered} in {time.perf_counter() - t:.1f} s")
    took, margin = spread(sessions, pace, start_in) if pace else (0.0, 0.0)
    engine.dispose()
    # The write's seconds, and the first due time on the perf_counter clock.
    return ws, jid, took, time.perf_counter() + margin


def spread(sessions: Any, pace: float, start_in: float = 1.0) -> tuple[float, float]:
    """Paced entry: the first steps fall due one after another at ``pace / 3`` people a
    second (``pace`` step executions/s for 3-step runs), from ``start_in`` s after this,
    instead of all at once — the sustained load at which 'a step due at T runs within 1 s of
    T' is measured (decision 0034). With worker processes the steps are first parked an hour
    ahead and spread again once the workers run (``_workers_ready``): a step must not fall due
    while the processes that run it are still starting. The seconds the write took, and
    the seconds from its commit to the first due time.

    The due times are computed before the rows are written: ``start_in`` must exceed the
    write, or the first steps are already due (late) when they become visible. Printed: how
    long before the first due time the write committed (session 11: 100,000 rows took ~4 s on
    PostgreSQL, so with 1 s the first steps were ~3 s late before any worker could see them)."""
    from sqlalchemy import bindparam, update

    from liebian.automation.models import JourneyStepExecution as E
    from liebian.kit.db import session_scope

    began = time.perf_counter()
    with session_scope(sessions) as s:
        ids = list(s.scalars(select(E.id).where(E.status == "pending").order_by(E.id)))
        t0 = datetime.now(UTC) + timedelta(seconds=start_in)
        per = 3.0 / pace
        stmt = update(E).where(E.id == bindparam("b_id")).values(due_at=bindparam("b_due"))
        rows = [{"b_id": i, "b_due": t0 + timedelta(seconds=k * per)} for k, i in enumerate(ids)]
        for k in range(0, len(rows), 5000):
            s.connection().execute(stmt, rows[k : k + 5000])
    took = time.perf_counter() - began
    margin = (t0 - datetime.now(UTC)).total_seconds()
    if start_in < 600:
        print(f"first steps due from {t0.time()} over {len(ids) * per:.1f} s "
              f"({pace:,.0f} steps/s); written in {took:.1f} s, committed {margin:.2f} s "
              f"before the first due time" + ("  ** LATE: the first steps were due before "
              "they were visible **" if margin < 0 else ""))  # fmt: skip
    return took, margin


def _workers_ready(engine: Any, workers: int, timeout: float = 60.0) -> None:
    """Wait until every worker process's executor has its connection open (its worker id as
    the connection's application_name, automation/repository.py): the workers are running."""
    deadline = time.monotonic() + timeout
    t = time.perf_counter()
    while time.monotonic() < deadline:
        with engine.connect() as c:
            running = c.scalar(text(
                "select count(*) from pg_stat_activity where datname = current_database()"
                " and application_name like 'liebian-journeys:%'"))  # fmt: skip
        # Lanes per worker: 2 by default; at least one each.
        if running is not None and running >= workers:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # the other lanes
    print(f"workers running after {time.perf_counter() - t:.1f} s")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of a live process (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def _sample_cpu(c: Any, pids: list[tuple[str, int]], seen: dict[tuple[str, int], float]) -> None:
    """Record the CPU so far of these processes and of the database's backends (PostgreSQL;
    not this connection's)."""
    if c.dialect.name == "postgresql":
        pids = pids + [("postgres", b) for b in c.scalars(text(
            "select pid from pg_stat_activity where datname = current_database()"
            " and pid <> pg_backend_pid()"))]  # fmt: skip
    for kind, pid in pids:
        got = _cpu_of(pid)
        if got is not None:
            seen[(kind, pid)] = got


def _pcts(values: list[float]) -> str:
    if not values:
        return "—"
    v = sorted(values)
    q = lambda f: v[min(len(v) - 1, int(f * len(v)))]  # noqa: E731
    over = sum(1 for x in v if x > 1.0)
    return (f"p50 {q(0.5):.3f} s  p99 {q(0.99):.3f} s  max {v[-1]:.3f} s  "
            f"over 1 s: {over} of {len(v)}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=100_000)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--kill-after", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--in-flight", type=int, default=0, help="effects started and unmarked")
    ap.add_argument("--mark-every", type=int, default=0)
    ap.add_argument("--effect-threads", type=int, default=0,
                    help="in-process executor: effect threads per lane (0: the default)")  # fmt: skip
    ap.add_argument("--lanes", type=int, default=0,
                    help="executor loops per process (0: the default, 2 on PostgreSQL)")  # fmt: skip
    ap.add_argument("--via-channel", action="store_true",
                    help="first step: a send on a webhook channel (channels.send_many)")  # fmt: skip
    ap.add_argument("--profile", default="", help="cProfile the embedded executor into this file")
    ap.add_argument("--profile-worker", default="",
                    help="py-spy record the last worker, collapsed stacks (--workers)")  # fmt: skip
    ap.add_argument("--pace", type=float, default=0.0,
                    help="first steps due spread at this many step executions/s (0: all at once)")  # fmt: skip
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-journeys-"))
    url = args.database_url or f"sqlite:///{tmp}/liebian.db"
    if args.database_url.startswith("postgresql"):
        from sqlalchemy.engine import make_url

        admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        name = make_url(url).database
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
            # Shown with the figures: this machine's server runs with autovacuum off (no
            # vacuum and no analyze of the bench's tables), a production server with it on.
            autovacuum = c.scalar(text("SHOW autovacuum"))
        admin.dispose()
        print(f"PostgreSQL autovacuum: {autovacuum}")

    ctx = mp.get_context("spawn")
    port_q, out_q, stop_ev = ctx.Queue(), ctx.Queue(), ctx.Event()
    delivered = ctx.Value("q", 0, lock=False)
    rx = ctx.Process(target=receiver_main, args=(port_q, stop_ev, out_q, delivered),
                     daemon=True)  # fmt: skip
    rx.start()
    port = port_q.get(timeout=30)
    receiver_url = f"http://127.0.0.1:{port}/hook"
    # Paced with worker processes: the first steps parked an hour ahead until the workers run.
    # Paced in this process: due from 5 s on, time for the write (100,000 rows: ~2 s on
    # SQLite) and the executor's start; the run's wall is then taken from the first due time.
    park = bool(args.workers and args.pace)
    start_in = 3600.0 if park else 5.0 if args.pace else 1.0
    _ws, _jid, parked_in, first_due = build(url, args.contacts, receiver_url, args.via_channel,
                                            args.pace, start_in)  # fmt: skip

    from liebian.automation.models import JourneyRun
    from liebian.automation.models import JourneyStepExecution as E
    from liebian.kit.db import make_engine

    # The bench's own connection is named, so a profile of the database can leave it out.
    engine = make_engine(
        url, **({"connect_args": {"application_name": "bench-monitor"}}
                if url.startswith("postgresql") else {})
    )  # fmt: skip
    total_steps = 3 * args.contacts
    started = time.perf_counter()
    if args.pace and not park:
        started = first_due  # in this process: the wall from the first due time, as below
    cpu0 = time.process_time()
    killed = None
    cpu_seen: dict[tuple[str, int], float] = {}
    if args.workers:
        env = {**os.environ, "LIEBIAN_DATABASE_URL": url, "LIEBIAN_SECRET_KEY": "22" * 32,
               "LIEBIAN_ALLOW_PRIVATE_WEBHOOKS": "true", "LIEBIAN_JOURNEYS_LEASE": "3",
               "LIEBIAN_JOURNEYS_LANES": str(args.lanes)}  # fmt: skip
        procs = []
        for i in range(args.workers):
            (tmp / f"w{i}").mkdir()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "liebian.cli", "worker", "--batch", str(args.batch)],
                env={**env, "LIEBIAN_DATA_DIR": str(tmp / f"w{i}")}))  # fmt: skip
        if park:
            _workers_ready(engine, args.workers)
            from liebian.kit.db import make_session_factory

            # Due from twice as long as the parking write took (the same rows, the same
            # way), so that the spread commits before its first step is due.
            _took, margin = spread(make_session_factory(engine), args.pace,
                                   max(1.0, 1.0 + 2 * parked_in))  # fmt: skip
            # The wall from the first due time: neither the workers' start-up nor the wait
            # for the first step is part of the paced run.
            started = time.perf_counter() + margin
        # CPU of the workers and of their PostgreSQL backends, sampled while they live (the
        # killed worker's last sample stands): the cost of a step on PostgreSQL.
        if args.profile_worker:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                                    "--format", "raw", "-o", args.profile_worker, "-r", "50",
                                    "--nonblocking", "-p", str(procs[-1].pid)])  # fmt: skip
        try:
            while True:
                time.sleep(0.2)
                with engine.connect() as c:
                    _sample_cpu(c, [("worker", p.pid) for p in procs], cpu_seen)
                    # Whether a step is left: the first pending row on the (status, due_at)
                    # index. (Counting the active runs and the done steps here, every 0.2 s,
                    # scanned the whole tables: ~0.3 s of a backend's CPU a look by the end of
                    # a 100,000-person run — most of a core beside the workers, session 11.)
                    left = c.scalar(select(E.id).where(E.status == "pending")
                                    .order_by(E.status, E.due_at).limit(1))  # fmt: skip
                # The kill: once F of the deliveries (distinct keys) reached the receiver.
                got = delivered.value
                if killed is None and args.kill_after and got >= args.kill_after * args.contacts:
                    os.kill(procs[0].pid, signal.SIGKILL)
                    killed = got
                if left is None:
                    break
        finally:
            if args.profile_worker:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    p.wait()
    else:
        from liebian.app.runtime import Runtime
        from liebian.automation.executor import Executor, ExecutorConfig
        from liebian.kit.settings import Settings

        rt = Runtime.build(Settings(data_dir=tmp / "data", database_url=url,
                                    secret_key="22" * 32, allow_private_webhooks=True))  # fmt: skip
        import liebian.models_registry  # noqa: F401

        tuning: dict[str, int] = {"lanes": args.lanes}
        if args.in_flight:
            tuning.update(in_flight=args.in_flight, effect_threads=min(args.in_flight, 8))
        if args.effect_threads:
            tuning["effect_threads"] = args.effect_threads
        if args.mark_every:
            tuning["mark_every"] = args.mark_every
        ex = Executor(rt.sessions, runtime=rt,
                      config=ExecutorConfig(allow_private=True, batch=args.batch, **tuning))  # fmt: skip
        if args.profile:
            import cProfile

            prof = cProfile.Profile(time.process_time)
            prof.enable()
            try:
                while True:
                    got = ex.run_once()
                    if got.claimed == 0:
                        with engine.connect() as c:
                            left = c.scalar(select(func.count()).select_from(JourneyRun)
                                            .where(JourneyRun.status == "active"))  # fmt: skip
                        if left == 0:
                            break
                        time.sleep(0.05)
            finally:
                ex.close()
                prof.disable()
                prof.dump_stats(args.profile)
        else:
            # The thread `liebian serve` runs (wake-up at the next due time, decision 0034).
            from liebian.automation.executor import ExecutorThread

            thread = ExecutorThread(ex, interval=0.2)
            thread.start()
            try:
                while True:
                    time.sleep(0.5)
                    with engine.connect() as c:
                        _sample_cpu(c, [], cpu_seen)
                        left = c.scalar(select(func.count()).select_from(JourneyRun)
                                        .where(JourneyRun.status == "active"))  # fmt: skip
                    if left == 0:
                        break
            finally:
                thread.stop()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    stop_ev.set()
    counts, first = out_q.get(timeout=30)
    rx.join(timeout=10)
    with engine.connect() as c:
        runs = [r for (r,) in c.execute(select(JourneyRun.id))]
        done = c.scalar(select(func.count()).select_from(E).where(E.status == "done"))
        rows = list(c.execute(select(E.run_id, E.step_id, E.due_at, E.created_at,
                                     E.finished_at)))  # fmt: skip
    expected = {f"{r}:hello" for r in runs}
    dup = sum(1 for k, v in counts.items() if v > 1)
    missing = len(expected - set(counts))
    print(f"contacts {args.contacts}  steps done {done}/{total_steps}  wall {wall:.1f} s  "
          f"→ {done / wall:,.0f} step executions/s")  # fmt: skip
    if args.workers:
        w = sum(v for (k, _), v in cpu_seen.items() if k == "worker")
        pg = sum(v for (k, _), v in cpu_seen.items() if k == "postgres")
        print(f"CPU: workers {w:.1f} s ({w / max(done, 1) * 1e6:,.0f} µs a step), their "
              f"PostgreSQL backends {pg:.1f} s ({pg / max(done, 1) * 1e6:,.0f} µs a step); "
              f"together {(w + pg) / max(done, 1) * 1e6:,.0f} µs a step")  # fmt: skip
    else:
        pg = sum(cpu_seen.values())
        if pg:
            print(f"CPU of the PostgreSQL backends {pg:.1f} s ({pg / max(done, 1) * 1e6:,.0f} µs"
                  " a step)")  # fmt: skip
        print(f"executor process CPU {cpu:.1f} s → {cpu / max(done, 1) * 1e6:,.0f} µs CPU per step"
              f" ({done / max(cpu, 1e-9):,.0f} steps per CPU-second)")  # fmt: skip
    print(f"receiver: POSTs {sum(counts.values())}  distinct keys {len(counts)}  "
          f"keys received more than once {dup}  missing {missing}"
          + (f"  (worker SIGKILLed at {killed} deliveries)" if killed is not None else ""))  # fmt: skip

    # Lateness: when the step ran − when it was due. The webhook step ran when the receiver
    # first got its POST; a database step when its mark committed (finished_at). "future":
    # steps whose due time was later than when their row was written (the paced first steps,
    # the step after the 1 s wait); the wait itself is due when written.
    def ts(d: datetime) -> float:
        return (d.replace(tzinfo=UTC) if d.tzinfo is None else d).timestamp()

    late: dict[str, list[float]] = {"hello": [], "pause": [], "done": []}
    future: list[float] = []
    # By due time, in 10 s bins from the first due step: where in the run the late ones fall
    # (the start, the SIGKILL, the survivor alone).
    first_due = min((ts(r[2]) for r in rows), default=0.0)
    by_bin: dict[int, list[float]] = {}
    for run_id, step_id, due, created, finished in rows:
        if step_id == "hello":
            got = first.get(f"{run_id}:hello")
            if got is None:
                continue
            x = got - ts(due)
        elif finished is None:
            continue
        else:
            x = ts(finished) - ts(due)
        late[step_id].append(x)
        if ts(due) > ts(created):
            future.append(x)
            by_bin.setdefault(int((ts(due) - first_due) // 10), []).append(x)
    print(f"lateness, webhook step (first POST at the receiver − due): {_pcts(late['hello'])}")
    print(f"lateness, the wait (marked − due; due when written): {_pcts(late['pause'])}")
    print(f"lateness, the step after the 1 s wait (marked − due): {_pcts(late['done'])}")
    print(f"lateness, every step due later than its row was written: {_pcts(future)}")
    if args.pace:
        print("  the same by due time (10 s bins from the first due step): over 1 s / steps, p99")
        cells = []
        for b in sorted(by_bin):
            v = sorted(by_bin[b])
            over = sum(1 for x in v if x > 1.0)
            cells.append(f"{b * 10:>4}s {over:>5}/{len(v):<5} {v[int(0.99 * (len(v) - 1))]:5.2f}")
        for k in range(0, len(cells), 4):
            print("   " + " | ".join(cells[k : k + 4]))
    print(f"load (1/5/15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
