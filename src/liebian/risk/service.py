"""Persisted risk decisions and the review queue.

Held referrals wait here for a human. Approving one lets it count (and earn) like any other;
rejecting one reverses every ledger entry it produced, then recomputes the referrer's tiers so a
milestone that still holds without it is granted again from the remaining referrals.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.campaigns.models import Referral
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.errors import Conflict, NotFound
from liebian.kit.ids import new_id
from liebian.risk.models import RiskAssessment
from liebian.risk.scoring import Assessment, Decision


def record(
    session: Session, referral: Referral, assessment: Assessment, decision: Decision
) -> RiskAssessment:
    row = RiskAssessment(
        id=new_id("rsk"),
        workspace_id=referral.workspace_id,
        campaign_id=referral.campaign_id,
        referral_id=referral.id,
        score=assessment.score,
        reasons=assessment.reasons(),
        decision=decision,
        review_status="pending" if decision == "held" else "none",
        created_at=utcnow(),
    )
    session.add(row)
    return row


def for_referrals(session: Session, referral_ids: list[str]) -> dict[str, RiskAssessment]:
    if not referral_ids:
        return {}
    rows = session.scalars(
        select(RiskAssessment).where(RiskAssessment.referral_id.in_(referral_ids))
    )
    return {r.referral_id: r for r in rows}


def queue(
    session: Session,
    principal: Principal,
    *,
    status: str = "pending",
    campaign_id: str | None = None,
    limit: int = 100,
) -> list[RiskAssessment]:
    principal.require(Role.operator)
    stmt = select(RiskAssessment).where(
        RiskAssessment.workspace_id == principal.workspace_id,
        RiskAssessment.review_status == status,
    )
    if campaign_id:
        stmt = stmt.where(RiskAssessment.campaign_id == campaign_id)
    return list(
        session.scalars(stmt.order_by(RiskAssessment.score.desc(), RiskAssessment.id).limit(limit))
    )


def review(
    session: Session,
    principal: Principal,
    referral_id: str,
    *,
    approve: bool,
    note: str | None = None,
    now: datetime | None = None,
) -> Referral:
    """Approve or reject a held (or blocked) referral; repeating the same verdict is a no-op."""
    from liebian.campaigns import referrals as referral_rules

    principal.require(Role.operator)
    now = now or utcnow()
    referral = session.scalars(
        select(Referral)
        .where(Referral.workspace_id == principal.workspace_id, Referral.id == referral_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if referral is None:
        raise NotFound(f"no referral {referral_id!r} in this workspace", code="referral_not_found")
    assessment = session.scalars(
        select(RiskAssessment).where(RiskAssessment.referral_id == referral.id)
    ).first()
    target = "approved" if approve else "rejected"
    if referral.status == target:
        return referral
    if referral.status not in ("held", "blocked", "approved"):
        raise Conflict(
            f"a referral that is {referral.status} cannot be reviewed",
            code="not_reviewable",
            details={"status": referral.status},
        )
    if assessment is not None:
        assessment.review_status = target
        assessment.reviewed_at = now
        assessment.reviewed_by = principal.key_id or principal.member_id
        assessment.note = note
    if approve:
        referral_rules.approve(session, referral, now)
    else:
        referral_rules.reject(session, referral, now, reason="rejected in risk review")
    return referral
