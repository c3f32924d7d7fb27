"""Components start in order and stop in reverse; a failure on either side leaves nothing
running (app/lifecycle.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from liebian.app.lifecycle import Component, start_components, stop_components


class _Part:
    def __init__(
        self, name: str, log: list[str], *, fail_start: bool = False, fail_stop: bool = False
    ) -> None:
        self.name, self.log = name, log
        self.fail_start, self.fail_stop = fail_start, fail_stop

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} cannot stop")


def test_a_failed_start_stops_what_had_started() -> None:
    log: list[str] = []
    parts: list[Component] = [_Part("a", log), _Part("b", log), _Part("c", log, fail_start=True)]
    with pytest.raises(RuntimeError, match="c cannot start"):
        asyncio.run(start_components(parts))
    assert log == ["start a", "start b", "stop b", "stop a"]


def test_a_failed_stop_does_not_leave_the_others_running() -> None:
    log: list[str] = []
    parts: list[Component] = [_Part("a", log), _Part("b", log, fail_stop=True), _Part("c", log)]
    asyncio.run(start_components(parts))
    with pytest.raises(RuntimeError, match="b cannot stop"):
        asyncio.run(stop_components(parts))
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


def test_closing_the_runtime_ends_the_thread_pools_it_holds(settings: Any) -> None:
    """The community welcomes' pool (communities/welcome.py) and any other pool a domain keeps
    in the extras: their threads end with the runtime instead of idling on per test."""
    from concurrent.futures import ThreadPoolExecutor

    from liebian.app.factory import create_app
    from liebian.app.runtime import Runtime

    def welcome_threads() -> int:
        return sum(t.name.startswith("community-welcome") for t in threading.enumerate())

    before = welcome_threads()
    runtime = Runtime.build(settings)
    create_app(settings, runtime)
    pools = [v for v in runtime.extras.values() if isinstance(v, ThreadPoolExecutor)]
    assert pools, "the communities domain keeps its welcome pool in the extras"
    for pool in pools:
        pool.submit(time.sleep, 0.01).result()  # a thread exists now
    assert welcome_threads() > before
    runtime.close()
    deadline = time.monotonic() + 10
    while welcome_threads() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert welcome_threads() == before
