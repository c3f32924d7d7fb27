"""Webhook endpoints (create, change, rotate the secret, delete) and the delivery log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.kit.netguard import Network
from liebian.kit.pagination import paginate
from liebian.webhooks import signing
from liebian.webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from liebian.webhooks.outbox import write_events
from liebian.webhooks.topics import TEST, TOPICS, WILDCARD
from liebian.webhooks.urls import check_url

MAX_ENDPOINTS = 20
DELIVERY_STATUSES = ("pending", "delivered", "dead")


@dataclass(frozen=True, slots=True)
class EndpointInput:
    url: str | None = None
    topics: list[str] | None = None
    description: str | None = None
    active: bool | None = None


def check_topics(topics: list[str]) -> list[str]:
    if not topics:
        raise Invalid(
            'topics must name at least one topic, or be ["*"] for all',
            code="invalid_topics",
            details={"field": "topics", "allowed": [WILDCARD, *TOPICS]},
        )
    unknown = sorted({t for t in topics if t != WILDCARD and t not in TOPICS})
    if unknown:
        raise Invalid(
            f"unknown topic(s): {', '.join(unknown)}",
            code="invalid_topics",
            details={"field": "topics", "unknown": unknown, "allowed": [WILDCARD, *TOPICS]},
        )
    return sorted(set(topics))


def create(
    session: Session,
    principal: Principal,
    cipher: PiiCipher,
    data: EndpointInput,
    *,
    allow_private: bool,
    allowed_networks: tuple[Network, ...] = (),
) -> tuple[WebhookEndpoint, str]:
    """The endpoint and its signing secret (returned this once, stored encrypted)."""
    principal.require(Role.admin)
    assert data.url is not None and data.topics is not None
    url = check_url(data.url, allow_private=allow_private, allowed=allowed_networks)
    topics = check_topics(data.topics)
    count = len(
        session.scalars(
            select(WebhookEndpoint.id).where(WebhookEndpoint.workspace_id == principal.workspace_id)
        ).all()
    )
    if count >= MAX_ENDPOINTS:
        raise Conflict(
            f"a workspace can have at most {MAX_ENDPOINTS} webhook endpoints; delete one first",
            code="too_many_webhooks",
        )
    secret = signing.new_secret()
    now = utcnow()
    endpoint = WebhookEndpoint(
        id=new_id("whk"), workspace_id=principal.workspace_id, url=url, topics=topics,
        description=(data.description or "")[:200], secret_enc=cipher.encrypt(secret),
        secret_hint=secret[:10], active=True if data.active is None else data.active,
        created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def get(session: Session, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    principal.require(Role.operator)
    endpoint = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.workspace_id == principal.workspace_id,
        )
    ).first()
    if endpoint is None:
        raise NotFound(
            f"no webhook endpoint {endpoint_id!r} in this workspace", code="webhook_not_found"
        )
    return endpoint


def list_endpoints(session: Session, principal: Principal) -> list[WebhookEndpoint]:
    principal.require(Role.operator)
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.workspace_id == principal.workspace_id)
            .order_by(WebhookEndpoint.id)
        )
    )


def change(
    session: Session,
    principal: Principal,
    endpoint_id: str,
    data: EndpointInput,
    *,
    allow_private: bool,
    allowed_networks: tuple[Network, ...] = (),
) -> WebhookEndpoint:
    principal.require(Role.admin)
    endpoint = get(session, principal, endpoint_id)
    if data.url is not None:
        endpoint.url = check_url(data.url, allow_private=allow_private, allowed=allowed_networks)
    if data.topics is not None:
        endpoint.topics = check_topics(data.topics)
    if data.description is not None:
        endpoint.description = data.description[:200]
    if data.active is not None:
        endpoint.active = data.active
    endpoint.updated_at = utcnow()
    session.flush()
    return endpoint


def rotate_secret(
    session: Session, principal: Principal, cipher: PiiCipher, endpoint_id: str
) -> tuple[WebhookEndpoint, str]:
    principal.require(Role.admin)
    endpoint = get(session, principal, endpoint_id)
    secret = signing.new_secret()
    endpoint.secret_enc = cipher.encrypt(secret) or ""
    endpoint.secret_hint = secret[:10]
    endpoint.updated_at = utcnow()
    session.flush()
    return endpoint, secret


def delete(session: Session, principal: Principal, endpoint_id: str) -> None:
    principal.require(Role.admin)
    endpoint = get(session, principal, endpoint_id)
    # The delivery log goes with it (ON DELETE CASCADE); events other endpoints share stay.
    session.delete(endpoint)
    session.flush()


def send_test(session: Session, principal: Principal, endpoint_id: str) -> str:
    """Queue a ``webhook.test`` event for this endpoint only; returns the event id."""
    principal.require(Role.admin)
    endpoint = get(session, principal, endpoint_id)
    if not endpoint.active:
        raise Conflict("this endpoint is inactive; activate it first", code="webhook_inactive")
    ids = write_events(
        session,
        [
            (
                endpoint.workspace_id,
                TEST,
                {"endpoint_id": endpoint.id, "message": "liebian 测试事件"},
            )
        ],
        only_endpoint=endpoint.id,
    )
    return ids[0]


def deliveries(
    session: Session,
    principal: Principal,
    endpoint_id: str,
    *,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> list[tuple[WebhookDelivery, WebhookEvent]]:
    endpoint = get(session, principal, endpoint_id)
    if status is not None and status not in DELIVERY_STATUSES:
        raise Invalid(
            f"status must be one of {', '.join(DELIVERY_STATUSES)}",
            code="invalid_status",
            details={"field": "status"},
        )
    stmt: Any = (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
    )
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    rows = session.execute(paginate(stmt, WebhookDelivery.id, cursor, limit)).all()
    return [(d, e) for d, e in rows]


def attempts_of(session: Session, delivery_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
    out: dict[str, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    if delivery_ids:
        for attempt in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.number)
        ):
            out[attempt.delivery_id].append(attempt)
    return out


def retry(
    session: Session, principal: Principal, endpoint_id: str, delivery_id: str
) -> WebhookDelivery:
    """Send a dead (or pending) delivery again now; if that attempt fails too it is dead again."""
    principal.require(Role.admin)
    endpoint = get(session, principal, endpoint_id)
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status.in_(("pending", "dead")),
        )
        .values(status="pending", next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    delivery = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id)
        .execution_options(populate_existing=True)
    ).first()
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id!r} for this endpoint", code="delivery_not_found")
    if not result.rowcount:  # type: ignore[attr-defined]
        raise Conflict("this delivery already succeeded", code="delivery_delivered")
    return delivery


def endpoint_out(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id, "url": endpoint.url, "topics": endpoint.topics,
        "description": endpoint.description, "active": endpoint.active,
        "secret_hint": endpoint.secret_hint + "…", "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }  # fmt: skip
