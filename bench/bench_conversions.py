"""The event hooks in process: request-path CPU per event, worker CPU per conversion, split
by consumer (campaigns, people…), on the realistic mix (see bench_ingest_api.mix_bodies).

Runs `events.service.ingest` on 10,000-event batches of the mix into a real spool, DuckDB and
SQLite under a temp directory, then drains the hooks spool with the worker, timing each
registered consumer's CPU. CPU time, not wall time: steadier on a shared machine.

    PYTHONPATH=src python bench/bench_conversions.py [--events 200000] [--people 8000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_ingest_api import mix_bodies
from liebian.app.runtime import Runtime
from liebian.app.wiring import wire
from liebian.events import service
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.settings import Settings
from liebian.migrations import upgrade
from liebian.workspaces.service import bootstrap


class Timed:
    """Wraps a consumer, adding up the CPU its calls take."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.events = inner.events
        if hasattr(inner, "select"):
            self.select = inner.select
        self.cpu = 0.0

    def __call__(self, session: Any, events: Sequence[Any]) -> None:
        start = time.process_time()
        self.inner(session, events)
        self.cpu += time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--people", type=int, default=8_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), secret_key="11" * 32, jobs_interval=0, webhook_interval=0)  # fmt: skip
        upgrade(settings.resolved_database_url)
        runtime = Runtime.build(settings)
        wire(runtime)
        with session_scope(runtime.sessions) as session:
            workspace, _ = bootstrap(session, "bench")
            workspace_id = workspace.id
        hooks, worker = runtime.extras["event_hooks"], runtime.extras["event_hooks_worker"]
        registry = hooks.registry
        registry._consumers[:] = [Timed(c) for c in registry._consumers]
        bodies, conversions = mix_bodies(0, total=args.events, people=args.people)
        start = time.process_time()
        for body in bodies:
            service.ingest(workspace_id=workspace_id, raw=body, spool=runtime.spool,
                           now=utcnow(), hooks=hooks)  # fmt: skip
        ingest_cpu = time.process_time() - start
        start = time.process_time()
        applied = worker.drain()
        worker_cpu = time.process_time() - start
        runtime.close()
    per = {c.name: c.cpu / applied * 1e6 for c in registry._consumers}
    print(
        f"realistic mix, {args.events:,} events ({conversions:,} signups + purchases), in process:"
    )
    print(f"  request path (parse, validate, spool lines, hooks lines, aliases): {ingest_cpu / args.events * 1e6:.1f} us CPU/event")  # fmt: skip
    print(f"  hooks worker: {applied:,} events applied, {worker_cpu / applied * 1e6:.0f} us CPU each; by consumer: "
          + ", ".join(f"{name} {us:.0f}" for name, us in per.items())
          + f"; markers, parsing and commit {worker_cpu / applied * 1e6 - sum(per.values()):.0f}")  # fmt: skip
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
