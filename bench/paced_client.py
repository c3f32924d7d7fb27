"""An open-loop HTTP/1.1 GET client at a fixed offered rate (like wrk2), for latency targets
stated at a rate ("p99 ≤ 20 ms at ≥ 2,000 req/s") rather than at saturation.

    python bench/paced_client.py --port 8000 --rate 2000 --duration 5 --paths paths.txt

Request ``i`` is due at ``t0 + i / rate`` whatever happened before; its latency is measured
from when it was due, not from when a connection was free to send it, so a server stall
counts against every request that should have gone out meanwhile (no coordinated omission).
``--connections`` keep-alive connections take the due requests in turn. Prints one JSON line:
offered and achieved rate, p50/p90/p99/p99.9/max in ms, errors. Plain asyncio streams (uvloop
when installed): ~2,000 req/s costs this client a fraction of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path


async def _connection(
    host: str, port: int, queue: asyncio.Queue[tuple[float, bytes] | None], out: list[float],
    errors: list[str], ua: str,
) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            due, path = item
            writer.write(
                b"GET " + path + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\nUser-Agent: "
                + ua.encode() + b"\r\nAccept: text/html\r\n\r\n"
            )  # fmt: skip
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            done = time.perf_counter()
            if status >= 400:
                errors.append(str(status))
            out.append(done - due)
    finally:
        writer.close()


async def run(
    host: str, port: int, paths: list[bytes], rate: float, duration: float, connections: int,
    ua: str,
) -> dict[str, float]:  # fmt: skip
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    lat: list[float] = []
    errors: list[str] = []
    workers = [
        asyncio.create_task(_connection(host, port, queue, lat, errors, ua))
        for _ in range(connections)
    ]
    await asyncio.sleep(0.2)  # connections open
    total = int(rate * duration)
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        queue.put_nowait((due, paths[i % len(paths)]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - t0
    lat.sort()

    def q(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else 0.0

    return {
        "offered": rate,
        "achieved": round(len(lat) / elapsed, 1),
        "requests": len(lat),
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "p999": q(0.999),
        "max": round(lat[-1] * 1000, 2) if lat else 0.0,
        "mean": round(statistics.fmean(lat) * 1000, 2) if lat else 0.0,
        "errors": len(errors),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--paths", type=Path, required=True, help="one path a line, walked in turn")
    ap.add_argument("--ua", default="Mozilla/5.0 (iPhone) MicroMessenger/8.0.50")
    args = ap.parse_args()
    paths = [p.strip().encode() for p in args.paths.read_text().splitlines() if p.strip()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    res = asyncio.run(
        run(args.host, args.port, paths, args.rate, args.duration, args.connections, args.ua)
    )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
