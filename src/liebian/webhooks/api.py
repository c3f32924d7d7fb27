"""HTTP for webhook endpoints and their delivery log (``/api/v1/webhooks``).

Receivers verify ``Liebian-Signature`` (see ``webhooks.signing``); the secret is shown in the
reply to create and rotate-secret only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import Field

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.kit.netguard import parse_networks
from liebian.kit.pagination import page_of
from liebian.kit.schemas import StrictModel
from liebian.webhooks import schemas, service
from liebian.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEvent
from liebian.webhooks.signing import HEADER
from liebian.webhooks.topics import TOPICS, WILDCARD

router = APIRouter(tags=["webhooks"])


class EndpointCreate(StrictModel):
    url: str = Field(min_length=1, max_length=2000)
    topics: list[str] = Field(
        min_length=1, max_length=50, description='topic names, or ["*"] for every topic'
    )
    description: str = Field(default="", max_length=200)
    active: bool = True


class EndpointPatch(StrictModel):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    topics: list[str] | None = Field(default=None, min_length=1, max_length=50)
    description: str | None = Field(default=None, max_length=200)
    active: bool | None = None


@router.get("/webhooks/topics", response_model=schemas.TopicsOut)
def topics() -> dict[str, Any]:
    """What an endpoint can subscribe to, and how requests are signed."""
    return {
        "items": [{"topic": t, "description": d} for t, d in TOPICS.items()],
        "wildcard": WILDCARD,
        "signature": {
            "header": HEADER,
            "format": "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.' + raw body)>",
        },
    }


@router.post("/webhooks", status_code=201, response_model=schemas.EndpointWithSecretOut)
def create(
    body: EndpointCreate, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    endpoint, secret = service.create(
        session, principal, runtime.cipher,
        service.EndpointInput(body.url, body.topics, body.description, body.active),
        allow_private=runtime.settings.allow_private_webhooks,
        allowed_networks=parse_networks(runtime.settings.allowed_private_networks),
    )  # fmt: skip
    return {**service.endpoint_out(endpoint), "secret": secret}


@router.get("/webhooks", response_model=schemas.EndpointList)
def list_endpoints(principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    return {"items": [service.endpoint_out(e) for e in service.list_endpoints(session, principal)]}


@router.get("/webhooks/{endpoint_id}", response_model=schemas.EndpointOut)
def get(endpoint_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    return service.endpoint_out(service.get(session, principal, endpoint_id))


@router.patch("/webhooks/{endpoint_id}", response_model=schemas.EndpointOut)
def patch(
    endpoint_id: str,
    body: EndpointPatch,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    endpoint = service.change(
        session, principal, endpoint_id,
        service.EndpointInput(body.url, body.topics, body.description, body.active),
        allow_private=runtime.settings.allow_private_webhooks,
        allowed_networks=parse_networks(runtime.settings.allowed_private_networks),
    )  # fmt: skip
    return service.endpoint_out(endpoint)


@router.delete("/webhooks/{endpoint_id}", status_code=204)
def delete(endpoint_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    service.delete(session, principal, endpoint_id)
    return Response(status_code=204)


@router.post("/webhooks/{endpoint_id}/rotate-secret", response_model=schemas.EndpointWithSecretOut)
def rotate_secret(
    endpoint_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    endpoint, secret = service.rotate_secret(session, principal, runtime.cipher, endpoint_id)
    return {**service.endpoint_out(endpoint), "secret": secret}


@router.post("/webhooks/{endpoint_id}/test", status_code=202, response_model=schemas.TestSentOut)
def send_test(endpoint_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    """Queue a ``webhook.test`` event for this endpoint; it shows up in the delivery log."""
    return {"event_id": service.send_test(session, principal, endpoint_id)}


@router.get("/webhooks/{endpoint_id}/deliveries", response_model=schemas.DeliveryPage)
def deliveries(
    endpoint_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    rows = service.deliveries(
        session, principal, endpoint_id, status=status, cursor=cursor, limit=limit
    )
    rows, next_cursor = page_of(rows, limit, id_of=lambda r: r[0].id)
    attempts = service.attempts_of(session, [d.id for d, _ in rows])
    return {
        "items": [delivery_out(d, e, attempts[d.id]) for d, e in rows],
        "next_cursor": next_cursor,
    }


@router.post(
    "/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry", response_model=schemas.RetryOut
)
def retry(
    endpoint_id: str, delivery_id: str, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    delivery = service.retry(session, principal, endpoint_id, delivery_id)
    return {
        "id": delivery.id,
        "status": delivery.status,
        "next_attempt_at": delivery.next_attempt_at,
    }


def delivery_out(
    delivery: WebhookDelivery, event: WebhookEvent, attempts: list[WebhookAttempt]
) -> dict[str, Any]:
    return {
        "id": delivery.id, "event_id": event.id, "topic": event.topic, "status": delivery.status,
        "attempts": delivery.attempts, "next_attempt_at": delivery.next_attempt_at,
        "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
        "delivered_at": delivery.delivered_at, "created_at": delivery.created_at, "data": event.data,
        "log": [
            {"number": a.number, "status_code": a.status_code, "error": a.error,
             "response_excerpt": a.response_excerpt, "at": a.created_at}
            for a in attempts
        ],
    }  # fmt: skip
