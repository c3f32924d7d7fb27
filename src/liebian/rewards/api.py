"""HTTP for the rewards ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Response
from pydantic import Field

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.campaigns import repository as campaign_repo
from liebian.contacts import repository as contacts_repo
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact
from liebian.kit.auth import Role
from liebian.kit.clock import utcnow
from liebian.kit.errors import Gone, Invalid
from liebian.kit.pagination import encode_cursor
from liebian.kit.schemas import StrictModel, error_responses
from liebian.rewards import schemas, service
from liebian.rewards.models import RewardEntry

router = APIRouter(tags=["rewards"])


class RewardCreate(StrictModel):
    external_id: str = Field(min_length=1, max_length=128)
    kind: Literal["coupon", "points", "gift", "cash"]
    amount: int = Field(ge=1, le=service.MAX_AMOUNT, description="integer 分 / points / units")
    name: str = Field(default="", max_length=64)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    campaign_id: str | None = Field(default=None, max_length=40)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    status: Literal["pending", "approved", "issued"] = "pending"
    available_at: datetime | None = None


class Reverse(StrictModel):
    reason: str = Field(default="reversed by operator", max_length=200)


def entry_out(entry: RewardEntry, external_id: str | None) -> dict[str, Any]:
    return {
        "id": entry.id, "campaign_id": entry.campaign_id, "external_id": external_id,
        "kind": entry.kind, "name": entry.name, "amount": entry.amount, "currency": entry.currency,
        "status": entry.status, "reason": entry.reason, "coupon_code": entry.coupon_code,
        "referral_id": entry.referral_id, "order_id": entry.order_id, "idempotency_key": entry.idempotency_key,
        "available_at": entry.available_at, "created_at": entry.created_at, "approved_at": entry.approved_at,
        "issued_at": entry.issued_at, "reversed_at": entry.reversed_at, "reversal_reason": entry.reversal_reason,
        "meta": entry.meta,
    }  # fmt: skip


def _external_ids(session: SessionDep, entries: list[RewardEntry]) -> dict[str, str]:
    people = campaign_repo.by_ids(session, Contact, {e.contact_id for e in entries})
    return {cid: c.external_id for cid, c in people.items()}


@router.get("/rewards", response_model=schemas.RewardPage)
def list_rewards(
    principal: PrincipalDep,
    session: SessionDep,
    campaign_id: str | None = None,
    external_id: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    limit = max(1, min(limit, 500))
    contact_id = None
    if external_id:
        contact = contacts_repo.by_external_id(session, principal.workspace_id, external_id)
        if contact is None:
            return {"items": [], "next_cursor": None}
        contact_id = contact.id
    rows = service.list_entries(
        session, principal.workspace_id, campaign_id=campaign_id, contact_id=contact_id, status=status,
        kind=kind, cursor=cursor, limit=limit,
    )  # fmt: skip
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].id)
    ids = _external_ids(session, rows)
    return {
        "items": [entry_out(e, ids.get(e.contact_id)) for e in rows],
        "next_cursor": next_cursor,
    }


@router.post(
    "/rewards",
    status_code=201,
    response_model=schemas.RewardOut,
    responses={
        200: {
            "model": schemas.RewardOut,
            "description": "a replay: the entry the first call with this key made",
        }
    },
)
def create_reward(
    body: RewardCreate,
    response: Response,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Grant a reward by hand or from your system. Send an ``Idempotency-Key`` header (or
    ``idempotency_key``): repeats answer 200 with the entry the first call made."""
    principal.require(Role.operator)
    key = body.idempotency_key or idempotency_key
    if not key:
        raise Invalid(
            "send an Idempotency-Key header (or idempotency_key) so a retry cannot pay twice",
            code="idempotency_key_required",
        )
    if body.campaign_id:
        from liebian.campaigns.service import get as get_campaign

        get_campaign(session, principal.workspace_id, body.campaign_id)
    contact = contacts.upsert(
        session, runtime.cipher, principal.workspace_id, contacts.ContactInput(body.external_id)
    )
    entry, created = service.grant(
        session,
        service.Grant(
            workspace_id=principal.workspace_id, contact_id=contact.id, key=f"api:{key}", kind=body.kind,
            amount=body.amount, name=body.name, campaign_id=body.campaign_id, currency=body.currency,
            status=body.status, available_at=body.available_at, reason="manual",
        ),
    )  # fmt: skip
    if not created:
        response.status_code = 200
    return entry_out(entry, contact.external_id)


@router.get("/rewards/balances", response_model=schemas.BalancesOut)
def balances(external_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    contact = contacts.get_by_external_id(session, principal.workspace_id, external_id)
    return {
        "external_id": external_id,
        "balances": service.balances(session, principal.workspace_id, contact.id),
    }


@router.get(
    "/rewards/payouts.csv",
    deprecated=True,
    status_code=410,
    responses=error_responses(410),
)
def payouts(principal: PrincipalDep) -> None:
    """Replaced by payout batches: a CSV of all issued cash paid the same commission again
    at every export. Use ``POST /api/v1/payouts/batches``, then its ``export.csv``."""
    raise Gone(
        "payouts.csv is replaced by payout batches, which pay each entry once: create one with "
        "POST /api/v1/payouts/batches, download GET /api/v1/payouts/batches/{id}/export.csv, "
        "then report paid/failed lines with POST /api/v1/payouts/batches/{id}/outcomes",
        code="use_payout_batches",
    )


@router.post("/rewards/settle", response_model=schemas.SettleOut)
def settle(principal: PrincipalDep, session: SessionDep) -> dict[str, int]:
    """Run the settlement job now (it also runs on the scheduler)."""
    principal.require(Role.admin)
    result = service.settle(session, utcnow(), workspace_id=principal.workspace_id)
    return {"approved": result.approved, "issued": result.issued}


@router.get("/rewards/{entry_id}", response_model=schemas.RewardOut)
def get_reward(entry_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    entry = service.get_entry(session, principal.workspace_id, entry_id)
    return entry_out(entry, _external_ids(session, [entry]).get(entry.contact_id))


def _move(
    entry_id: str,
    action: str,
    principal: PrincipalDep,
    session: SessionDep,
    reason: str | None = None,
) -> dict[str, Any]:
    principal.require(Role.operator)
    entry, changed = service.transition(
        session, principal.workspace_id, entry_id, action, reason=reason
    )
    out = entry_out(entry, _external_ids(session, [entry]).get(entry.contact_id))
    out["changed"] = changed
    return out


@router.post("/rewards/{entry_id}/approve", response_model=schemas.RewardMoved)
def approve(entry_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    return _move(entry_id, "approve", principal, session)


@router.post("/rewards/{entry_id}/issue", response_model=schemas.RewardMoved)
def issue(entry_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    """Idempotent: issuing an issued entry answers 200 with ``changed: false``."""
    return _move(entry_id, "issue", principal, session)


@router.post("/rewards/{entry_id}/reverse", response_model=schemas.RewardMoved)
def reverse(
    entry_id: str, principal: PrincipalDep, session: SessionDep, body: Reverse | None = None
) -> dict[str, Any]:
    return _move(entry_id, "reverse", principal, session, reason=(body or Reverse()).reason)
