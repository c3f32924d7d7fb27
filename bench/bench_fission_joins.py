"""Concurrent group-buy joins and assist helps against a real ``liebian serve`` (SQLite, the
embedded default), with the invariants checked afterwards.

    /work/venv/bin/python bench/bench_fission_joins.py [--requests 6000] [--concurrency 16]
        [--runs 3] [--client wrk|httpx]

Half the requests join group-buy groups of 5 (about 8 people racing for the 4 free seats of
each), half help bargain activities (5 helpers each; one help in four repeats a helper, which
must be refused). Each run gets a fresh server and data directory. Reports requests per second
(2xx and 409 both count: a refused join is a correct answer), the server's CPU time per request
(its worker process, user + system), and verifies that no group holds more than its size, no
helper helped an activity twice and no price fell below the floor.

The default client is wrk (C, one thread) replaying a precomputed request list, so the load
generator takes little of the CPU the server needs; ``--client httpx`` is the older Python
client (asyncio, one process), kept for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench_redirect import (
    children,
    free_port,
    liebian_cmd,
    liebian_env,
    liebian_init,
    process,
    wait_http,
)

GROUP_BUY = {
    "product_name": "课",
    "original_price": 49_900,
    "tiers": [{"size": 5, "price": 19_900}],
}
BARGAIN = {
    "mode": "bargain",
    "bargain": {"start_price": 10_000, "floor_price": 100, "max_helpers": 5},
    "max_helps_per_helper_per_day": 100,
}

# wrk: replay the request list once, count statuses, and end the process once every request was
# answered (wrk.thread:stop() would only idle until -d ran out). The time is taken around the
# wrk process; its start-up is a few milliseconds. Connections that ask for more while the
# last answers arrive wrap around to the start of the list; those repeats are not counted.
WRK_SCRIPT = r"""
local calls = {}
for line in io.lines(os.getenv("BENCH_CALLS")) do
  local path, body = line:match("([^\t]+)\t(.*)")
  calls[#calls + 1] = {path, body}
end
local total = #calls
local i = 0
local seen = 0
local statuses = {}
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
wrk.headers["Content-Type"] = "application/json"

request = function()
  i = i % total + 1
  return wrk.format(nil, calls[i][1], nil, calls[i][2])
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  seen = seen + 1
  if seen >= total then
    local parts = {}
    for code, n in pairs(statuses) do parts[#parts + 1] = string.format('"%d": %d', code, n) end
    io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\n")
    io.stdout:flush()
    os.exit(0)
  end
end
"""


async def setup(http: httpx.AsyncClient, requests: int) -> tuple[list[str], list[str]]:
    gcid = (
        await http.post("/campaigns", json={"type": "group_buy", "name": "g", "config": GROUP_BUY})
    ).json()["id"]
    acid = (
        await http.post("/campaigns", json={"type": "assist", "name": "a", "config": BARGAIN})
    ).json()["id"]
    half = requests // 2
    n = max(1, half // 8)  # ~8 racers for 4 free seats; 8 helps (2 repeats) for 5 slots
    sem = asyncio.Semaphore(8)

    async def post(path: str, body: dict[str, str], field: str) -> str:
        async with sem:
            return str((await http.post(path, json=body)).json()[field])

    groups = await asyncio.gather(
        *(
            post(f"/campaigns/{gcid}/groups", {"leader_external_id": f"l{i}"}, "group_id")
            for i in range(n)
        )
    )
    assists = await asyncio.gather(
        *(
            post(f"/campaigns/{acid}/assists", {"external_id": f"o{i}"}, "assist_id")
            for i in range(n)
        )
    )
    return list(groups), list(assists)


def make_calls(requests: int, groups: list[str], assists: list[str]) -> list[tuple[str, str]]:
    rng = random.Random(7)
    half = requests // 2
    calls: list[tuple[str, str]] = []
    for i in range(half):
        body = json.dumps({"external_id": f"j{i}"})
        calls.append((f"/api/v1/groups/{rng.choice(groups)}/join", body))
    for i in range(requests - half):
        # One in four helps repeats a helper: must be refused, never counted twice.
        helper = f"h{i // 2}" if i % 4 == 0 else f"h{i}"
        body = json.dumps({"external_id": helper})
        calls.append((f"/api/v1/assists/{rng.choice(assists)}/help", body))
    rng.shuffle(calls)
    return calls


async def load_httpx(
    port: int, key: str, calls: list[tuple[str, str]], concurrency: int
) -> tuple[float, dict[int, int]]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120, limits=limits
    ) as http:
        sem = asyncio.Semaphore(concurrency)

        async def one(path: str, body: str) -> None:
            async with sem:
                r = await http.post(path, content=body)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(one(p, b) for p, b in calls))
        return time.perf_counter() - start, statuses


def load_wrk(
    port: int, key: str, calls: list[tuple[str, str]], concurrency: int
) -> tuple[float, dict[int, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        calls_file = Path(tmp) / "calls.tsv"
        calls_file.write_text("".join(f"{p}\t{b}\n" for p, b in calls))
        script = Path(tmp) / "calls.lua"
        script.write_text(WRK_SCRIPT)
        start = time.perf_counter()
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", "-d600s", "-s", str(script),
             f"http://127.0.0.1:{port}"],
            env={**os.environ, "BENCH_CALLS": str(calls_file), "BENCH_KEY": key},
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        elapsed = time.perf_counter() - start
    match = re.search(r"STATUSES (\{.*\})", out)
    if match is None:
        raise SystemExit(f"wrk ended before every request was answered:\n{out}")
    return elapsed, {int(k): v for k, v in json.loads(match.group(1)).items()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def check(port: int, key: str, groups: list[str], assists: list[str]) -> tuple[int, int]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers, timeout=120
    ) as http:
        over = 0
        for gid in groups:
            g = (await http.get(f"/groups/{gid}")).json()
            over += len(g["members"]) > g["size"] or g["member_count"] != len(g["members"])
        bad = 0
        for aid in assists:
            a = (await http.get(f"/assists/{aid}")).json()
            names = [h["external_id"] for h in a["helpers"]]
            bad += (
                len(names) != len(set(names))
                or a["helpers_count"] != len(names)
                or a["helpers_count"] > 5
                or (a["price_now"] or 0) < 100
            )
    return over, bad


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="liebian-fission-")) / "data"
    key = liebian_init(data_dir)
    port = free_port()
    with process(liebian_cmd(port, data_dir), liebian_env(data_dir, port)) as proc:
        wait_http(port)
        worker = children(proc.pid)[0]

        async def prepare() -> tuple[list[str], list[str]]:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}/api/v1",
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            ) as http:
                return await setup(http, args.requests)

        groups, assists = asyncio.run(prepare())
        calls = make_calls(args.requests, groups, assists)
        cpu_before = cpu_seconds(worker)
        if args.client == "wrk":
            elapsed, statuses = load_wrk(port, key, calls, args.concurrency)
        else:
            elapsed, statuses = asyncio.run(load_httpx(port, key, calls, args.concurrency))
        answered = args.requests
        server_cpu = cpu_seconds(worker) - cpu_before
        over, bad = asyncio.run(check(port, key, groups, assists))
    return {
        "rate": answered / elapsed,
        "elapsed": elapsed,
        "answered": answered,
        "statuses": statuses,
        "cpu_ms": 1000 * server_cpu / answered,
        "cpu_share": server_cpu / elapsed,
        "over_full": over,
        "bad_assists": bad,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--client", choices=("wrk", "httpx"), default="wrk")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cpus (load average {os.getloadavg()[0]:.1f} at start)")
    results = []
    for run in range(args.runs):
        r = one_run(args)
        results.append(r)
        print(
            f"run {run + 1}: {r['answered']} joins+helps in {r['elapsed']:.2f} s → {r['rate']:,.0f} req/s;"
            f" server CPU {r['cpu_ms']:.2f} ms/request ({r['cpu_share']:.0%} of a core);"
            f" statuses {dict(sorted(r['statuses'].items()))};"
            f" groups over size {r['over_full']}, bad assists {r['bad_assists']}"
        )
    print(
        f"median of {args.runs}: {statistics.median(r['rate'] for r in results):,.0f} req/s,"
        f" server CPU {statistics.median(r['cpu_ms'] for r in results):.2f} ms/request"
        f" ({args.client}, concurrency {args.concurrency})"
    )
    print("command:", " ".join([Path(sys.executable).as_posix(), *sys.argv]))
    broken = any(
        r["over_full"] or r["bad_assists"] or any(s >= 500 for s in r["statuses"]) for r in results
    )
    if broken:
        raise SystemExit("invariant broken or server error")


if __name__ == "__main__":
    main()
