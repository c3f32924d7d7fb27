"""Background components started and stopped with the server (flushers, schedulers)."""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("liebian.app")


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def start_components(components: list[Component]) -> None:
    """Start each in order. When one fails, the ones already started are stopped before the
    error goes on: a server that did not start leaves no thread behind (a flusher, a hooks
    worker) still writing to its stores."""
    started: list[Component] = []
    try:
        for component in components:
            await component.start()
            started.append(component)
    except BaseException:
        await stop_components(started)
        raise


async def stop_components(components: list[Component]) -> None:
    """Stop in reverse, so a flusher drains after the parts feeding it have stopped. A
    component whose stop fails is logged and the others are still stopped; the first
    failure is raised at the end."""
    failure: BaseException | None = None
    for component in reversed(components):
        try:
            await component.stop()
        except Exception as exc:
            log.exception("stopping %s failed", type(component).__name__)
            failure = failure or exc
    if failure is not None:
        raise failure
