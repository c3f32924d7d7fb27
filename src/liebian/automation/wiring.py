"""Journeys in a process: the executor thread as a server component, and the same loop as
the ``liebian worker`` command (several of them share the work on PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from liebian.automation.executor import Executor, ExecutorConfig, ExecutorThread


def executor_for(runtime: Any, **overrides: Any) -> Executor:
    # Every table known (steps touch contacts, tags, rewards, channels) in a bare worker too.
    import liebian.models_registry  # noqa: F401

    settings = runtime.settings
    config = ExecutorConfig(
        lease=timedelta(seconds=settings.journeys_lease),
        allow_private=settings.allow_private_webhooks,
        http_timeout=settings.webhook_timeout,
        **overrides,
    )
    return Executor(runtime.sessions, config=config, runtime=runtime)


class JourneysComponent:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.thread: ExecutorThread | None = None

    async def start(self) -> None:
        interval = self.runtime.settings.journeys_interval
        if interval <= 0:
            return
        self.thread = ExecutorThread(executor_for(self.runtime), interval=interval)
        self.thread.start()
        self.runtime.extras["journeys"] = self.thread

    async def stop(self) -> None:
        if self.thread is not None:
            await asyncio.to_thread(self.thread.stop)
            self.thread = None
