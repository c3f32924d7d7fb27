"""HTTP for payout batches (``/api/v1/payouts/…``). Reading needs the operator role; making a
batch, downloading it and recording what was paid need admin: this is money leaving."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from liebian.app.deps import PrincipalDep, SessionDep
from liebian.kit.auth import Role
from liebian.kit.errors import Invalid
from liebian.kit.pagination import page_of
from liebian.kit.schemas import error_responses
from liebian.rewards.payouts import service
from liebian.rewards.payouts.schemas import (
    BatchCreate,
    BatchOut,
    BatchPage,
    LinePage,
    OutcomesIn,
    OutcomesResult,
    PreviewOut,
)

router = APIRouter(prefix="/payouts", tags=["payouts"])

Limit = Annotated[int, Query(ge=1, le=500)]
Currency = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")]
KeyHeader = Annotated[str | None, Header(max_length=200)]


def _key(body_key: str | None, header_key: str | None) -> str:
    key = (body_key or header_key or "").strip()
    if not key:
        raise Invalid(
            "send an Idempotency-Key header (or idempotency_key in the body) so a retry cannot "
            "pay twice",
            code="idempotency_key_required",
            details={"field": "Idempotency-Key"},
        )
    return key


@router.get("/preview", response_model=PreviewOut, responses=error_responses(401, 403, 404, 422))
def preview_payouts(
    principal: PrincipalDep,
    session: SessionDep,
    campaign_id: str | None = None,
    currency: Currency = None,
    min_amount: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
) -> PreviewOut:
    """Who a batch made now would pay, and who is still below the minimum. Writes nothing."""
    principal.require(Role.operator)
    return service.preview(session, principal, campaign_id, currency, min_amount)


@router.post(
    "/batches",
    response_model=BatchOut,
    status_code=201,
    responses={
        200: {"model": BatchOut, "description": "a replay: the batch the first call made"},
        **error_responses(401, 403, 404, 409, 422),
    },
)
def create_batch(
    body: BatchCreate,
    response: Response,
    principal: PrincipalDep,
    session: SessionDep,
    idempotency_key: KeyHeader = None,
) -> BatchOut:
    """Take every settled, unpaid cash entry at or above the minimum per payee into a new
    batch. A repeat with the same key answers 200 with the same batch; 409 ``nothing_to_pay``
    when no payee reaches the minimum."""
    principal.require(Role.admin)
    batch, created = service.create_batch(
        session, principal, body, _key(body.idempotency_key, idempotency_key)
    )
    if not created:
        response.status_code = 200
    return service.present_batch(session, batch)


@router.get("/batches", response_model=BatchPage, responses=error_responses(401, 403, 422))
def list_batches(
    principal: PrincipalDep, session: SessionDep, cursor: str | None = None, limit: Limit = 50
) -> BatchPage:
    principal.require(Role.operator)
    rows, next_cursor = page_of(service.list_batches(session, principal, cursor, limit), limit)
    return BatchPage(
        items=[service.present_batch(session, b) for b in rows], next_cursor=next_cursor
    )


@router.get(
    "/batches/{batch_id}", response_model=BatchOut, responses=error_responses(401, 403, 404)
)
def get_batch(batch_id: str, principal: PrincipalDep, session: SessionDep) -> BatchOut:
    principal.require(Role.operator)
    return service.present_batch(session, service.get_batch(session, principal, batch_id))


@router.get(
    "/batches/{batch_id}/lines",
    response_model=LinePage,
    responses=error_responses(401, 403, 404, 422),
)
def list_lines(
    batch_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern="^(pending|paid|failed)$")] = None,
    cursor: str | None = None,
    limit: Limit = 100,
) -> LinePage:
    principal.require(Role.operator)
    rows, next_cursor = page_of(
        service.list_lines(session, principal, batch_id, cursor, limit, status), limit
    )
    return LinePage(items=service.present_lines(session, rows), next_cursor=next_cursor)


@router.get(
    "/batches/{batch_id}/export.csv",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "one row per line, formula-safe"},
        **error_responses(401, 403, 404),
    },
)
def export_batch(batch_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    """The batch for finance. Downloading it again gives the same lines: a batch's entries
    belong to it alone, so nothing is paid twice however often it is downloaded."""
    principal.require(Role.admin)
    principal.require_step_up("downloading a payout batch")
    filename, body = service.export_csv(session, principal, batch_id)
    return Response(
        body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/batches/{batch_id}/outcomes",
    response_model=OutcomesResult,
    responses=error_responses(401, 403, 404, 409, 422),
)
def record_outcomes(
    batch_id: str,
    body: OutcomesIn,
    principal: PrincipalDep,
    session: SessionDep,
    idempotency_key: KeyHeader = None,
) -> OutcomesResult:
    """Mark lines paid or failed (each once). A failed line's entries go to the next batch.
    When no line is pending any more the batch is closed."""
    principal.require(Role.admin)
    principal.require_step_up("marking payouts paid")
    result = service.record_outcomes(
        session, principal, batch_id, body, _key(body.idempotency_key, idempotency_key)
    )
    return OutcomesResult(
        batch=service.present_batch(session, result.batch),
        changed=result.changed,
        unchanged=result.unchanged,
    )
