"""The redirect's latency while invalid keys and analytics queries hit the same server.

    /work/main/.venv/bin/python bench/bench_redirect_under_abuse.py [--runs 3] [--duration 8]
        [--links 1000] [--abusers 4] [--micro] [--modes quiet,abuse]
        [--reference SRC] [--b-env "K=V ..."]

One ``liebian serve`` (granian, 1 worker, as bench_redirect.py). Runs alternate, so the
machine's background load hits both alike:

- ``quiet``: the redirect load of bench_redirect.py alone (``wrk -t1 -c50``, a Lua script
  walking the links' slugs; every request records a click);
- ``abuse``: the same wrk load while ``--abusers`` threads of this process send, back to back,
  ``POST /api/v1/events`` with invalid keys (half a fixed ``lb_bogus``, half a fresh random key
  each time, which no cache can answer), ``POST /api/v1/analytics/counts`` and ``/cac`` with a
  valid key, and ``POST /api/v1/links`` (writes that hold the SQLite writer lock), plus one
  thread probing ``/healthz``.

Printed per run and as medians: the redirect's req/s, p50, p99; during abuse also the abuse
requests answered per status and the /healthz probe's median and worst latency (a request
waiting on another's lock shows there, and as 5xx). ``--micro`` also times the slug cache's
hit path as it is, as it was, and with a lock around it, in this process.

Everything runs on 127.0.0.1 in a temporary directory. Prints ``uptime`` before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_redirect import (
    WRK_SCRIPT,
    children,
    cpu_seconds,
    create_links_via_api,
    free_port,
    liebian_cmd,
    liebian_env,
    liebian_init,
    process,
    wait_drained,
    wait_http,
    wrk,
)

RANGE = {"from": "2026-03-01T00:00:00+08:00", "to": "2026-03-08T00:00:00+08:00"}
# 0 repeated wrong key, 1 fresh random string, 2 fresh well-formed wrong key, 3 analytics
# counts, 4 CAC, 5 link creation.
KINDS = (0, 1, 2, 3, 4, 5)


class Abuse:
    """Threads that hit the server until stopped, counting answers by status."""

    def __init__(
        self,
        port: int,
        key: str,
        abusers: int,
        rate: float = 0.0,
        kinds: tuple[int, ...] = KINDS,
    ) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.key = key
        self.abusers = abusers
        # 0: back to back (closed loop: the cheaper the server's answer, the more requests);
        # else requests per second in all, paced (open loop: the same work in every variant).
        self.rate = rate
        self.kinds = kinds
        self.stop = threading.Event()
        self.statuses: Counter[str] = Counter()
        self.health_ms: list[float] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _count(self, what: str, status: int) -> None:
        with self._lock:
            self.statuses[f"{what} {status}"] += 1

    def _abuser(self, n: int) -> None:
        good = {"Authorization": f"Bearer {self.key}"}
        period = self.abusers / self.rate if self.rate else 0.0
        due = time.monotonic() + period * n / self.abusers
        with httpx.Client(base_url=self.base, timeout=60) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                if period:
                    # Paced: a late request is not made up for by a burst.
                    wait = due - time.monotonic()
                    if wait > 0 and self.stop.wait(wait):
                        break
                    due = max(due + period, time.monotonic())
                kind = self.kinds[(n + i) % len(self.kinds)]
                try:
                    if kind == 0:
                        r = http.post(
                            "/api/v1/events",
                            json={"event": "x"},
                            headers={"Authorization": "Bearer lb_bogus"},
                        )
                        self._count("bogus key (repeated)", r.status_code)
                    elif kind == 1:
                        bogus = "lb_" + secrets.token_urlsafe(16)
                        r = http.post(
                            "/api/v1/events",
                            json={"event": "x"},
                            headers={"Authorization": f"Bearer {bogus}"},
                        )
                        self._count("bogus key (fresh)", r.status_code)
                    elif kind == 2:
                        bogus = "lb_" + secrets.token_urlsafe(32)  # shaped like a key
                        r = http.post(
                            "/api/v1/events",
                            json={"event": "x"},
                            headers={"Authorization": f"Bearer {bogus}"},
                        )
                        self._count("bogus key (fresh, key-shaped)", r.status_code)
                    elif kind == 3:
                        r = http.post("/api/v1/analytics/counts", json=RANGE, headers=good)
                        self._count("analytics counts", r.status_code)
                    elif kind == 4:
                        r = http.post("/api/v1/analytics/cac", json=RANGE, headers=good)
                        self._count("analytics cac", r.status_code)
                    else:
                        r = http.post(
                            "/api/v1/links",
                            json={"url": f"https://example.com/abuse/{n}/{i}"},
                            headers=good,
                        )
                        self._count("link create", r.status_code)
                except httpx.HTTPError as exc:
                    self._count(f"error {type(exc).__name__}", 0)

    def _prober(self) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as http:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    http.get("/healthz")
                except httpx.HTTPError as exc:
                    self._count(f"/healthz error {type(exc).__name__}", 0)
                self.health_ms.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.05)

    def __enter__(self) -> Abuse:
        self._threads = [
            threading.Thread(target=self._abuser, args=(n,), daemon=True)
            for n in range(self.abusers)
        ] + [threading.Thread(target=self._prober, daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=120)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def micro_cache(rounds: int = 5, n: int = 300_000) -> None:
    """The slug cache's hit path as it is, as it was before issue 9, and with a lock around
    it (the design rejected in decision 0013), in this process, same entry, same calls."""
    import timeit

    from liebian.redirect.cache import Entry, LinkCache, compile_link

    class Before(LinkCache):
        def get(self, slug: str, now: float) -> Entry | bool | None:
            entry = self._entries.get(slug)
            if entry is not None and now - entry.loaded_at < self.ttl:
                self._entries.move_to_end(slug)
                return entry
            return False

    class Locked(LinkCache):
        def get(self, slug: str, now: float) -> Entry | bool | None:
            with self._lock:
                entry = self._entries.get(slug)
                if entry is not None and now - entry.loaded_at < self.ttl:
                    self._entries.move_to_end(slug)
                    return entry
                return False

    row = {
        "id": "lnk_1", "workspace_id": "ws_1", "url": "https://example.com/a", "channel": None,
        "campaign_id": None, "utm": {}, "expires_at": None, "expired_url": None,
        "max_clicks": None, "password_hash": None, "allowed_platforms": None, "ios_url": None,
        "android_url": None, "variants": None, "browser_guide": False,
    }  # fmt: skip
    entry = compile_link(row)
    figures = {}
    for name, cls in (("now", LinkCache), ("before", Before), ("locked", Locked)):
        cache = cls(loader=None)  # type: ignore[arg-type]
        cache._entries["s"] = entry
        now = entry.loaded_at
        runs = [
            timeit.timeit(lambda c=cache, t=now: c.get("s", t), number=n) for _ in range(rounds)
        ]
        figures[name] = statistics.median(runs) * 1e9 / n
    print(
        f"slug cache hit, median of {rounds} x {n:,} calls: now {figures['now']:.0f} ns, "
        f"before {figures['before']:.0f} ns, with a lock {figures['locked']:.0f} ns"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--abusers", type=int, default=4)
    parser.add_argument("--micro", action="store_true")
    parser.add_argument(
        "--abuse-rate",
        type=float,
        default=0.0,
        help="abuse requests per second in all, paced (default 0: back to back)",
    )
    parser.add_argument(
        "--kinds",
        default=",".join(map(str, KINDS)),
        help="abuse kinds: 0 repeated wrong key, 1 fresh random string, 2 fresh key-shaped "
        "wrong key, 3 analytics counts, 4 CAC, 5 link creation",
    )
    parser.add_argument(
        "--modes", default="quiet,abuse", help="which of quiet,abuse to run (default both)"
    )
    parser.add_argument(
        "--reference",
        metavar="SRC",
        help="a second server from another source tree (its src/), runs interleaved",
    )
    parser.add_argument(
        "--b-env",
        default="",
        help="a second server with these extra environment settings ('K=V K2=V2'; with "
        "--reference, applied to the reference), runs interleaved",
    )
    args = parser.parse_args()
    kinds = tuple(int(k) for k in args.kinds.split(","))

    print(f"load before: {uptime()}")
    if args.micro:
        micro_cache()
    tmp = Path(tempfile.mkdtemp(prefix="liebian-abuse-"))
    script = tmp / "walk.lua"
    script.write_text(WRK_SCRIPT)
    pace = f"{args.abuse_rate:g}/s paced" if args.abuse_rate else "back to back"
    modes = [m for m in args.modes.split(",") if m]
    # One server, or two side by side (this tree's, and --reference's or this tree's with
    # --b-env): their runs interleave, so the machine's background load hits both alike.
    servers: dict[str, tuple[str | None, dict[str, str]]] = {"A": (None, {})}
    if args.reference or args.b_env:
        ref = str(Path(args.reference).resolve()) if args.reference else None
        extra = dict(kv.split("=", 1) for kv in args.b_env.split())
        servers["B"] = (ref, extra)
        print(f"B: {ref or 'this tree'} {extra or ''}")
    print(
        f"machine: {os.cpu_count()} cpus; wrk -t1 -c50 -d{args.duration}s; "
        f"{args.abusers} abuse threads ({pace}, kinds {args.kinds}) + 1 /healthz probe; "
        f"{args.runs} runs per mode and server, alternating"
    )
    results: dict[str, list[dict[str, float]]] = {}
    health: dict[str, list[float]] = {}
    statuses: dict[str, Counter[str]] = {}
    with contextlib.ExitStack() as stack:
        started: dict[str, tuple[int, str, Path, list[int]]] = {}
        for name, (src, extra) in servers.items():
            data_dir = tmp / f"data-{name}"
            key = liebian_init(data_dir, src)
            port = free_port()
            env = {**liebian_env(data_dir, port, src), **extra}
            lb = stack.enter_context(process(liebian_cmd(port, data_dir), env))
            wait_http(port)
            slugs = create_links_via_api(port, key, args.links)
            slugs_file = tmp / "slugs.txt"
            slugs_file.write_text("\n".join(slugs) + "\n")
            wrk(port, slugs_file, script, 2)  # warm-up
            pids = [lb.pid, *children(lb.pid)]
            wait_drained(data_dir, pids)
            started[name] = (port, key, data_dir, pids)
        for i in range(args.runs):
            for name, (port, key, data_dir, pids) in started.items():
                for mode in modes:
                    label = f"{mode} {name}" if len(started) > 1 else mode
                    cpu0, client0 = cpu_seconds(pids), time.process_time()
                    if mode == "abuse":
                        with Abuse(port, key, args.abusers, args.abuse_rate, kinds) as abuse:
                            r = wrk(port, slugs_file, script, args.duration)
                        health.setdefault(label, []).extend(abuse.health_ms)
                        statuses.setdefault(label, Counter()).update(abuse.statuses)
                        answered = sum(abuse.statuses.values())
                        extra_text = (
                            f"  abuse answered {answered:,} ({answered / args.duration:,.0f}/s), "
                            f"/healthz median {statistics.median(abuse.health_ms):.1f} ms "
                            f"worst {max(abuse.health_ms):.1f} ms"
                        )
                    else:
                        r = wrk(port, slugs_file, script, args.duration)
                        extra_text = ""
                    # Server CPU (all threads of the server's processes) per redirect
                    # answered, and this process's own (the abuse clients'), per second.
                    r["cpu_us"] = (cpu_seconds(pids) - cpu0) / r["requests"] * 1e6
                    r["client_cpu"] = (time.process_time() - client0) / args.duration
                    results.setdefault(label, []).append(r)
                    print(
                        f"   run {i + 1} {label:7s}: {r['rps']:,.0f} req/s  p50 {r['p50']:.2f} ms  "
                        f"p99 {r['p99']:.2f} ms  server CPU {r['cpu_us']:.0f} us/redirect, "
                        f"bench client {r['client_cpu']:.2f} CPU s/s{extra_text}  "
                        f"(load {Path('/proc/loadavg').read_text().split()[0]})",
                        flush=True,
                    )
                    wait_drained(data_dir, pids)

    for label, counted in statuses.items():
        print(f"\nabuse requests by answer ({label}, all runs):")
        for what, count in sorted(counted.items()):
            print(f"  {what:28s} {count:>7,}")
    print("\nsummary (medians):")
    for label, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99", "cpu_us")}
        each = ", ".join(f"{r['p99']:.2f}" for r in rs)
        print(
            f"  redirect {label:7s} {med['rps']:>8,.0f} req/s   p50 {med['p50']:.2f} ms   "
            f"p99 {med['p99']:.2f} ms (runs {each})   "
            f"server CPU {med['cpu_us']:.0f} us/redirect"
        )
    for label, probes in health.items():
        print(
            f"  /healthz during {label}: median {statistics.median(probes):.1f} ms, "
            f"worst {max(probes):.1f} ms over {len(probes)} probes"
        )
    print(f"load after: {uptime()}")


if __name__ == "__main__":
    main()
