"""Event storage backends behind one interface (see base.EventStore)."""

from liebian.events.store.base import COLUMN_NAMES, Alias, EventRow, EventStore, InsertResult
from liebian.events.store.factory import default_events_path, open_event_store

__all__ = [
    "COLUMN_NAMES",
    "Alias",
    "EventRow",
    "EventStore",
    "InsertResult",
    "default_events_path",
    "open_event_store",
]
