"""Background components started and stopped with the server (flushers, schedulers)."""

from __future__ import annotations

from typing import Protocol


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def start_components(components: list[Component]) -> None:
    for component in components:
        await component.start()


async def stop_components(components: list[Component]) -> None:
    # Stop in reverse so a flusher drains after the parts feeding it have stopped.
    for component in reversed(components):
        await component.stop()
