"""The transactional outbox: webhook events written in the publisher's transaction.

``kit.bus.publish_after_commit`` hands every published topic to the writer installed on the
session factory; for webhook topics it inserts one ``webhook_events`` row and one pending
``webhook_deliveries`` row per subscribed, active endpoint, before the commit. Call sites keep
calling ``publish_after_commit`` and never learn about webhooks. Workspaces without endpoints
cost one indexed lookup per published topic and write nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from liebian.kit.bus import OUTBOX_KEY
from liebian.kit.clock import utcnow
from liebian.kit.ids import new_id
from liebian.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from liebian.webhooks.topics import BUILDERS, PRODUCES, TEST, subscribed


class WebhookOutbox:
    def wants(self, session: Session, topic: str) -> bool:
        produced = PRODUCES.get(topic)
        if not produced:
            return False
        rows = session.execute(
            select(WebhookEndpoint.topics).where(WebhookEndpoint.active.is_(True))
        ).scalars()
        return any(subscribed(topics, t) for topics in rows for t in produced if t != TEST)

    def __call__(self, session: Session, topic: str, payload: Any) -> None:
        builder = BUILDERS.get(topic)
        if builder is None:
            return
        workspace_id = payload.get("workspace_id") if isinstance(payload, dict) else None
        if workspace_id is not None and not _endpoints(session, workspace_id):
            return  # nobody listens in this workspace: do not even build the payload
        if workspace_id is None and not self.wants(session, topic):
            return
        write_events(session, builder(session, payload))


def _endpoints(session: Session, workspace_id: str) -> list[tuple[str, list[str]]]:
    rows = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.topics).where(
            WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.active.is_(True)
        )
    )
    return [(endpoint_id, topics) for endpoint_id, topics in rows]


def write_events(
    session: Session,
    triples: Iterable[tuple[str, str, dict[str, Any]]],
    *,
    only_endpoint: str | None = None,
) -> list[str]:
    """Insert the events somebody subscribes to and their deliveries; returns event ids."""
    now = utcnow()
    cache: dict[str, list[tuple[str, list[str]]]] = {}
    events: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for workspace_id, topic, data in triples:
        if workspace_id not in cache:
            cache[workspace_id] = _endpoints(session, workspace_id)
        targets = [
            endpoint_id
            for endpoint_id, topics in cache[workspace_id]
            if subscribed(topics, topic) and only_endpoint in (None, endpoint_id)
        ]
        if not targets:
            continue
        event_id = new_id("whe")
        events.append(
            {"id": event_id, "workspace_id": workspace_id, "topic": topic, "data": data,
             "created_at": now}
        )  # fmt: skip
        deliveries += [
            {"id": new_id("whd"), "workspace_id": workspace_id, "endpoint_id": endpoint_id,
             "event_id": event_id, "status": "pending", "attempts": 0, "next_attempt_at": now,
             "created_at": now}
            for endpoint_id in targets
        ]  # fmt: skip
    if events:
        session.execute(insert(WebhookEvent), events)
        session.execute(insert(WebhookDelivery), deliveries)
    return [e["id"] for e in events]


def install(sessions: sessionmaker[Session]) -> None:
    """Put the writer into every session the factory makes (server and CLI alike)."""
    info = sessions.kw.setdefault("info", {})
    info[OUTBOX_KEY] = WebhookOutbox()
