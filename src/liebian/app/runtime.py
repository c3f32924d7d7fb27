"""What one process holds: settings, the OLTP engine, the PII cipher and the shared caches.

Built once by the app factory or a CLI command and handed to whoever needs it, so nothing
reaches for globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

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
    # Filled by the app factory once the domain components exist (link cache, spool, store…).
    extras: dict[str, Any] = field(default_factory=dict)

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

    def close(self) -> None:
        self.engine.dispose()
