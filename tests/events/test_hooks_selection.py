"""The request path's choice of hooks lines: the events some consumer names or selects, the
same whether or not the selectors' shared need (``select_needs``) lets it skip their calls."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from liebian.automation.triggers import JourneyEvents
from liebian.contacts.people_hook import PeopleConsumer
from liebian.events.hooks import HookRegistry, open_hooks


class Everything:
    """A selecting consumer that names no need: it must see every event."""

    name = "everything"
    events: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.asked = 0

    def select(self, event: Any) -> bool:
        self.asked += 1
        return event.get("channel") == "pick-me"

    def __call__(self, session: Any, events: Any) -> None:
        pass


def _events(rng: random.Random) -> list[dict[str, Any]]:
    names = ["page_view", "visit", "signup", "purchase", "course_done", "click"]
    events = []
    for i in range(2_000):
        event: dict[str, Any] = {"event": rng.choice(names), "event_id": f"e{i}"}
        if rng.random() < 0.3:
            event["user_id"] = rng.choice([f"u{rng.randrange(50)}", "", None])
        if rng.random() < 0.5:
            event["visitor_id"] = f"v{rng.randrange(80)}"
        if rng.random() < 0.1:
            event["properties"] = {"$set": {"plan": "pro"}}
        if rng.random() < 0.05:
            event["channel"] = "pick-me"
        event["ts"] = "2026-12-03T15:00:00+00:00"
        events.append(event)
    return events


def _chosen(lines: bytes) -> list[str]:
    return [orjson.loads(line)["event_id"] for line in lines.splitlines()]


def _reference(events: list[dict[str, Any]], registry: HookRegistry) -> list[str]:
    """Every selector asked about every event (fresh consumers: the LRU starts empty)."""
    return [
        e["event_id"]
        for e in events
        if e["event"] in registry.names or any(select(e) for select in registry.selectors)
    ]


def _registry(*consumers: Any) -> HookRegistry:
    registry = HookRegistry()
    for consumer in consumers:
        registry.register(consumer)
    return registry


def test_the_shared_need_skips_calls_but_not_events(tmp_path: Path) -> None:
    events = _events(random.Random(5))
    journeys = JourneyEvents()
    journeys.names = frozenset({"course_done"})
    queue = open_hooks(tmp_path, _registry(PeopleConsumer(None), journeys))
    assert queue.registry.selectors_need == "user_id"
    chosen = _chosen(queue.lines("ws", events, datetime.now(UTC)))
    again = JourneyEvents()
    again.names = journeys.names
    assert chosen == _reference(events, _registry(PeopleConsumer(None), again))
    assert any(e["event"] == "course_done" for e in events if e["event_id"] in set(chosen))


def test_a_selector_without_a_need_sees_every_event(tmp_path: Path) -> None:
    events = _events(random.Random(6))
    everything = Everything()
    queue = open_hooks(tmp_path, _registry(PeopleConsumer(None), everything))
    assert queue.registry.selectors_need is None
    chosen = _chosen(queue.lines("ws", events, datetime.now(UTC)))
    assert everything.asked > 0
    assert chosen == _reference(events, _registry(PeopleConsumer(None), Everything()))
    assert {e["event_id"] for e in events if e.get("channel") == "pick-me"} <= set(chosen)
