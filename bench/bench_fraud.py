"""Precision/recall of the anti-fraud rules on the seeded synthetic population.

Run: /work/venv/bin/python bench/bench_fraud.py [seed ...]
"Flagged" means held or blocked; precision and recall are against the planted labels.
"""

from __future__ import annotations

import sys
import time

from liebian.risk.population import (
    MIXTURES,
    evaluate,
    format_report,
    generate_mixture,
    generate_population,
    rank,
)
from liebian.risk.scoring import RiskPolicy

MIXTURE_SEEDS = (1, 2, 3, 101, 202)


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
    print("\n== ranking (ROC AUC, Mann-Whitney) on held-back style mixtures, policy=block")
    print(
        "mixture       seed  n    arrival  revised  blocked-honest  held-honest  per-kind AUC (revised)"
    )
    for mixture in MIXTURES:
        for seed in MIXTURE_SEEDS:
            population = generate_mixture(seed, mixture)
            arrived, revised = rank(population, revised=False), rank(population, revised=True)
            kinds = " ".join(f"{k}={v:.3f}" for k, v in revised.auc_by_kind.items())
            print(
                f"{mixture:<13} {seed:<5} {revised.total:<4} {arrived.auc:.3f}    {revised.auc:.3f}"
                f"    {revised.blocked_honest:<15} {revised.held_honest:<12} {kinds}"
            )


if __name__ == "__main__":
    main()
