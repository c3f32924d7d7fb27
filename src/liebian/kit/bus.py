"""In-process change notifications (cache invalidation), published only after commit.

The bus rides on the session factory's ``info`` so services reach it through the session they
were given, without globals. In scale mode a Redis relay subscribes here and re-publishes to
the other processes (and back).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from liebian.kit.db import after_commit

BUS_KEY = "liebian.bus"


class LocalBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None:
        self._subscribers[topic].append(callback)

    def publish(self, topic: str, payload: Any) -> None:
        for callback in list(self._subscribers.get(topic, ())):
            callback(payload)


def publish_after_commit(session: Session, topic: str, payload: Any) -> None:
    bus: LocalBus | None = session.info.get(BUS_KEY)
    if bus is not None:
        after_commit(session, lambda: bus.publish(topic, payload))
