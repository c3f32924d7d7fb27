"""Precision/recall of the anti-fraud rules on the seeded synthetic population.

Run: /work/venv/bin/python bench/bench_fraud.py [seed ...]
"Flagged" means held or blocked; precision and recall are against the planted labels.
"""

from __future__ import annotations

import sys
import time

from liebian.risk.population import evaluate, format_report, generate_population
from liebian.risk.scoring import RiskPolicy


def main() -> None:
    seeds = [int(s) for s in sys.argv[1:]] or [42]
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    for seed in seeds:
        start = time.perf_counter()
        population = generate_population(seed)
        results = [
            evaluate(population, RiskPolicy(mode="review"), ring_sweep=False),
            evaluate(population, RiskPolicy(mode="review"), ring_sweep=True),
            evaluate(population, RiskPolicy(mode="block"), ring_sweep=True),
        ]
        elapsed = time.perf_counter() - start
        print(f"\n== seed {seed} ({elapsed * 1000:.0f} ms for generation + 3 evaluations)")
        print(format_report(results))


if __name__ == "__main__":
    main()
