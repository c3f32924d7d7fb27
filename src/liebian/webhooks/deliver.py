"""The deliverer: claims due deliveries, POSTs them signed, records every attempt.

Safe with several workers (processes or threads): a delivery is claimed by a conditional
UPDATE that moves ``next_attempt_at`` forward by a lease, so exactly one worker posts it; if
that worker dies, the row is due again when the lease ends. Receivers may still see a
delivery twice (a crash after their 2xx and before our commit), so every POST carries the
event id in ``Liebian-Event-Id`` for them to dedupe on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.db import session_scope
from liebian.kit.ids import new_id
from liebian.kit.netguard import (
    ForbiddenAddress,
    Network,
    PinnedTransport,
    Resolver,
    system_resolver,
)
from liebian.webhooks import signing
from liebian.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

log = logging.getLogger("liebian.webhooks")
USER_AGENT = "liebian-webhooks/1"
MAX_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 8
    backoff_seconds: float = 30.0
    timeout_seconds: float = 10.0
    allow_private: bool = False
    # Private networks the operator allows (LIEBIAN_ALLOWED_PRIVATE_NETWORKS).
    allowed_networks: tuple[Network, ...] = ()
    # How long a claimed delivery is left alone before another worker may take it over.
    lease_seconds: float = 120.0

    def wait_after(self, attempt: int) -> timedelta:
        """Exponential: base, 2×base, 4×base… capped, after the ``attempt``-th failure."""
        return min(timedelta(seconds=self.backoff_seconds * 2 ** (attempt - 1)), MAX_BACKOFF)


@dataclass(frozen=True, slots=True)
class DeliveryRun:
    delivered: int = 0
    failed: int = 0
    dead: int = 0


@dataclass(frozen=True, slots=True)
class _Job:
    delivery_id: str
    attempts: int
    event_id: str
    topic: str
    url: str
    secret: str
    body: bytes


def body_of(event: WebhookEvent) -> bytes:
    return json.dumps(
        {
            "id": event.id,
            "type": event.topic,
            "workspace_id": event.workspace_id,
            "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
            "data": event.data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    ).encode()


def deliver_due(
    sessions: sessionmaker[Session],
    cipher: PiiCipher,
    policy: DeliveryPolicy,
    *,
    client: httpx.Client | None = None,
    now: datetime | None = None,
    limit: int = 50,
) -> DeliveryRun:
    now = now or utcnow()
    jobs = _claim(sessions, cipher, policy, now, limit)
    if not jobs:
        return DeliveryRun()
    own = client is None
    http = client or delivery_client(policy)
    delivered = failed = dead = 0
    try:
        for job in jobs:
            outcome = _post(http, job, policy)
            state = _record(sessions, job, policy, *outcome)
            delivered += state == "delivered"
            failed += state == "pending"
            dead += state == "dead"
    finally:
        if own:
            http.close()
    return DeliveryRun(delivered, failed, dead)


def _claim(
    sessions: sessionmaker[Session],
    cipher: PiiCipher,
    policy: DeliveryPolicy,
    now: datetime,
    limit: int,
) -> list[_Job]:
    jobs: list[_Job] = []
    with session_scope(sessions) as session:
        rows = session.execute(
            select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                WebhookEndpoint.active.is_(True),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        ).all()
        lease = now + timedelta(seconds=policy.lease_seconds)
        for delivery, event, endpoint in rows:
            claimed = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery.id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=lease)
                .execution_options(synchronize_session=False)
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                continue  # another worker has it
            jobs.append(
                _Job(
                    delivery.id, delivery.attempts, event.id, event.topic, endpoint.url,
                    cipher.decrypt(endpoint.secret_enc) or "", body_of(event),
                )
            )  # fmt: skip
    return jobs


def delivery_client(policy: DeliveryPolicy, resolver: Resolver = system_resolver) -> httpx.Client:
    """The HTTP client deliveries use: each request resolves its host once, refuses it when
    any address is not allowed, and connects to the address it checked (no DNS rebinding
    between the check and the connection; kit/netguard.py)."""
    transport = PinnedTransport(
        allowed=policy.allowed_networks, allow_all=policy.allow_private, resolver=resolver
    )
    return httpx.Client(timeout=policy.timeout_seconds, follow_redirects=False, transport=transport)


def _post(
    http: httpx.Client, job: _Job, policy: DeliveryPolicy
) -> tuple[int | None, str | None, str | None]:
    """(status code, error, response excerpt) of one POST."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.HEADER: signing.header_value(job.secret, job.body),
        "Liebian-Event": job.topic,
        "Liebian-Event-Id": job.event_id,
        "Liebian-Delivery-Id": job.delivery_id,
    }
    try:
        response = http.post(job.url, content=job.body, headers=headers)
    except ForbiddenAddress as exc:
        return None, f"refused: {exc}"[:500], None
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500], None
    excerpt = response.text[:500] if response.content else None
    if 200 <= response.status_code < 300:
        return response.status_code, None, excerpt
    return response.status_code, f"HTTP {response.status_code}", excerpt


def _record(
    sessions: sessionmaker[Session],
    job: _Job,
    policy: DeliveryPolicy,
    status_code: int | None,
    error: str | None,
    excerpt: str | None,
) -> str:
    number = job.attempts + 1
    now = utcnow()
    values: dict[str, Any] = {
        "attempts": number,
        "last_status_code": status_code,
        "last_error": error,
    }
    if error is None:
        values.update(status="delivered", delivered_at=now)
    elif number >= policy.max_attempts:
        values.update(status="dead")
        log.warning(
            "webhook delivery %s is dead after %d attempts: %s", job.delivery_id, number, error
        )
    else:
        values.update(next_attempt_at=now + policy.wait_after(number))
    with session_scope(sessions) as session:
        recorded = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == job.delivery_id,
                WebhookDelivery.attempts == job.attempts,
                WebhookDelivery.status == "pending",
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if not recorded.rowcount:  # type: ignore[attr-defined]
            return "skipped"  # deleted meanwhile, or a worker whose lease ran out got here first
        session.add(
            WebhookAttempt(
                id=new_id("wha"), delivery_id=job.delivery_id, number=number,
                status_code=status_code, error=error, response_excerpt=excerpt, created_at=now,
            )
        )  # fmt: skip
    return str(values.get("status", "pending"))
