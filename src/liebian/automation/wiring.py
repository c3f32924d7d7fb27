"""Journeys in a process: the executor thread as a server component, and the same loop as
the ``liebian worker`` command (several of them share the work on PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from liebian.automation.executor import Executor, ExecutorConfig, ExecutorThread
from liebian.automation.triggers import JourneyEvents, drain_outbox, install, scan
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope

log = logging.getLogger("liebian.automation")


def executor_for(runtime: Any, **overrides: Any) -> Executor:
    # Every table known (steps touch contacts, tags, rewards, channels) in a bare worker too.
    import liebian.models_registry  # noqa: F401

    # Steps change tags: a tag trigger they set off is written in the step's own transaction.
    install(runtime.sessions)
    settings = runtime.settings
    given: dict[str, Any] = {
        "lease": timedelta(seconds=settings.journeys_lease),
        "allow_private": settings.allow_private_webhooks,
        "http_timeout": settings.webhook_timeout,
        "release_dead_claims": settings.journeys_release_dead_claims,
        "lanes": settings.journeys_lanes,
    }
    config = ExecutorConfig(**{**given, **overrides})
    return Executor(runtime.sessions, config=config, runtime=runtime)


def register_events(runtime: Any, registry: Any) -> JourneyEvents:
    """The hooks consumer for event triggers, waits and goals (called where the registry is
    built, app/wiring.py); its names are refreshed by the trigger thread."""
    consumer = JourneyEvents()
    registry.register(consumer)
    runtime.extras["journey_events"] = consumer
    return consumer


class TriggerThread:
    """Bus changes (the trigger outbox) → enrolments, the event names refreshed,
    date/inactivity scans."""

    def __init__(self, runtime: Any, interval: float) -> None:
        self.runtime = runtime
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="liebian-triggers", daemon=True)
        self._thread.start()

    def run_once(self, now: datetime | None = None, *, scan_due: bool = True) -> int:
        sessions = self.runtime.sessions
        entered = drain_outbox(sessions, now)
        consumer = self.runtime.extras.get("journey_events")
        if consumer is not None:
            with self.runtime.read_sessions() as session:
                consumer.refresh(session)
        if scan_due:
            with session_scope(sessions) as session:
                entered += scan(session, now or utcnow(), self.runtime.event_store)
        return entered

    def _run(self) -> None:
        last_scan = 0.0
        every = self.runtime.settings.journeys_scan_interval
        while not self._stop.wait(self.interval):
            scan_due = every > 0 and time.monotonic() - last_scan >= every
            try:
                self.run_once(scan_due=scan_due)
            except Exception:
                log.exception("journey triggers failed")
            if scan_due:
                last_scan = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


class JourneysComponent:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.thread: ExecutorThread | None = None
        self.triggers: TriggerThread | None = None
        # At wiring time (after the webhook outbox, which it chains): every change committed
        # from now on writes its trigger row in its own transaction.
        install(runtime.sessions)

    async def start(self) -> None:
        settings = self.runtime.settings
        interval = settings.journeys_interval
        if interval <= 0:
            return
        self.triggers = TriggerThread(self.runtime, max(interval, 0.5))
        self.triggers.start()
        if settings.journeys_executor:
            self.thread = ExecutorThread(executor_for(self.runtime), interval=interval)
            self.thread.start()
            self.runtime.extras["journeys"] = self.thread

    async def stop(self) -> None:
        if self.triggers is not None:
            await asyncio.to_thread(self.triggers.stop)
            self.triggers = None
        if self.thread is not None:
            await asyncio.to_thread(self.thread.stop)
            self.thread = None
