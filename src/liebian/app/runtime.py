"""What one process holds: settings, the OLTP engine, the PII cipher and the shared caches.

Built once by the app factory or a CLI command and handed to whoever needs it, so nothing
reaches for globals.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from liebian.events.spool import Spool
from liebian.events.store.base import EventStore
from liebian.kit.bus import BUS_KEY, LocalBus
from liebian.kit.crypto import PiiCipher
from liebian.kit.db import make_engine, make_session_factory
from liebian.kit.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    secret: bytes
    cipher: PiiCipher
    bus: LocalBus
    # The event pipeline: the server opens both; CLI commands that need no events leave them.
    event_store: EventStore | None = None
    spool: Spool | None = None
    # Filled by the app factory once the domain components exist (routers, redirect app…).
    extras: dict[str, Any] = field(default_factory=dict)
    # Sessions for work that only reads (GET requests, key lookups): on SQLite they never wait
    # for the writer lock (kit/db.py, decision 0013). Made from ``engine`` when not given.
    read_sessions: sessionmaker[Session] = field(default=None)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.read_sessions is None:
            info = dict(self.sessions.kw.get("info") or {})
            self.read_sessions = make_session_factory(self.engine, info, read_only=True)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        secret = settings.secret_bytes()
        bus = LocalBus()
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine, info={BUS_KEY: bus}),
            bus=bus,
            secret=secret,
            cipher=PiiCipher(secret),
        )

    def flush_events(self) -> None:
        """Load everything spooled so far into the event store (reads that must be current)."""
        if self.spool is not None and self.event_store is not None:
            self.spool.flush_once(self.event_store)

    def apply_event_hooks(self) -> int:
        """Apply every conversion spooled so far to its consumers (reads that must be current,
        tests); the hooks worker does it in the background."""
        worker = self.extras.get("event_hooks_worker")
        return int(worker.drain()) if worker is not None else 0

    def close(self) -> None:
        # Thread pools the domains keep in the extras (community welcomes): their idle threads
        # go with the runtime; work still queued is dropped, as when the process stops (a
        # welcome message is best effort).
        for key, value in list(self.extras.items()):
            if isinstance(value, ThreadPoolExecutor):
                del self.extras[key]
                value.shutdown(wait=False, cancel_futures=True)
        wecom_http = self.extras.pop("wecom_http", None)  # connectors/wecom's pooled client
        if wecom_http is not None:
            wecom_http.close()
        hooks = self.extras.pop("event_hooks", None)
        if hooks is not None:
            hooks.spool.close()
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        if self.event_store is not None:
            self.event_store.close()
            self.event_store = None
        self.engine.dispose()
