"""100,000 links through the bulk API (10 calls of 10,000) against a real ``liebian serve``.

    /work/venv/bin/python bench/bench_bulk_links.py [--links 100000] [--batch 10000] [--runs 3]

Each run uses a fresh data directory (SQLite, the embedded default) and reports the wall time
from the first request to the last response, then checks a sample of the links redirects.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench_redirect import free_port, liebian_cmd, liebian_env, liebian_init, process, wait_http


def one_run(links: int, batch: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="liebian-bulk-"))
    data_dir = tmp / "data"
    key = liebian_init(data_dir)
    port = free_port()
    with process(liebian_cmd(port, data_dir), liebian_env(data_dir, port)):
        wait_http(port)
        bodies = [
            {
                "links": [
                    {
                        "url": f"https://example.com/p/{i}",
                        "channel": "wx_group_01",
                        "utm": {"source": "wechat"},
                        "tags": ["bulk"],
                    }
                    for i in range(start, min(links, start + batch))
                ]
            }
            for start in range(0, links, batch)
        ]
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            t0 = time.perf_counter()
            created = 0
            for body in bodies:
                resp = http.post("/api/v1/links/bulk", json=body, headers=headers)
                resp.raise_for_status()
                created += resp.json()["created"]
            elapsed = time.perf_counter() - t0
            assert created == links, created
            page = http.get("/api/v1/links", params={"limit": 5}, headers=headers).json()
            for item in page["items"]:
                assert http.get("/" + item["slug"]).status_code == 302
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--links", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        t = one_run(args.links, args.batch)
        times.append(t)
        print(f"{args.links:,} links in {args.links // args.batch} bulk calls: {t:.2f} s")
    print(
        f"median {statistics.median(times):.2f} s ({args.links / statistics.median(times):,.0f} links/s)"
    )


if __name__ == "__main__":
    main()
