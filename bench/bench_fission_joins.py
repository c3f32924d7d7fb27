"""Concurrent group-buy joins and assist helps against a real ``liebian serve`` (SQLite, the
embedded default), with the invariants checked afterwards.

    /work/venv/bin/python bench/bench_fission_joins.py [--requests 3000] [--concurrency 64]

Half the requests join group-buy groups of 5 (several people racing for each seat), half help
bargain activities (5 helpers each, plus repeat helps by the same person). Reports requests
per second (2xx and 409 both count: a refused join is a correct answer) and verifies that no
group holds more than 5 members and no helper helped twice.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench_redirect import free_port, liebian_cmd, liebian_env, liebian_init, process, wait_http

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


async def run(port: int, key: str, requests: int, concurrency: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}/api/v1"
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=120, limits=limits
    ) as http:
        gcid = (
            await http.post(
                "/campaigns", json={"type": "group_buy", "name": "g", "config": GROUP_BUY}
            )
        ).json()["id"]
        acid = (
            await http.post("/campaigns", json={"type": "assist", "name": "a", "config": BARGAIN})
        ).json()["id"]
        half = requests // 2
        n_groups = max(1, half // 8)  # ~8 racers for 4 free seats
        n_assists = max(1, half // 8)
        groups = [
            (
                await http.post(f"/campaigns/{gcid}/groups", json={"leader_external_id": f"l{i}"})
            ).json()["group_id"]
            for i in range(n_groups)
        ]
        assists = [
            (await http.post(f"/campaigns/{acid}/assists", json={"external_id": f"o{i}"})).json()[
                "assist_id"
            ]
            for i in range(n_assists)
        ]
        rng = random.Random(7)
        calls: list[tuple[str, dict[str, str]]] = []
        for i in range(half):
            calls.append((f"/groups/{rng.choice(groups)}/join", {"external_id": f"j{i}"}))
        for i in range(requests - half):
            # One in four helps repeats a helper: must be refused, never counted twice.
            helper = f"h{i // 2}" if i % 4 == 0 else f"h{i}"
            calls.append((f"/assists/{rng.choice(assists)}/help", {"external_id": helper}))
        rng.shuffle(calls)
        sem = asyncio.Semaphore(concurrency)
        statuses: dict[int, int] = {}

        async def one(path: str, body: dict[str, str]) -> None:
            async with sem:
                r = await http.post(path, json=body)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(one(p, b) for p, b in calls))
        elapsed = time.perf_counter() - start

        over = 0
        for gid in groups:
            g = (await http.get(f"/groups/{gid}")).json()
            over += len(g["members"]) > g["size"]
        dup_help = 0
        for aid in assists:
            a = (await http.get(f"/assists/{aid}")).json()
            names = [h["external_id"] for h in a["helpers"]]
            dup_help += (
                len(names) != len(set(names))
                or a["helpers_count"] > 5
                or (a["price_now"] or 0) < 100
            )
    return {"elapsed": elapsed, "statuses": statuses, "over_full": over, "bad_assists": dup_help}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="liebian-fission-")) / "data"
    key = liebian_init(data_dir)
    port = free_port()
    with process(liebian_cmd(port, data_dir), liebian_env(data_dir, port)):
        wait_http(port)
        result = asyncio.run(run(port, key, args.requests, args.concurrency))
    rate = args.requests / result["elapsed"]
    print(
        f"{args.requests} joins+helps at concurrency {args.concurrency}: {result['elapsed']:.2f} s → {rate:,.0f} req/s"
    )
    print(f"status counts: {dict(sorted(result['statuses'].items()))}")
    print(
        f"groups over size: {result['over_full']}; assists with a double help or below floor: {result['bad_assists']}"
    )
    print("command:", " ".join([Path(sys.executable).as_posix(), *sys.argv]))
    if result["over_full"] or result["bad_assists"] or any(s >= 500 for s in result["statuses"]):
        raise SystemExit("invariant broken or server error")


if __name__ == "__main__":
    main()
