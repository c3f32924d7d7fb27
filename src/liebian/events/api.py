"""HTTP for events: server-side ingestion (Bearer key) and identity aliases."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.contacts import identity
from liebian.contacts.schemas import errors
from liebian.events import service
from liebian.events.schemas import MAX_BATCH, ONE_EVENT, IdentifyIn, IngestResult
from liebian.events.store.base import Alias
from liebian.kit.auth import Role
from liebian.kit.clock import utcnow

router = APIRouter(tags=["events"])
# Documented by hand: the body is read raw so one bad event cannot sink a whole batch.
_EVENT_SCHEMA = ONE_EVENT.json_schema()


@router.post(
    "/events",
    response_model=IngestResult,
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            _EVENT_SCHEMA,
                            {"type": "array", "items": _EVENT_SCHEMA, "maxItems": MAX_BATCH},
                        ]
                    }
                }
            },
        }
    },
)
async def ingest_events(
    request: Request,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="a key per request: events without event_id get ids derived from it, "
            "so resending the same body with the same key stores each event once",
        ),
    ] = None,
) -> JSONResponse:
    """One event, or a batch of up to 10,000 (a JSON array or {"events": [...]}).

    A batch stores its valid events and lists the bad ones by index (202 with `rejected`);
    when none is valid the answer is 422. The same `event_id` is stored once; `event_ids`
    lists the id each accepted event got. To retry safely, send `event_id`, `ts` or an
    `Idempotency-Key` header.
    """
    principal.require(Role.operator)
    key = service.check_idempotency_key(idempotency_key)
    raw = await request.body()
    assert runtime.spool is not None and runtime.event_store is not None
    accepted = await run_in_threadpool(
        service.ingest,
        workspace_id=principal.workspace_id,
        raw=raw,
        spool=runtime.spool,
        now=utcnow(),
        hooks=runtime.extras.get("event_hooks"),
        idempotency_key=key,
    )
    return JSONResponse(accepted.result.model_dump(), status_code=202)


@router.post("/identify", status_code=204, responses=errors(403, 409, 422))
def identify(
    body: IdentifyIn, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> None:
    """Tie a visitor to a user (on sign-up): their earlier clicks and visits become the user's.

    The contact for ``user_id`` is created on first sight; the visitor and any other
    ``aliases`` become its aliases and ``$set`` sets custom attributes (unknown key or wrong
    type: 422, nothing written)."""
    principal.require(Role.operator)
    assert runtime.event_store is not None
    when = body.ts or utcnow()
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    identity.identify(
        session, runtime.cipher, principal.workspace_id, user_id=body.user_id,
        visitor_id=body.visitor_id, aliases=body.aliases, set_values=body.set_attributes,
        ts=when,
    )  # fmt: skip
    session.flush()
    # The engine's identity map, after the OLTP checks passed (nothing half-written on a 4xx).
    runtime.event_store.add_aliases(
        [Alias(principal.workspace_id, body.visitor_id, body.user_id, when.replace(tzinfo=None))]
    )
