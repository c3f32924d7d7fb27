"""Redirect throughput and latency: nginx ceiling, bare ASGI under granian, liebian.

    /work/venv/bin/python bench/bench_redirect.py [--runs 3] [--duration 10] [--links 1000]
        [--rss-links 1000000] [--rss-sample 50000]

For each server: start it on a free loopback port, warm it, run
``wrk -t1 -c50 -d<duration>s --latency`` with a Lua script that walks the slugs of the links
created (so liebian does real lookups and records a click per request), and keep the median of
``--runs`` runs. After each liebian run the bench waits until liebian has loaded the clicks it
spooled into DuckDB (and prints how long that took), so that background work is not charged to
the next server's run. Then the memory figure: ``--rss-links`` links written straight into SQLite,
a fresh liebian process, ``--rss-sample`` distinct slugs requested so they sit in the cache,
and the resident size of the serving (granian worker) process.

Everything runs as the current user in a temporary directory; no network beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from liebian.cli import SERVE_LOOP  # the bare app runs on the same event loop as liebian

VENV_BIN = Path(sys.executable).parent
UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2c) NetType/WIFI Language/zh_CN"
)
SECRET = "33" * 32

WRK_SCRIPT = """
local slugs = {}
for line in io.lines(os.getenv("BENCH_SLUGS")) do slugs[#slugs + 1] = line end
local i = 0
local headers = { ["User-Agent"] = os.getenv("BENCH_UA") }
request = function()
  i = i + 1
  if i > #slugs then i = 1 end
  return wrk.format("GET", "/" .. slugs[i], headers)
end
"""

BARE_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 302,
                "headers": [(b"location", b"https://example.com/"), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
"""

NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 302 https://example.com/; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str = "/healthz", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


@contextmanager
def process(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server and its workers die together
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(c) for c in text)
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (all their threads), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / tick


def wait_drained(data_dir: Path, pids: list[int], timeout: float = 120) -> float:
    """Wait until liebian has loaded the clicks it spooled during a run into DuckDB (no sealed
    segment left, the server's CPU quiet for half a second). Returns the seconds it took.

    The flusher runs in SCHED_IDLE, so under wrk's saturation most loading waits until the run
    ends; without this wait it would run during the next server's measurement.
    """
    t0 = time.monotonic()
    spool = data_dir / "spool"
    while time.monotonic() - t0 < timeout:
        before = cpu_seconds(pids)
        time.sleep(0.5)
        busy = cpu_seconds(pids) - before
        if busy < 0.02 and not any(spool.glob("seg-*.ndjson")):
            break
    return time.monotonic() - t0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(port: int, slugs_file: Path, script: Path, duration: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c50",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        env={**os.environ, "BENCH_SLUGS": str(slugs_file), "BENCH_UA": UA},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if errors or socket_errors:
        print(
            "   wrk:",
            errors.group(0) if errors else "",
            socket_errors.group(0) if socket_errors else "",
        )
    return {"rps": rps, "p50": p50, "p99": p99, "requests": requests}


def clicks_stored(port: int, key: str) -> int:
    """Clicks in the event store (bots included), through the analytics API."""
    now = time.time()
    body = {
        "from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 86400)),
        "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 86400)),
        "events": ["click"],
        "interval": "month",
        "include_bots": True,
    }
    resp = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/analytics/counts",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    resp.raise_for_status()
    return sum(int(row["count"]) for row in resp.json()["rows"])


def wait_clicks_loaded(port: int, key: str, expected: int, timeout: float = 120) -> float:
    """Seconds from now until the store holds ``expected`` clicks (polled every 0.5 s), or
    raises after ``timeout``. Called as the wrk run ends: the time every answered click took
    to be loaded."""
    t0 = time.monotonic()
    while True:
        stored = clicks_stored(port, key)
        if stored >= expected:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"only {stored:,} of {expected:,} clicks loaded after {timeout} s")
        time.sleep(0.5)


# -- liebian ------------------------------------------------------------------------------


# wrk sends every request from one address: the per-IP limit would answer most of them 429.
# By default the limiter runs on every request with a budget it never exhausts (its cost is
# measured); --no-limits turns it off (0) for the reference.
RATE_LIMIT = "1000000000"


def liebian_env(data_dir: Path, port: int, src: str | None = None) -> dict[str, str]:
    return {
        **({"PYTHONPATH": src} if src else {}),
        "LIEBIAN_DATA_DIR": str(data_dir),
        "LIEBIAN_SECRET_KEY": SECRET,
        "LIEBIAN_BASE_URL": f"http://127.0.0.1:{port}",
        "LIEBIAN_RATE_LIMIT_PER_IP": RATE_LIMIT,
        "LIEBIAN_RATE_LIMIT_PER_VISITOR": RATE_LIMIT,
    }


def liebian_init(data_dir: Path, src: str | None = None) -> str:
    out = subprocess.run(
        [str(VENV_BIN / "liebian"), "init", "--data-dir", str(data_dir)],
        env={**os.environ, "LIEBIAN_SECRET_KEY": SECRET, **({"PYTHONPATH": src} if src else {})},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


def liebian_cmd(port: int, data_dir: Path) -> list[str]:
    return [
        str(VENV_BIN / "liebian"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]


def create_links_via_api(port: int, key: str, count: int) -> list[str]:
    slugs: list[str] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        for start in range(0, count, 10_000):
            batch = [
                {
                    "url": f"https://example.com/landing/{i}?from=bench",
                    "slug": f"b{i}",
                    "channel": "wx_group_01",
                    "utm": {"source": "wechat", "medium": "group"},
                }
                for i in range(start, min(count, start + 10_000))
            ]
            resp = http.post(
                "/api/v1/links/bulk",
                json={"links": batch},
                headers={"Authorization": f"Bearer {key}"},
            )
            resp.raise_for_status()
            slugs.extend(row["slug"] for row in batch)
    return slugs


def insert_links_sql(db: Path, count: int) -> None:
    """Links straight into SQLite: 1,000,000 through the API would measure the API, not memory."""
    con = sqlite3.connect(db)
    ws = con.execute("SELECT id FROM workspaces LIMIT 1").fetchone()[0]
    now = "2024-01-01 00:00:00.000000"
    utm = json.dumps({"source": "wechat", "medium": "group"})
    con.execute("BEGIN")
    step = 50_000
    for start in range(0, count, step):
        ids = range(start, min(count, start + step))
        con.executemany(
            "INSERT INTO links (id, workspace_id, slug, url, title, channel, utm, browser_guide,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, '', 'wx_group_01', ?, 0, ?, ?)",
            (
                (
                    f"lnk_m{i:024d}",
                    ws,
                    f"m{i}",
                    f"https://example.com/landing/{i}?from=bench",
                    utm,
                    now,
                    now,
                )
                for i in ids
            ),
        )
        con.executemany(
            "INSERT INTO slugs (slug, kind, target_id, workspace_id) VALUES (?, 'link', ?, ?)",
            ((f"m{i}", f"lnk_m{i:024d}", ws) for i in ids),
        )
    con.execute("COMMIT")
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--rss-links", type=int, default=1_000_000)
    parser.add_argument("--rss-sample", type=int, default=50_000)
    parser.add_argument("--skip", default="", help="comma list of nginx,bare,liebian,rss")
    parser.add_argument(
        "--no-limits", action="store_true", help="rate limits off (the limiter's reference)"
    )
    parser.add_argument(
        "--check-clicks",
        action="store_true",
        help="after each liebian run, time until every click wrk was answered for is loaded",
    )
    parser.add_argument(
        "--reference",
        metavar="SRC",
        help="a second liebian served from another source tree (its src/ directory, e.g. from "
        "git archive), with its own data directory; its runs interleave with this tree's",
    )
    args = parser.parse_args()
    print(f"load before: {Path('/proc/loadavg').read_text().strip()}")
    global RATE_LIMIT
    RATE_LIMIT = "0" if args.no_limits else RATE_LIMIT
    print(f"rate limits: {'off' if args.no_limits else 'on (never exhausted)'}")
    skip = set(filter(None, args.skip.split(",")))

    tmp = Path(tempfile.mkdtemp(prefix="liebian-bench-"))
    script = tmp / "walk.lua"
    script.write_text(WRK_SCRIPT)
    results: dict[str, dict[str, float]] = {}
    print(f"machine: {os.cpu_count()} cpus; wrk -t1 -c50 -d{args.duration}s, median of {args.runs}")

    # All three servers run side by side and the runs are interleaved (liebian, bare, nginx,
    # liebian, …): on a shared machine the background load then hits each server alike.
    data_dir = tmp / "data"
    key = liebian_init(data_dir)
    slugs_file = tmp / "slugs.txt"
    (tmp / "bare_app.py").write_text(textwrap.dedent(BARE_APP))
    ports = {name: free_port() for name in ("liebian", "reference", "bare", "nginx")}
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=ports["nginx"], workers="auto"))
    bare_cmd = [
        str(VENV_BIN / "granian"), "--interface", "asgi", "--workers", "1", "--host",
        "127.0.0.1", "--port", str(ports["bare"]), "--no-log", "--loop", SERVE_LOOP,
        "bare_app:app",
    ]  # fmt: skip
    labels = {
        "liebian": "liebian redirect (click capture on, granian, 1 worker)",
        "reference": f"liebian from {args.reference} (same settings)",
        "bare": "bare ASGI 302 (granian, 1 worker)",
        "nginx": "nginx return 302 (worker_processes auto)",
    }
    # Each liebian (this tree's, and the --reference tree's when given): its data directory,
    # API key and source path. Both get the same links, so wrk walks the same slugs.
    servers: dict[str, tuple[Path, str, str | None]] = {"liebian": (data_dir, key, None)}
    if args.reference:
        ref_src = str(Path(args.reference).resolve())
        ref_dir = tmp / "data-reference"
        servers["reference"] = (ref_dir, liebian_init(ref_dir, ref_src), ref_src)
    with contextlib.ExitStack() as stack:
        pids: dict[str, list[int]] = {}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        slugs: list[str] = []
        for name, (ddir, api_key, src) in servers.items():
            procs[name] = stack.enter_context(
                process(liebian_cmd(ports[name], ddir), liebian_env(ddir, ports[name], src))
            )
            wait_http(ports[name])
            t0 = time.perf_counter()
            slugs = create_links_via_api(ports[name], api_key, args.links)
            print(
                f"{name}: created {len(slugs):,} links through the bulk API in "
                f"{time.perf_counter() - t0:.1f} s"
            )
        slugs_file.write_text("\n".join(slugs) + "\n")
        names = [n for n in ("liebian", "reference", "bare", "nginx") if n not in skip]
        names = [n for n in names if n != "reference" or args.reference]
        if "bare" in names:
            stack.enter_context(process(bare_cmd, {"PYTHONPATH": str(tmp)}))
            wait_http(ports["bare"], "/")
        if "nginx" in names:
            stack.enter_context(process(["nginx", "-c", str(conf), "-p", str(tmp)]))
            wait_http(ports["nginx"], "/")
        for name in names:  # warm-up: first-use paths, caches
            wrk(ports[name], slugs_file, script, 2)
        for name, proc in procs.items():
            pids[name] = [proc.pid, *children(proc.pid)]
            wait_drained(servers[name][0], pids[name])
        runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for i in range(args.runs):
            for name in names:
                before = 0
                lb_server = servers.get(name)
                if lb_server and args.check_clicks:
                    before = clicks_stored(ports[name], lb_server[1])
                cpu0 = cpu_seconds(pids[name]) if lb_server else 0.0
                r = wrk(ports[name], slugs_file, script, args.duration)
                runs[name].append(r)
                drained = ""
                if lb_server:
                    cpu = (cpu_seconds(pids[name]) - cpu0) / r["requests"] * 1e6
                    drained = f"  server CPU {cpu:.0f} us/redirect during the run"
                    if args.check_clicks:
                        took = wait_clicks_loaded(
                            ports[name], lb_server[1], before + int(r["requests"])
                        )
                        loaded = clicks_stored(ports[name], lb_server[1]) - before
                        drained += (
                            f"; {loaded:,} clicks loaded for {r['requests']:,} answered, "
                            f"all {took:.1f} s after the run"
                        )
                    spooled = wait_drained(lb_server[0], pids[name])
                    drained += f" (spool loaded {spooled:.1f} s after)"
                print(
                    f"   run {i + 1} {name:9s}: {r['rps']:,.0f} req/s  p50 {r['p50']:.2f} ms"
                    f"  p99 {r['p99']:.2f} ms{drained}  load {Path('/proc/loadavg').read_text().split()[0]}",
                    flush=True,
                )
        for name in names:
            results[name] = {
                k: statistics.median(r[k] for r in runs[name]) for k in ("rps", "p50", "p99")
            }
        for name in procs:
            if name in names:
                worker = children(procs[name].pid)
                rss = max((rss_mb(p) for p in worker), default=rss_mb(procs[name].pid))
                results[name]["rss"] = rss
    for name in names:
        print(f"{labels[name]}: median {results[name]['rps']:,.0f} req/s")

    if "rss" not in skip:
        t0 = time.perf_counter()
        insert_links_sql(data_dir / "liebian.db", args.rss_links)
        print(f"inserted {args.rss_links:,} links with SQL in {time.perf_counter() - t0:.1f} s")
        sample = tmp / "sample.txt"
        step = max(1, args.rss_links // args.rss_sample)
        sample.write_text("\n".join(f"m{i}" for i in range(0, args.rss_links, step)) + "\n")
        port = free_port()
        with process(liebian_cmd(port, data_dir), liebian_env(data_dir, port)) as proc:
            wait_http(port)
            worker = children(proc.pid)
            idle = max(rss_mb(p) for p in worker)
            # One pass over the sample loads every sampled slug into the cache (misses go to
            # SQLite), then a timed run measures serving with the cache warm.
            lines = sample.read_text().split()
            t0 = time.perf_counter()
            warm(port, lines)
            warm_s = time.perf_counter() - t0
            warm_run = wrk(port, sample, script, args.duration)
            serving = max(rss_mb(p) for p in worker)
            results["rss"] = {
                "links": args.rss_links,
                "sample": len(lines),
                "idle_mb": idle,
                "serving_mb": serving,
                "warm_s": warm_s,
                **{f"sample_{k}": v for k, v in warm_run.items()},
            }
            print(
                f"RSS with {args.rss_links:,} links: idle {idle:.0f} MB, serving after "
                f"{len(lines):,} distinct slugs cached {serving:.0f} MB "
                f"(warm-up {warm_s:.1f} s; then {warm_run['rps']:,.0f} req/s p99 {warm_run['p99']:.2f} ms)"
            )

    print("\nsummary (medians):")
    for name in ("nginx", "bare", "reference", "liebian"):
        if name in results:
            r = results[name]
            print(
                f"  {name:8s} {r['rps']:>9,.0f} req/s   p50 {r['p50']:.2f} ms   p99 {r['p99']:.2f} ms"
            )
    if "bare" in results and "liebian" in results:
        print(f"  liebian / bare = {results['liebian']['rps'] / results['bare']['rps']:.2f}")
    print(json.dumps(results))
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")


def warm(port: int, slugs: list[str]) -> None:
    """Request every slug once, 50 at a time (the cold path: cache miss, SQLite, compile)."""
    import asyncio

    async def run() -> None:
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
        ) as http:
            queue = iter(slugs)

            async def worker() -> None:
                for slug in queue:
                    resp = await http.get("/" + slug, headers={"user-agent": UA})
                    if resp.status_code != 302:
                        raise RuntimeError(f"/{slug} answered {resp.status_code}")

            await asyncio.gather(*(worker() for _ in range(50)))

    asyncio.run(run())


if __name__ == "__main__":
    main()
