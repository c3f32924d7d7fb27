"""HTTP for the risk review queue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from liebian.app.deps import PrincipalDep, SessionDep
from liebian.campaigns import repository
from liebian.campaigns.api import referral_items
from liebian.campaigns.models import Referral
from liebian.campaigns.schemas import ReferralList, ReferralOut
from liebian.kit.schemas import StrictModel
from liebian.risk import service

router = APIRouter(tags=["risk"])


class Verdict(StrictModel):
    note: str | None = Field(default=None, max_length=500)


@router.get("/risk/reviews", response_model=ReferralList)
def review_queue(
    principal: PrincipalDep,
    session: SessionDep,
    status: str = "pending",
    campaign_id: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    rows = service.queue(
        session, principal, status=status, campaign_id=campaign_id, limit=max(1, min(limit, 500))
    )
    referrals = repository.by_ids(session, Referral, {r.referral_id for r in rows})
    ordered = [referrals[r.referral_id] for r in rows if r.referral_id in referrals]
    return {"items": referral_items(session, ordered)}


@router.post("/risk/reviews/{referral_id}/approve", response_model=ReferralOut)
def approve(
    referral_id: str, principal: PrincipalDep, session: SessionDep, body: Verdict | None = None
) -> dict[str, Any]:
    referral = service.review(
        session, principal, referral_id, approve=True, note=(body or Verdict()).note
    )
    return referral_items(session, [referral])[0]


@router.post("/risk/reviews/{referral_id}/reject", response_model=ReferralOut)
def reject(
    referral_id: str, principal: PrincipalDep, session: SessionDep, body: Verdict | None = None
) -> dict[str, Any]:
    """Rejecting reverses every reward the referral produced."""
    referral = service.review(
        session, principal, referral_id, approve=False, note=(body or Verdict()).note
    )
    return referral_items(session, [referral])[0]
