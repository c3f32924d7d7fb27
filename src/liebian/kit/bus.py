"""In-process change notifications (cache invalidation), published only after commit.

The bus rides on the session factory's ``info`` so services reach it through the session they
were given, without globals. In scale mode a Redis relay subscribes here and re-publishes to
the other processes (and back).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session

from liebian.kit.db import after_commit

BUS_KEY = "liebian.bus"

log = logging.getLogger("liebian.bus")


class LocalBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callable[[Any], None]]] = defaultdict(list)
        self._relays: list[Callable[[str, Any], None]] = []

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None:
        self._subscribers[topic].append(callback)

    def publish(self, topic: str, payload: Any) -> None:
        """A change made in this process: local subscribers, then the relays (other processes).

        Every subscriber and relay is called even if one fails (logged): a publish follows a
        commit, and a broken cache must not keep the others stale nor fail the write."""
        self.deliver(topic, payload)
        for relay in list(self._relays):
            try:
                relay(topic, payload)
            except Exception:
                log.exception("bus relay %r failed for %s", relay, topic)

    def deliver(self, topic: str, payload: Any) -> None:
        """Local subscribers only: for changes another process made (never relayed back)."""
        for callback in list(self._subscribers.get(topic, ())):
            try:
                callback(payload)
            except Exception:
                log.exception("bus subscriber %r failed for %s", callback, topic)

    def add_relay(self, relay: Callable[[str, Any], None]) -> None:
        """Also hand every local publish to ``relay(topic, payload)`` (see kit/bus_relay.py)."""
        self._relays.append(relay)

    def remove_relay(self, relay: Callable[[str, Any], None]) -> None:
        if relay in self._relays:
            self._relays.remove(relay)


OUTBOX_KEY = "liebian.outbox"


class OutboxWriter(Protocol):
    """Writes durable rows for a published topic in the publisher's own transaction (the
    webhook outbox), so a committed change always has its notification and a rolled-back one
    never does."""

    def __call__(self, session: Session, topic: str, payload: Any) -> None: ...

    def wants(self, session: Session, topic: str) -> bool:
        """Whether anything would be written for ``topic`` (lets set-based writers skip
        collecting ids nobody will read)."""
        ...


def publish_after_commit(session: Session, topic: str, payload: Any) -> None:
    writer: OutboxWriter | None = session.info.get(OUTBOX_KEY)
    if writer is not None:
        writer(session, topic, payload)
    bus: LocalBus | None = session.info.get(BUS_KEY)
    if bus is not None:
        after_commit(session, lambda: bus.publish(topic, payload))


def outbox_wants(session: Session, topic: str) -> bool:
    writer: OutboxWriter | None = session.info.get(OUTBOX_KEY)
    return writer is not None and writer.wants(session, topic)
