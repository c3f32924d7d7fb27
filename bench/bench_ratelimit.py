"""What the public rate limiter costs per request (kit/ratelimit.py), in process.

    PYTHONPATH=src python bench/bench_ratelimit.py [--n 1000000]

Times ``Limiter.visit_local`` (the redirect's check: per IP, then per returning visitor)
over a realistic spread of keys, against the same loop calling a function that does
nothing, and prints the median of 5 rounds in ns of CPU time per call. The redirect's own cost at the
same time comes from bench/bench_redirect.py with and without --no-limits.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from liebian.kit.ratelimit import Limiter, PublicLimits, Rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    limiter = Limiter(
        PublicLimits(
            per_ip=Rate(10**9, 60), per_visitor=Rate(10**9, 60), password=Rate(5, 900),
            password_lockout=900,
        )
    )  # fmt: skip
    ips = [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(50_000)]
    visitors = [f"v{i:015d}" for i in range(50_000)]

    def noop(ip: str, visitor: str | None, now: float) -> float:
        return 0.0

    rounds: dict[str, list[float]] = {"limiter": [], "noop": []}
    for _ in range(5):
        for name, fn in (("limiter", limiter.visit_local), ("noop", noop)):
            now = time.time()
            started = time.process_time_ns()  # CPU time: fair on a shared machine
            for i in range(args.n):
                fn(ips[i % 50_000], visitors[i % 50_000] if i & 1 else None, now)
            rounds[name].append((time.process_time_ns() - started) / args.n)
    limiter_ns, noop_ns = statistics.median(rounds["limiter"]), statistics.median(rounds["noop"])
    print(f"load: {os.getloadavg()[0]:.2f} (1 min); {args.n:,} calls x 5 rounds, medians")
    print(f"visit_local: {limiter_ns:.0f} ns/call; empty call: {noop_ns:.0f} ns/call;"
          f" limiter cost {limiter_ns - noop_ns:.0f} ns per request")  # fmt: skip


if __name__ == "__main__":
    main()
