"""End-to-end event ingestion through the HTTP API on one `liebian serve` process.

Two workloads on the same server in the same run: page views only, and the realistic mix
(1,000,000 events from 40,000 people: 2% signups, 1% purchases with revenue, the rest clicks,
visits and page views; each person's signup before their purchases). For the mix it also
prints how long the conversions' side effects (the event hooks worker: campaigns, rewards)
trailed the 202 — p50/p99 of ``applied_at - received_at`` from ``event_hook_applied`` — and
the worker thread's CPU per conversion.

Prints, per run: batch ingestion as two rates over the same clock, from the first request
until (a) the last batch is acknowledged (spooled, durable) and (b) every acknowledged event is
in the DuckDB store (polled through the counts API); single-event requests (req/s and latency
percentiles from wrk, 50 connections) for a plain event and for a conversion event that the
campaigns hook applies to the OLTP database; the server's peak RSS. Batch runs also print the
server's CPU per event by thread role (request threads, event loop, spool flusher) and this
client's own, steadier than the rates on a shared machine.

    python bench/bench_ingest_api.py [--seconds 10] [--runs 3] [--batches-only] [--mix-runs 3]
        [--reference /tmp/ref]   # a `git archive <rev>` tree taking turns in the page-view runs
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (granian answers from a worker)."""
    total = 0.0
    for one in server_pids(pid):
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            continue
    return total


def server_pids(pid: int) -> list[int]:
    """The server and its descendants: granian's worker, and the worker's ingest pool
    processes (spawned from one of its threads, so every thread's children are read)."""
    found, pending = [], [pid]
    while pending:
        one = pending.pop(0)
        found.append(one)
        for task in Path(f"/proc/{one}/task").glob("*"):
            try:
                pending.extend(int(p) for p in (task / "children").read_text().split())
            except FileNotFoundError:
                continue
    return found


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the server's threads, summed by role: Python threads
    carry no OS name, so the event loop is the process's first thread and the spool flusher
    names itself (or is the one in SCHED_IDLE); the rest go by their OS name (granian's tokio threads, asyncio_N
    worker threads show as "python")."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    pids = server_pids(pid)
    for one in pids:
        # The launcher, granian's worker (its child), the worker's ingest pool processes.
        process = "launcher" if one == pid else "worker" if one == pids[1] else "pool"
        for task in Path(f"/proc/{one}/task").glob("*"):
            try:
                stat = (task / "stat").read_text()
            except FileNotFoundError:
                continue  # the thread ended meanwhile
            # The name is in parentheses and may hold spaces; the fields after it are fixed.
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(task.name) == one:
                role = "main thread"
            elif int(fields[38]) == os.SCHED_IDLE or "flusher" in stat:
                role = "flusher"
            else:
                role = re.sub(r"[_-]?\d+$", "", stat[stat.index("(") + 1 : stat.rindex(")")])
            name = f"{process} {role}"
            totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return totals


def hooks_schedstat(pid: int) -> tuple[float, float]:
    """Seconds the hooks worker thread ran on a core and waited runnable for one (the kernel's
    schedstat): the second says whether its lag is CPU starvation rather than its own work."""
    for one in server_pids(pid):
        for task in Path(f"/proc/{one}/task").glob("*"):
            try:
                if "liebian-hooks" not in (task / "comm").read_text():
                    continue
                ran, waited, _ = (task / "schedstat").read_text().split()
            except (FileNotFoundError, ValueError):
                continue
            return int(ran) / 1e9, int(waited) / 1e9
    return 0.0, 0.0


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_server(
    data_dir: str, port: int, source: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``source``: a liebian tree (``git archive <rev>``) whose ``src`` the server runs instead."""
    env = {**os.environ, "LIEBIAN_DATA_DIR": data_dir, "LIEBIAN_FLUSH_INTERVAL": "0.5"}
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    proc = subprocess.Popen(
        [sys.executable, "-m", "liebian.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    key = ""
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode().strip()
        if line.startswith("lb_"):
            key = line
            break
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc, key
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


MIX_EVENTS = ["page_view", "visit", "click", "signup", "purchase"]


def stored_count(base: str, key: str, events: list[str] | None = None) -> int:
    resp = httpx.post(
        f"{base}/api/v1/analytics/counts",
        json={
            "events": events or ["page_view"],
            "from": "2024-01-01T00:00:00Z",
            "to": "2032-01-01T00:00:00Z",
            "interval": "month",
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    if resp.status_code == 422 and "unknown" in resp.text:
        return 0  # nothing of that name is stored yet
    resp.raise_for_status()
    return sum(int(row["count"]) for row in resp.json()["rows"])


def spool_empty(directory: Path) -> bool:
    """No segment left in a spool directory (open or sealed): everything written to it was
    loaded (the flusher deletes a segment only after the store committed it). Read from the
    file system, at no cost to the server: polling the counts API four times a second was a
    count over millions of stored events each time, on the server's CPU."""
    with os.scandir(directory) as entries:
        # An empty segment holds nothing (older trees opened one before the first write).
        return not any(e.name.startswith("seg-") and e.stat().st_size for e in entries)


def wait_until(done_on_disk: Path, confirm: Callable[[], bool], start: float) -> float:
    """Seconds from ``start`` until the spool at ``done_on_disk`` is empty and ``confirm()``
    (one query to the server) agrees; polled every 50 ms on disk, confirmed on emptiness."""
    while True:
        if spool_empty(done_on_disk):
            at = time.perf_counter() - start
            if confirm():
                return at
            time.sleep(0.25)
        time.sleep(0.05)


def batch_bench(
    base: str, key: str, seconds: float, run: int, spool: Path, threads: int = 2
) -> tuple[int, float, float]:
    """Events sent, seconds until the last was acknowledged, seconds until all were stored.

    Each thread sends at most 30 batches (300,000 events)."""
    before = stored_count(base, key)
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    sent = [0] * threads
    batches_per_thread = 30

    # Bodies are built before the clock starts so the figure is the server's, not the client's.
    bodies = [
        [
            orjson.dumps(
                [
                    {
                        "event": "page_view",
                        "event_id": f"b{run}-{n}-{i}-{j}",
                        "visitor_id": f"v{j % 5000}",
                        "channel": "wx",
                        "properties": {"path": "/landing", "n": j},
                    }
                    for j in range(10_000)
                ]
            )
            for i in range(batches_per_thread)
        ]
        for n in range(threads)
    ]

    def worker(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            for body in bodies[n]:
                if time.perf_counter() >= deadline:
                    return
                resp = http.post("/api/v1/events", content=body, headers=headers)
                assert resp.status_code == 202, resp.text
                sent[n] += resp.json()["accepted"]

    start = time.perf_counter()
    deadline = start + seconds
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    acked = time.perf_counter() - start
    total = sum(sent)
    stored = wait_until(spool, lambda: stored_count(base, key) >= before + total, start)
    return total, acked, stored


def mix_bodies(run: int, total: int = 1_000_000, people: int = 40_000) -> tuple[list[bytes], int]:
    """The realistic stream as 10,000-event batch bodies, and how many conversions it holds.

    Exactly 2% signups (each by a different person, with their visitor id: an alias) and 1%
    purchases by people who signed up earlier in the stream; clicks, visits and page views by
    anyone, with the user id once the person signed up, else the visitor id."""
    rng = random.Random(run)
    signups, purchases = total * 2 // 100, total // 100
    rest = total - signups - purchases
    kinds = (["signup"] * signups + ["purchase"] * purchases + ["click"] * (rest // 5)
             + ["visit"] * (rest * 3 // 10))  # fmt: skip
    kinds += ["page_view"] * (total - len(kinds))
    rng.shuffle(kinds)
    joined: list[int] = []
    next_signup = 0
    events: list[dict[str, object]] = []
    for i, kind in enumerate(kinds):
        if kind == "purchase" and not joined:  # nobody signed up yet: swap with the next signup
            kinds[kinds.index("signup", i)] = "purchase"
            kind = kinds[i] = "signup"
        event: dict[str, object] = {"event": kind, "event_id": f"m{run}-{i}"}
        if kind == "signup":
            person = next_signup * (people // signups)
            next_signup += 1
            joined.append(person)
            event.update(user_id=f"u{person}", visitor_id=f"v{person}")
        elif kind == "purchase":
            person = rng.choice(joined)
            event.update(user_id=f"u{person}", revenue=rng.randrange(990, 29_900),
                         properties={"order_id": f"o{run}-{i}", "product_id": "p1"})  # fmt: skip
        else:
            person = rng.randrange(people)
            if person % (people // signups) == 0 and person // (people // signups) < next_signup:
                event["user_id"] = f"u{person}"
            else:
                event["visitor_id"] = f"v{person}"
            if kind == "click":
                event["channel"] = "wx_group"
            else:
                event["properties"] = {"path": "/course/1"}
        events.append(event)
    bodies = [orjson.dumps(events[i : i + 10_000]) for i in range(0, total, 10_000)]
    return bodies, sum(1 for e in events if e["event"] in ("signup", "purchase"))


def applied_lags(db: Path, run: int) -> tuple[int, list[float]]:
    """Conversions of this run applied so far, and their lags (s) from receipt to applied."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute(
            "SELECT (julianday(applied_at) - julianday(received_at)) * 86400.0"
            " FROM event_hook_applied WHERE event_id LIKE ?",
            (f"m{run}-%",),
        ).fetchall()
    return len(rows), sorted(float(r[0]) for r in rows)


def mix_bench(
    base: str, key: str, db: Path, run: int, bodies: list[bytes], conversions: int,
    spool: Path, threads: int = 2,
) -> dict[str, float]:  # fmt: skip
    """Send every body (threads take turns), then wait until all events are stored and all
    conversions applied. Rates over the same clock as ``batch_bench``."""
    before = stored_count(base, key, MIX_EVENTS)
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    sent = [0] * threads

    def worker(n: int) -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            for body in bodies[n::threads]:
                resp = http.post("/api/v1/events", content=body, headers=headers)
                assert resp.status_code == 202, resp.text
                sent[n] += resp.json()["accepted"]

    start = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    acked = time.perf_counter() - start
    total = sum(sent)
    stored = applied = 0.0
    while not (stored and applied):
        if not stored and spool_empty(spool):
            at = time.perf_counter() - start
            if stored_count(base, key, MIX_EVENTS) >= before + total:
                stored = at
        if not applied and spool_empty(spool / "hooks"):
            at = time.perf_counter() - start
            if applied_lags(db, run)[0] >= conversions:
                applied = at
        time.sleep(0.05)
    count, lags = applied_lags(db, run)
    return {
        "events": total, "acked": acked, "stored": stored, "applied": applied,
        "conversions": count, "lag_p50": lags[len(lags) // 2],
        "lag_p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))], "lag_max": lags[-1],
    }  # fmt: skip


# Lua format strings for the body: %d is a per-request counter, %s a random id prefix.
PLAIN = '{"event":"page_view","event_id":"p%s-%d","visitor_id":"v%d"}'
CONVERSION = '{"event":"signup","event_id":"s%s-%d","user_id":"u%d"}'


def single_bench(port: int, key: str, seconds: int, body: str = PLAIN) -> dict[str, str]:
    lua_format = body.replace('"', '\\"')
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f'wrk.headers["Authorization"] = "Bearer {key}"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            "counter = 0\n"
            "prefix = tostring(math.random(1, 2^30))\n"
            "request = function()\n"
            "  counter = counter + 1\n"
            f'  local body = string.format("{lua_format}", prefix, counter, counter % 5000)\n'
            '  return wrk.format(nil, "/api/v1/events", nil, body)\n'
            "end\n"
        )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c50",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    figures = {"req/s": re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)}  # type: ignore[union-attr]
    for pct in ("50%", "99%"):
        figures[f"p{pct[:-1]}"] = re.search(rf"\s{pct}\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non-2xx"] = non2xx.group(1) if non2xx else "0"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches-only", action="store_true", help="skip the wrk runs")
    parser.add_argument("--mix-runs", type=int, default=3, help="realistic-mix runs (0: none)")
    parser.add_argument(
        "--reference",
        type=Path,
        help="a liebian tree (git archive <rev>) whose server takes turns with this one in the"
        " page-view runs: the machine's speed today, beside a figure recorded on another day",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as ref_dir:
        port = free_port()
        proc, key = start_server(data_dir, port)
        ref = None
        if args.reference is not None:
            ref_port = free_port()
            ref_proc, ref_key = start_server(ref_dir, ref_port, args.reference)
            ref = (ref_proc, ref_key, f"http://127.0.0.1:{ref_port}", Path(ref_dir) / "spool")
        base = f"http://127.0.0.1:{port}"
        spool = Path(data_dir) / "spool"
        peak = 0.0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_mb(proc.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            acked_rates, stored_rates, cpu_per_event = [], [], []
            ref_stored: list[float] = []
            ref_cpu: list[float] = []
            for run in range(args.runs):
                if ref is not None:  # the reference first in each pair, same bodies
                    ref_proc, ref_key, ref_base, ref_spool = ref
                    before = thread_cpu(ref_proc.pid)
                    sent, acked, stored = batch_bench(
                        ref_base, ref_key, args.seconds, run, ref_spool
                    )
                    after = thread_cpu(ref_proc.pid)
                    us = sum(after[n] - before.get(n, 0.0) for n in after) / sent * 1e6
                    ref_stored.append(sent / stored)
                    ref_cpu.append(us)
                    print(f"   reference run {run + 1} ({args.reference}): {sent:,} events; acknowledged "
                          f"{sent / acked:,.0f}/s, stored {sent / stored:,.0f}/s; server CPU {us:.2f} us/event")  # fmt: skip
                cpu_before, client_before = thread_cpu(proc.pid), process_cpu()
                sent, acked, stored = batch_bench(base, key, args.seconds, run, spool)
                cpu_after, client_cpu = thread_cpu(proc.pid), process_cpu() - client_before
                acked_rates.append(sent / acked)
                stored_rates.append(sent / stored)
                # Server CPU per stored event, by thread (includes the store polls).
                spent = {
                    name: (cpu_after[name] - cpu_before.get(name, 0.0)) / sent * 1e6
                    for name in cpu_after
                }
                cpu_per_event.append(sum(spent.values()))
                top = sorted(spent.items(), key=lambda kv: -kv[1])[:5]
                print(f"   batch run {run + 1}: {sent:,} events; acknowledged in {acked:.2f} s "
                      f"({sent / acked:,.0f}/s), all stored after {stored:.2f} s ({sent / stored:,.0f}/s); "
                      f"server CPU {sum(spent.values()):.2f} us/event ("
                      + ", ".join(f"{name} {us:.2f}" for name, us in top)
                      + f"); this client {client_cpu / sent * 1e6:.2f} us/event")  # fmt: skip
            print(f"batch ingestion, 10,000-event batches, 2 client threads (median of {args.runs}): "
                  f"acknowledged {statistics.median(acked_rates):,.0f} events/s; "
                  f"stored end to end {statistics.median(stored_rates):,.0f} events/s; "
                  f"server CPU {statistics.median(cpu_per_event):.2f} us/event")  # fmt: skip
            if ref is not None:
                print(f"reference tree page views (median of {args.runs}, taking turns with this tree): "
                      f"stored {statistics.median(ref_stored):,.0f} events/s, server CPU "
                      f"{statistics.median(ref_cpu):.2f} us/event; this tree / reference: stored "
                      f"{statistics.median(stored_rates) / statistics.median(ref_stored):.2f}x, CPU per event "
                      f"{statistics.median(cpu_per_event) / statistics.median(ref_cpu):.2f}x")  # fmt: skip
            # The realistic mix, same server, same run.
            mix = []
            db = Path(data_dir) / "liebian.db"
            for run in range(args.mix_runs):
                bodies, conversions = mix_bodies(run)
                cpu_before, sched_before = thread_cpu(proc.pid), hooks_schedstat(proc.pid)
                figures = mix_bench(base, key, db, run, bodies, conversions, spool)
                cpu_after, sched_after = thread_cpu(proc.pid), hooks_schedstat(proc.pid)
                figures["hooks_ran"] = sched_after[0] - sched_before[0]
                figures["hooks_waited"] = sched_after[1] - sched_before[1]
                hooks_cpu = sum(
                    cpu_after[n] - cpu_before.get(n, 0.0) for n in cpu_after if "hooks" in n
                )
                all_cpu = sum(cpu_after[n] - cpu_before.get(n, 0.0) for n in cpu_after)
                figures["us_per_conversion"] = hooks_cpu / figures["conversions"] * 1e6
                figures["us_per_event"] = all_cpu / figures["events"] * 1e6
                flusher_cpu = sum(
                    cpu_after[n] - cpu_before.get(n, 0.0) for n in cpu_after if "flusher" in n
                )
                figures["flusher_us"] = flusher_cpu / figures["events"] * 1e6
                mix.append(figures)
                print(f"   mix run {run + 1}: {figures['events']:,.0f} events ({figures['conversions']:,.0f} signups + purchases); "
                      f"acknowledged in {figures['acked']:.2f} s ({figures['events'] / figures['acked']:,.0f}/s), "
                      f"all stored after {figures['stored']:.2f} s ({figures['events'] / figures['stored']:,.0f}/s), "
                      f"all conversions applied after {figures['applied']:.2f} s; apply lag p50 {figures['lag_p50'] * 1000:.0f} ms "
                      f"p99 {figures['lag_p99'] * 1000:.0f} ms max {figures['lag_max'] * 1000:.0f} ms; hooks worker CPU "
                      f"{figures['us_per_conversion']:.1f} us/conversion (the thread ran {figures['hooks_ran']:.1f} s and waited "
                      f"{figures['hooks_waited']:.1f} s runnable for a core); server CPU {figures['us_per_event']:.2f} us/event "
                      f"= {figures['us_per_event']:.1f} ms per 1,000 events, of which the spool flusher "
                      f"{figures['flusher_us']:.2f} us/event")  # fmt: skip
            if mix:
                med = statistics.median
                print(f"realistic mix, 1,000,000 events in 10,000-event batches, 2 client threads (median of {len(mix)}): "
                      f"acknowledged {med(f['events'] / f['acked'] for f in mix):,.0f} events/s; "
                      f"stored end to end {med(f['events'] / f['stored'] for f in mix):,.0f} events/s; "
                      f"conversion apply lag p50 {med(f['lag_p50'] for f in mix) * 1000:.0f} ms, "
                      f"p99 {med(f['lag_p99'] for f in mix) * 1000:.0f} ms; "
                      f"hooks worker {med(f['us_per_conversion'] for f in mix):.1f} us CPU/conversion; "
                      f"server CPU {med(f['us_per_event'] for f in mix):.2f} us/event "
                      f"(spool flusher {med(f['flusher_us'] for f in mix):.2f})")  # fmt: skip
            print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            singles_to_run = [] if args.batches_only else [("plain (page_view)", PLAIN), ("conversion (signup)", CONVERSION)]  # fmt: skip
            for label, body in singles_to_run:
                singles = [
                    single_bench(port, key, int(args.seconds), body) for _ in range(args.runs)
                ]
                med = statistics.median(float(s["req/s"]) for s in singles)
                print(f"single-event requests, {label}: median {med:,.0f} req/s over {args.runs} runs; "
                      + "; ".join(f"{s['req/s']} req/s p50 {s['p50']} p99 {s['p99']} non-2xx {s['non-2xx']}" for s in singles))  # fmt: skip
            print(f"server peak RSS during the runs (main + worker): {peak:.0f} MB")
        finally:
            stop.set()
            for server in [proc] + ([ref[0]] if ref is not None else []):
                server.terminate()
                server.wait(timeout=30)


if __name__ == "__main__":
    main()
