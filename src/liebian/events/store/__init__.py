"""Event storage backends behind one interface (see base.EventStore)."""

from liebian.events.store.base import (
    COLUMN_NAMES,
    Alias,
    EventRow,
    EventStore,
    InsertResult,
    PersonEvent,
    erased_marker,
)
from liebian.events.store.factory import default_events_path, open_event_store

__all__ = [
    "COLUMN_NAMES",
    "Alias",
    "EventRow",
    "EventStore",
    "InsertResult",
    "PersonEvent",
    "default_events_path",
    "erased_marker",
    "open_event_store",
]
