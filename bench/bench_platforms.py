"""User-Agent classification: confusion summary on the ground-truth samples, and throughput.

Run: /work/venv/bin/python bench/bench_platforms.py [--seconds 1.0]
Prints the confusion (expected → got) per platform over tests/links/data/ua-samples.tsv, then
classifications per second for classify (uncached, pure) and classify_cached (LRU hits), and
for a miss-heavy cached run where every UA is new (the cost of a cold cache).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter
from pathlib import Path

from liebian.links.platforms import (
    PLATFORMS,
    classify,
    classify_cache_clear,
    classify_cache_info,
    classify_cached,
)

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "links" / "data" / "ua-samples.tsv"


def load() -> list[tuple[str, str]]:
    rows = []
    for line in SAMPLES.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            expected, ua = line.split("\t", 1)
            rows.append((expected, ua))
    return rows


def rate(fn: object, uas: list[str], seconds: float) -> float:
    call = fn  # a plain local lookup inside the loop
    assert callable(call)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for ua in uas:
            call(ua)
        done += len(uas)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()

    rows = load()
    confusion: Counter[tuple[str, str]] = Counter()
    for expected, ua in rows:
        confusion[(expected, classify(ua).platform)] += 1
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"python {platform.python_version()} on {platform.machine()}, {len(rows)} samples")
    print(f"{'expected':<12} {'n':>3} {'correct':>7}  misclassified as")
    wrong_total = 0
    for name in PLATFORMS:
        n = sum(c for (e, _), c in confusion.items() if e == name)
        ok = confusion[(name, name)]
        wrong = {g: c for (e, g), c in confusion.items() if e == name and g != name}
        wrong_total += n - ok
        print(f"{name:<12} {n:>3} {ok:>7}  {wrong or '-'}")
    print(f"accuracy: {(len(rows) - wrong_total) / len(rows):.1%}")

    uas = [ua for _, ua in rows]
    uncached = rate(classify, uas, args.seconds)
    classify_cache_clear()
    cached = rate(classify_cached, uas, args.seconds)
    info = classify_cache_info()
    # Miss-heavy: distinct UAs (a varying build number), more than the cache holds.
    fresh = [f"{ua} Build/{i}" for i in range(5000) for ua in uas[:1]]
    fresh += [f"{ua} n/{i}" for i, ua in enumerate(uas * 400)]
    classify_cache_clear()
    start = time.perf_counter()
    for ua in fresh:
        classify_cached(ua)
    cold = len(fresh) / (time.perf_counter() - start)
    print(f"classify (uncached):        {uncached:>12,.0f} /s  ({1e6 / uncached:.2f} µs each)")
    print(f"classify_cached (hits):     {cached:>12,.0f} /s  ({1e6 / cached:.2f} µs each)")
    print(f"classify_cached (all miss): {cold:>12,.0f} /s  ({1e6 / cold:.2f} µs each)")
    print(f"cache after hit run: hits={info.hits} misses={info.misses} size={info.currsize}")


if __name__ == "__main__":
    main()
