"""Checks shared by the analytics queries."""

from __future__ import annotations

from collections.abc import Iterable

from liebian.events.names import SYSTEM_EVENTS
from liebian.events.store.base import EventStore
from liebian.kit.errors import Invalid


def require_events(store: EventStore, workspace_id: str, names: Iterable[str]) -> None:
    """Raise ``Invalid`` naming every event this workspace has never recorded.

    A typo in an event name would otherwise answer an all-zero report that looks real. The
    events liebian writes itself (clicks, fission actions) are always known: before the first
    one, their report is zeros.
    """
    wanted = [n for n in dict.fromkeys(names) if n not in SYSTEM_EVENTS]
    if not wanted:
        return
    known = store.event_names(workspace_id)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise Invalid(
            f"unknown event(s) in this workspace: {', '.join(unknown)}",
            code="unknown_event",
            details={"events": unknown},
        )


def ratio(num: int | float, den: int | float) -> float:
    return round(num / den, 6) if den else 0.0


def none_if_empty(value: str | None) -> str | None:
    return value if value else None
