"""Joining a campaign, who referred whom, risk decisions, and invite milestone rewards.

A referral counts toward the referrer's tiers when it is approved (risk), qualified (the
campaign's qualifying action happened) and still valid (the invitee did not leave). Tier
rewards are recomputed from that set under a lock on the referrer's participant row, so
concurrent qualifications and a later rejection all converge on the same ledger.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.campaigns import fission_events, repository, service
from liebian.campaigns.models import Campaign, Participant, Referral
from liebian.campaigns.schemas import DistributionConfig, InviteConfig, PosterConfig
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact
from liebian.contacts.repository import insert_ignore
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.errors import Conflict, Invalid
from liebian.kit.ids import new_id
from liebian.rewards import service as ledger
from liebian.rewards.models import RewardEntry
from liebian.risk import service as risk_service
from liebian.risk.scoring import Assessment, combine, decide, score_referral
from liebian.risk.signals import (
    Identity,
    ReferralContext,
    adjacency,
    cluster_signal,
    signal_from_reason,
)

_CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # readable off a poster


def new_invite_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))


@dataclass(frozen=True, slots=True)
class JoinInput:
    external_id: str
    referrer_code: str | None = None
    email: str | None = None
    phone: str | None = None
    nickname: str | None = None
    avatar_url: str | None = None
    visitor_id: str | None = None
    device_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    channel: str | None = None


def ip_hash(cipher: PiiCipher, ip: str | None) -> str | None:
    # Keyed: equal addresses compare equal, but the stored value says nothing about the IP.
    return cipher.lookup_hash("ip:" + ip.strip()) if ip and ip.strip() else None


def join(
    session: Session,
    cipher: PiiCipher,
    workspace_id: str,
    campaign_id: str,
    data: JoinInput,
    *,
    now: datetime | None = None,
) -> tuple[Participant, bool]:
    """The participant for ``data.external_id`` and whether this call created it (joining
    twice returns the same participant)."""
    now = now or utcnow()
    campaign = service.get(session, workspace_id, campaign_id)
    service.require_running(campaign, now)
    contact = contacts.upsert(
        session,
        cipher,
        workspace_id,
        contacts.ContactInput(
            external_id=data.external_id, email=data.email, phone=data.phone,
            nickname=data.nickname, avatar_url=data.avatar_url, visitor_id=data.visitor_id,
        ),
    )  # fmt: skip
    referrer = None
    if data.referrer_code:
        referrer = repository.participant_by_code(session, campaign.id, data.referrer_code.strip())
        if referrer is None:
            raise Invalid(
                "referrer_code does not belong to this campaign; pass the invite_code of a participant",
                code="unknown_referrer_code",
                details={"field": "referrer_code"},
            )
        if referrer.contact_id == contact.id:
            raise Conflict("a participant cannot refer themselves", code="self_referral")

    existing = repository.participant_by_contact(session, campaign.id, contact.id)
    if existing is not None:
        if referrer is not None and campaign.type == "distribution":
            _maybe_rebind(session, cipher, campaign, existing, referrer, contact, now)
        return existing, False

    new_user = not repository.has_prior_activity(session, workspace_id, contact.id, campaign.id)
    created = insert_ignore(
        session,
        Participant.__table__,
        {
            "id": new_id("par"),
            "workspace_id": workspace_id,
            "campaign_id": campaign.id,
            "contact_id": contact.id,
            "invite_code": new_invite_code(),
            "visitor_id": (data.visitor_id or None) and data.visitor_id[:128],
            "device_id": (data.device_id or None) and data.device_id[:128],
            "ip_hash": ip_hash(cipher, data.ip),
            "user_agent": (data.user_agent or None) and data.user_agent[:500],
            "config_version": campaign.config_version,
            "channel": (data.channel or None) and data.channel[:64],
            "joined_at": now,
        },
        ["campaign_id", "contact_id"],
    )
    participant = repository.participant_by_contact(session, campaign.id, contact.id)
    assert participant is not None
    referrer_external = None
    if created and referrer is not None:
        _refer(
            session, cipher, campaign, referrer, participant, contact, new_user=new_user, now=now
        )
        referrer_contact = session.get(Contact, referrer.contact_id)
        referrer_external = referrer_contact.external_id if referrer_contact else None
    if created:
        fission_events.emit(
            session, workspace_id=workspace_id, event="campaign_join",
            event_id=f"fx:join:{participant.id}", campaign_id=campaign.id,
            user_id=contact.external_id, visitor_id=participant.visitor_id,
            channel=participant.channel, participant_id=participant.id,
            referrer=referrer_external, ip_hash=participant.ip_hash, ts=now,
        )  # fmt: skip
    return participant, created


def _maybe_rebind(
    session: Session,
    cipher: PiiCipher,
    campaign: Campaign,
    participant: Participant,
    referrer: Participant,
    contact: Contact,
    now: datetime,
) -> None:
    """Distribution binding: first touch holds for ``lock_days``; ``overwrite`` always moves;
    ``registration`` binds only when the person first joins."""
    config = service.config_of(campaign)
    assert isinstance(config, DistributionConfig)
    if participant.referrer_participant_id == referrer.id or config.binding == "registration":
        return
    if participant.referrer_participant_id is not None and config.binding == "first_touch":
        bound_at = participant.bound_at or participant.joined_at
        if now < bound_at + timedelta(days=config.lock_days):
            return
    if referrer.referrer_participant_id == participant.id:
        # Binding A under B while B sits under A would pay A commission on A's own purchases.
        raise Conflict("this binding would create a referral loop", code="referral_cycle")
    current = repository.current_referral(session, campaign.id, participant.id)
    if current is not None:
        current.status = "superseded"
    _refer(session, cipher, campaign, referrer, participant, contact, new_user=True, now=now)


def _identity(
    participant: Participant, contact: Contact, cipher: PiiCipher, email: str | None
) -> Identity:
    return Identity(
        participant_id=contact.id,  # people, not memberships: rings close across campaigns
        visitor_id=participant.visitor_id,
        device_id=participant.device_id,
        ip=participant.ip_hash,
        user_agent=participant.user_agent,
        email=email,
        phone=cipher.decrypt(contact.phone_enc),  # stored normalized
        joined_at=participant.joined_at,
    )


def _refer(
    session: Session,
    cipher: PiiCipher,
    campaign: Campaign,
    referrer: Participant,
    referee: Participant,
    referee_contact: Contact,
    *,
    new_user: bool,
    now: datetime,
) -> Referral:
    config = service.config_of(campaign)
    referrer_contact = session.get(Contact, referrer.contact_id)
    assert referrer_contact is not None
    orders, refunded = repository.order_counts(session, referrer_contact.id)
    by_device, by_ip_ua = repository.referee_cluster(session, referrer.id, referee)
    ctx = ReferralContext(
        referrer=_identity(
            referrer, referrer_contact, cipher, contacts.normalized_email(cipher, referrer_contact)
        ),
        referee=_identity(
            referee, referee_contact, cipher, contacts.normalized_email(cipher, referee_contact)
        ),
        referrer_recent_referrals=repository.recent_referral_times(
            session, referrer.id, now - timedelta(hours=1)
        ),
        participants_on_device=repository.participants_on_device(
            session, campaign.id, referee.visitor_id, referee.device_id
        ),
        graph=adjacency(repository.referral_edges(session, campaign.workspace_id)),
        referrer_orders=orders,
        referrer_refunded_orders=refunded,
        siblings_same_device=len(by_device),
        siblings_same_ip_ua=len(by_ip_ua),
    )
    decision, assessment = score_referral(ctx, config.risk)
    status: str = decision
    if decision == "approved" and getattr(config, "new_users_only", False) and not new_user:
        # Only new friends count (任务宝 rule); existing customers are recorded, never paid for.
        status = "ineligible"
    referral = Referral(
        id=new_id("ref"),
        workspace_id=campaign.workspace_id,
        campaign_id=campaign.id,
        referrer_participant_id=referrer.id,
        referee_participant_id=referee.id,
        referrer_contact_id=referrer.contact_id,
        referee_contact_id=referee.contact_id,
        seq=repository.max_referral_seq(session, campaign.id, referee.id) + 1,
        status=status,
        risk_score=assessment.score,
        created_at=now,
    )
    session.add(referral)
    session.flush()
    risk_service.record(session, referral, assessment, decision)
    if status == "held":  # the webhook outbox tells the operator a review is waiting
        publish_after_commit(
            session,
            "referral.held",
            {"referral_id": referral.id, "workspace_id": campaign.workspace_id},
        )
    if any(signal.code == "referee_cluster" for signal in assessment.signals):
        # The earlier members of the cluster scored without this evidence: revise them.
        _rescore_cluster(
            session, cipher, campaign, ctx.referrer, by_device or by_ip_ua,
            by_device=bool(by_device), now=now,
        )  # fmt: skip
    referee.referrer_participant_id = referrer.id
    referee.bound_at = now
    fission_events.emit(
        session, workspace_id=campaign.workspace_id, event="invite",
        event_id=f"fx:invite:{referral.id}", campaign_id=campaign.id,
        user_id=referrer_contact.external_id, channel=referrer.channel,
        participant_id=referrer.id,
        properties={"referee": referee_contact.external_id, "status": status,
                    "referral_id": referral.id},
        ts=now,
    )  # fmt: skip
    if _qualifies_at_join(config):
        qualify(session, campaign, referral, now)
    return referral


def _rescore_cluster(
    session: Session,
    cipher: PiiCipher,
    campaign: Campaign,
    referrer: Identity,
    referral_ids: list[str],
    *,
    by_device: bool,
    now: datetime,
) -> None:
    """A later referral joined these referrals' cluster (same device, or same IP and user
    agent, among one referrer's referees): each gets the ``referee_cluster`` evidence it lacked
    when it arrived, its score and decision are revised, and an approved one whose decision
    is no longer "approved" goes back to review (held) — its pending rewards wait, since
    settlement pays only entries of approved referrals (decision 0019)."""
    policy = service.config_of(campaign).risk
    others = len(referral_ids)  # each one's others: the rest of the list and the newcomer
    for referral in session.scalars(
        select(Referral).where(Referral.id.in_(referral_ids)).with_for_update()
    ):
        referee = session.get(Participant, referral.referee_participant_id)
        contact = session.get(Contact, referral.referee_contact_id)
        if referee is None or contact is None:
            continue
        signal = cluster_signal(
            ReferralContext(
                referrer=referrer,
                referee=_identity(referee, contact, cipher, None),
                siblings_same_device=others if by_device else 0,
                siblings_same_ip_ua=0 if by_device else others,
            )
        )
        row = risk_service.for_referrals(session, [referral.id]).get(referral.id)
        if signal is None or row is None:
            continue
        known = [r for r in row.reasons if r.get("code") != "referee_cluster"]
        before = [r for r in row.reasons if r.get("code") == "referee_cluster"]
        if before and int(before[0].get("weight", 0)) >= signal.weight:
            continue  # already revised with this much evidence or more
        signals = (*(signal_from_reason(r) for r in known), signal)
        assessment = Assessment(score=combine(signals), signals=signals)
        decision = decide(assessment, policy)
        row.score, row.reasons = assessment.score, assessment.reasons()
        referral.risk_score = assessment.score
        if decision != "approved" and referral.status == "approved":
            # Back to a human, whatever the policy's mode: it was approved before.
            referral.status = "held"
            row.decision, row.review_status = "held", "pending"
            row.note = f"re-scored {now:%Y-%m-%d %H:%M} UTC: a later referral joined its cluster"
            publish_after_commit(
                session,
                "referral.held",
                {"referral_id": referral.id, "workspace_id": campaign.workspace_id},
            )
        elif referral.status == "held":
            row.decision = decision
    session.flush()


def _qualifies_at_join(config: object) -> bool:
    if isinstance(config, InviteConfig):
        return config.qualifying_action == "signup"
    if isinstance(config, PosterConfig):
        return config.qualifying_action in ("scan", "signup")
    return False


def qualifying_action(config: object) -> str | None:
    if isinstance(config, InviteConfig | PosterConfig):
        return config.qualifying_action
    return None


def qualify(
    session: Session,
    campaign: Campaign,
    referral: Referral,
    now: datetime,
    *,
    order_id: str | None = None,
) -> None:
    if referral.qualified_at is not None:
        return
    referral.qualified_at = now
    session.flush()
    referrer_contact = session.get(Contact, referral.referrer_contact_id)
    referee_contact = session.get(Contact, referral.referee_contact_id)
    fission_events.emit(
        session, workspace_id=campaign.workspace_id, event="invite_qualified",
        event_id=f"fx:qualified:{referral.id}", campaign_id=campaign.id,
        user_id=referrer_contact.external_id if referrer_contact else None,
        participant_id=referral.referrer_participant_id,
        properties={"referee": referee_contact.external_id if referee_contact else None,
                    "status": referral.status, "referral_id": referral.id},
        ts=now,
    )  # fmt: skip
    if referral.status == "approved":
        _on_counted(session, campaign, referral, now, order_id=order_id)


def approve(session: Session, referral: Referral, now: datetime) -> None:
    referral.status = "approved"
    session.flush()
    campaign = session.get(Campaign, referral.campaign_id)
    assert campaign is not None
    if referral.qualified_at is not None:
        _on_counted(session, campaign, referral, now)


def reject(session: Session, referral: Referral, now: datetime, *, reason: str) -> None:
    referral.status = "rejected"
    session.flush()
    _void_referral_rewards(session, referral, reason)
    campaign = session.get(Campaign, referral.campaign_id)
    assert campaign is not None
    evaluate_tiers(session, campaign, referral.referrer_participant_id, now)


def invalidate(session: Session, referral: Referral, now: datetime, *, reason: str) -> None:
    """The invitee left (quit the group / deleted the friend): stop counting the invite."""
    if referral.invalidated_at is not None:
        return
    referral.invalidated_at = now
    session.flush()
    _void_referral_rewards(session, referral, reason)
    campaign = session.get(Campaign, referral.campaign_id)
    assert campaign is not None
    evaluate_tiers(session, campaign, referral.referrer_participant_id, now)


def _void_referral_rewards(session: Session, referral: Referral, reason: str) -> None:
    ledger.reverse_where(
        session,
        RewardEntry.workspace_id == referral.workspace_id,
        RewardEntry.referral_id == referral.id,
        reason=reason,
    )


def _reward_timing(config: object, qualified_at: datetime) -> tuple[str, datetime]:
    delay = getattr(config, "reward_delay_days", 0) or 0
    if delay == 0:
        return "issued", qualified_at
    return "pending", qualified_at + timedelta(days=delay)


def _on_counted(
    session: Session,
    campaign: Campaign,
    referral: Referral,
    now: datetime,
    *,
    order_id: str | None = None,
) -> None:
    referee = session.get(Participant, referral.referee_participant_id)
    # The invitee is rewarded by the terms they joined under.
    config = service.terms(session, campaign, referee.config_version if referee else None)
    if not isinstance(config, InviteConfig | PosterConfig):
        return
    if isinstance(config, InviteConfig) and config.invitee_reward is not None:
        reward = config.invitee_reward
        key = f"invitee:{campaign.id}:{referral.referee_contact_id}"
        if ledger.find_by_key(session, campaign.workspace_id, key) is None and service.take_stock(
            session, campaign, amount=_budget_amount(reward.kind, reward.amount)
        ):
            status, available_at = _reward_timing(config, referral.qualified_at or now)
            ledger.grant(
                session,
                ledger.Grant(
                    workspace_id=campaign.workspace_id, contact_id=referral.referee_contact_id, key=key,
                    kind=reward.kind, amount=reward.amount, name=reward.name, campaign_id=campaign.id,
                    reason="invitee", status=status,  # type: ignore[arg-type]
                    available_at=available_at, referral_id=referral.id, order_id=order_id,
                ),
            )  # fmt: skip
    evaluate_tiers(session, campaign, referral.referrer_participant_id, now)


def _budget_amount(kind: str, amount: int) -> int:
    # Budgets are money: coupons and cash count in 分; points and gifts are limited by stock.
    return amount if kind in ("coupon", "cash") else 0


def evaluate_tiers(
    session: Session, campaign: Campaign, referrer_participant_id: str, now: datetime
) -> int:
    """Grant every milestone the referrer has earned and does not hold; returns how many.

    Tiers repeat as cycles (a single "every 1 invite" tier repeats each invite) up to
    ``max_rewards_per_participant`` cycles. Each grant is tied to the referral that crossed
    the threshold, so rejecting that referral reverses it and the next evaluation re-grants it
    from the remaining referrals if they still reach it.
    """
    if campaign.type not in ("invite", "poster"):
        return 0
    referrer = repository.locked(
        session, Participant, campaign.workspace_id, referrer_participant_id
    )
    if referrer is None:
        return 0
    # The referrer is paid by the terms they joined under (a later, lower reward never
    # applies to them; a higher one applies to those who join after the change).
    config = service.terms(session, campaign, referrer.config_version)
    if not isinstance(config, InviteConfig | PosterConfig):
        return 0
    decrease_bp = getattr(config, "cycle_decrease_bp", 0)
    counted = repository.counted_referrals(session, referrer.id)
    cycles = config.max_rewards_per_participant if isinstance(config, InviteConfig) else 1
    cycle_len = config.tiers[-1].invites
    held = {
        e.meta.get("slot")
        for e in session.scalars(
            select(RewardEntry).where(
                RewardEntry.campaign_id == campaign.id,
                RewardEntry.contact_id == referrer.contact_id,
                RewardEntry.reason == "tier",
                RewardEntry.status.in_(ledger.ACTIVE),
            )
        )
    }
    granted = 0
    for cycle in range(cycles):
        if cycle * cycle_len >= len(counted):
            break
        for tier in config.tiers:
            threshold = cycle * cycle_len + tier.invites
            slot = f"{cycle}:{tier.invites}"
            if threshold > len(counted) or slot in held:
                continue
            crossing = counted[threshold - 1]
            key = f"tier:{referrer.id}:{slot}:{crossing.id}"
            if ledger.find_by_key(session, campaign.workspace_id, key) is not None:
                continue
            amount = cycle_amount(tier.reward.amount, cycle, decrease_bp)
            if not service.take_stock(
                session, campaign, amount=_budget_amount(tier.reward.kind, amount)
            ):
                return granted  # stock or budget exhausted: the campaign pays nothing more
            status, available_at = _reward_timing(config, crossing.qualified_at or now)
            ledger.grant(
                session,
                ledger.Grant(
                    workspace_id=campaign.workspace_id, contact_id=referrer.contact_id, key=key,
                    kind=tier.reward.kind, amount=amount, name=tier.reward.name,
                    campaign_id=campaign.id, reason="tier", status=status,  # type: ignore[arg-type]
                    available_at=available_at, referral_id=crossing.id,
                    meta={"slot": slot, "invites": threshold},
                ),
            )  # fmt: skip
            granted += 1
    return granted


def cycle_amount(amount: int, cycle: int, decrease_bp: int) -> int:
    """Decreasing rewards: cycle 0 pays ``amount``, each later cycle ``decrease_bp`` basis
    points less than the one before (integer 分, rounded down, never below 1)."""
    if not decrease_bp or not cycle:
        return amount
    keep = 10_000 - decrease_bp
    return max(1, amount * keep**cycle // 10_000**cycle)


def progress(session: Session, campaign: Campaign, participant: Participant) -> dict[str, object]:
    """Counted invites and the next milestone, for the participant's H5 page."""
    config = service.terms(session, campaign, participant.config_version)
    return progress_of(config, len(repository.counted_referrals(session, participant.id)))


def progress_of(config: object, counted: int) -> dict[str, object]:
    """:func:`progress` from the participant's terms and their counted invites."""
    tiers = getattr(config, "tiers", [])
    nxt = None
    for tier in tiers:
        if getattr(tier, "invites", None) is not None and tier.invites > counted:
            nxt = tier
            break
    return {"counted": counted, "next": nxt, "tiers": tiers}


def graph_stats(session: Session, campaign: Campaign) -> dict[str, object]:
    """Referral graph of a campaign: depth, K-factor and viral cycle time.

    K-factor = approved referrals / participants (new people each participant brings); depth =
    the longest referral chain; cycle time = median time from a referrer joining to their
    referee joining.
    """
    rows = repository.graph_rows(session, campaign.id)
    participants = repository.participant_count(session, campaign.id)
    parent = {b: a for a, b, _, _ in rows}
    depth_of: dict[str, int] = {}

    def depth(node: str) -> int:
        # Iterative walk up the parent chain; bindings cannot loop, but guard anyway.
        chain: list[str] = []
        seen: set[str] = set()
        while node in parent and node not in depth_of and node not in seen:
            seen.add(node)
            chain.append(node)
            node = parent[node]
        base = depth_of.get(node, 0)
        for n in reversed(chain):
            base += 1
            depth_of[n] = base
        return depth_of.get(chain[0], base) if chain else base

    max_depth = max((depth(b) for _, b, _, _ in rows), default=0)
    gaps = sorted((tb - ta).total_seconds() for _, _, ta, tb in rows)
    median = gaps[len(gaps) // 2] if gaps else None
    return {
        "participants": participants,
        "referrals": len(rows),
        "k_factor": round(len(rows) / participants, 4) if participants else 0.0,
        "max_depth": max_depth,
        "median_cycle_seconds": median,
        "referrers": len({a for a, _, _, _ in rows}),
    }
