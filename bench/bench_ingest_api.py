"""End-to-end event ingestion through the HTTP API on one `liebian serve` process.

Prints, per run: batch ingestion as two rates over the same clock, from the first request
until (a) the last batch is acknowledged (spooled, durable) and (b) every acknowledged event is
in the DuckDB store (polled through the counts API); single-event requests (req/s and latency
percentiles from wrk, 50 connections) for a plain event and for a conversion event that the
campaigns hook applies to the OLTP database; the server's peak RSS. Batch runs also print the
server's CPU per event by thread role (request threads, event loop, spool flusher) and this
client's own, steadier than the rates on a shared machine.

    python bench/bench_ingest_api.py [--seconds 10] [--runs 3] [--batches-only]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
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
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid] + ([int(p) for p in children.read_text().split()] if children.exists() else [])


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the server's threads, summed by role: Python threads
    carry no OS name, so the event loop is the process's first thread and the spool flusher
    names itself (or is the one in SCHED_IDLE); the rest go by their OS name (granian's tokio threads, asyncio_N
    worker threads show as "python")."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for one in server_pids(pid):
        process = "launcher" if one == pid else "worker"
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


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_server(data_dir: str, port: int) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "LIEBIAN_DATA_DIR": data_dir, "LIEBIAN_FLUSH_INTERVAL": "0.5"}
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


def stored_count(base: str, key: str) -> int:
    resp = httpx.post(
        f"{base}/api/v1/analytics/counts",
        json={
            "events": ["page_view"],
            "from": "2020-01-01T00:00:00Z",
            "to": "2040-01-01T00:00:00Z",
            "interval": "month",
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    if resp.status_code == 422 and "unknown" in resp.text:
        return 0  # nothing of that name is stored yet
    resp.raise_for_status()
    return sum(int(row["count"]) for row in resp.json()["rows"])


def batch_bench(
    base: str, key: str, seconds: float, run: int, threads: int = 2
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
    # Polled twice a second: each poll is a count over the store, work the server also does.
    while stored_count(base, key) < before + total:
        time.sleep(0.5)
    return total, acked, time.perf_counter() - start


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        proc, key = start_server(data_dir, port)
        base = f"http://127.0.0.1:{port}"
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
            for run in range(args.runs):
                cpu_before, client_before = thread_cpu(proc.pid), process_cpu()
                sent, acked, stored = batch_bench(base, key, args.seconds, run)
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
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
