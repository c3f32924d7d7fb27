"""Group buy (拼团): open a group, join it, succeed when full, fail on expiry.

"A group never holds more members than its size" is held three ways, any one of which is
enough: the group row is locked while a join runs (``FOR UPDATE`` on PostgreSQL, ``BEGIN
IMMEDIATE`` on SQLite), the member counter only moves by ``UPDATE … WHERE member_count <
size``, and each member takes a seat number that is unique within the group.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from liebian.campaigns import repository, service
from liebian.campaigns.models import Campaign, CampaignEvent, Group, GroupMember
from liebian.campaigns.schemas import GroupBuyConfig
from liebian.contacts import service as contacts
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.rewards import service as ledger

GROUP_FAILED = "group.failed"
GROUP_SUCCEEDED = "group.succeeded"


def _event(
    session: Session, group: Group, kind: str, contact_id: str | None, payload: dict[str, object]
) -> None:
    session.add(
        CampaignEvent(
            id=new_id("cev"), workspace_id=group.workspace_id, campaign_id=group.campaign_id,
            kind=kind, subject_id=group.id, contact_id=contact_id, payload=payload, created_at=utcnow(),
        )
    )  # fmt: skip


def open_group(
    session: Session,
    cipher: PiiCipher,
    workspace_id: str,
    campaign_id: str,
    leader_external_id: str,
    *,
    size: int | None = None,
    now: datetime | None = None,
) -> Group:
    now = now or utcnow()
    campaign = service.get(session, workspace_id, campaign_id)
    service.require_type(campaign, "group_buy")
    service.require_running(campaign, now)
    config = service.config_of(campaign)
    assert isinstance(config, GroupBuyConfig)
    tiers = {t.size: t.price for t in config.tiers}
    size = size or config.tiers[0].size
    if size not in tiers:
        raise Invalid(
            f"size must be one of {sorted(tiers)} for this campaign",
            code="invalid_group_size",
            details={"field": "size", "allowed": sorted(tiers)},
        )
    leader = contacts.upsert(
        session, cipher, workspace_id, contacts.ContactInput(external_id=leader_external_id)
    )
    _take_seat_stock(session, campaign)
    group = Group(
        id=new_id("grp"),
        workspace_id=workspace_id,
        campaign_id=campaign.id,
        leader_contact_id=leader.id,
        size=size,
        price=tiers[size],
        member_count=1,
        status="open",
        expires_at=min(
            now + timedelta(hours=config.time_limit_hours),
            campaign.ends_at or now + timedelta(days=3650),
        ),
        created_at=now,
    )
    session.add(group)
    session.flush()
    session.add(
        GroupMember(
            id=new_id("gmb"), group_id=group.id, workspace_id=workspace_id, contact_id=leader.id,
            seat=0, is_leader=True, price=group.price, order_status="pending", joined_at=now,
        )
    )  # fmt: skip
    session.flush()
    return group


def get_group(session: Session, workspace_id: str, group_id: str) -> Group:
    group = repository.get(session, Group, workspace_id, group_id)
    if group is None:
        raise NotFound(f"no group {group_id!r} in this workspace", code="group_not_found")
    return group


def join_group(
    session: Session,
    cipher: PiiCipher,
    workspace_id: str,
    group_id: str,
    external_id: str,
    *,
    now: datetime | None = None,
) -> Group:
    now = now or utcnow()
    contact = contacts.upsert(
        session, cipher, workspace_id, contacts.ContactInput(external_id=external_id)
    )
    group = repository.locked(session, Group, workspace_id, group_id)
    if group is None:
        raise NotFound(f"no group {group_id!r} in this workspace", code="group_not_found")
    if group.status != "open":
        raise Conflict(
            f"this group is {_STATUS_ZH.get(group.status, group.status)}",
            code=f"group_{group.status}",
        )
    if group.expires_at <= now:
        raise Conflict("this group has expired", code="group_expired")
    if group.member_count >= group.size:
        raise Conflict("this group is full", code="group_full")
    if any(m.contact_id == contact.id for m in repository.group_members(session, group.id)):
        raise Conflict("already a member of this group", code="already_member")
    campaign = session.get(Campaign, group.campaign_id)
    assert campaign is not None
    _take_seat_stock(session, campaign)
    seat = group.member_count
    taken = session.execute(
        update(Group)
        .where(
            Group.id == group.id,
            Group.status == "open",
            Group.member_count == seat,
            Group.member_count < Group.size,
        )
        .values(member_count=seat + 1)
        .execution_options(synchronize_session=False)
    )
    if not taken.rowcount:  # type: ignore[attr-defined]
        raise Conflict("this group is full", code="group_full")
    try:
        with session.begin_nested():
            session.add(
                GroupMember(
                    id=new_id("gmb"), group_id=group.id, workspace_id=workspace_id, contact_id=contact.id,
                    seat=seat, is_leader=False, price=group.price, order_status="pending", joined_at=now,
                )
            )  # fmt: skip
    except IntegrityError as exc:
        raise Conflict("this group is full or you are already in it", code="group_full") from exc
    session.refresh(group)
    if group.member_count >= group.size:
        _succeed(session, group, now)
    return group


def _take_seat_stock(session: Session, campaign: Campaign) -> None:
    # Stock counts units sold: every seat (leader included) is one unit of the product.
    if not service.take_stock(session, campaign, units=1):
        raise Conflict("this offer is sold out", code="sold_out")


_STATUS_ZH = {"success": "already complete (已成团)", "failed": "closed (已失败)"}


def _succeed(session: Session, group: Group, now: datetime) -> None:
    done = session.execute(
        update(Group)
        .where(Group.id == group.id, Group.status == "open")
        .values(status="success", completed_at=now)
        .execution_options(synchronize_session=False)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        return
    session.refresh(group)
    session.execute(
        update(GroupMember)
        .where(GroupMember.group_id == group.id, GroupMember.order_status == "pending")
        .values(order_status="confirmed")
        .execution_options(synchronize_session=False)
    )
    campaign = session.get(Campaign, group.campaign_id)
    assert campaign is not None
    config = service.config_of(campaign)
    assert isinstance(config, GroupBuyConfig)
    if config.leader_discount > 0:
        # The leader's benefit exists only once the group succeeds, hence a ledger entry
        # rather than a lower price at opening.
        ledger.grant(
            session,
            ledger.Grant(
                workspace_id=group.workspace_id, contact_id=group.leader_contact_id,
                key=f"group_leader:{group.id}", kind="coupon", amount=config.leader_discount,
                name="团长优惠", campaign_id=group.campaign_id, reason="group_leader", status="issued",
            ),
        )  # fmt: skip
    _event(session, group, GROUP_SUCCEEDED, group.leader_contact_id, {"size": group.size})
    publish_after_commit(
        session, GROUP_SUCCEEDED, {"group_id": group.id, "workspace_id": group.workspace_id}
    )


def expire_groups(session: Session, now: datetime, *, limit: int = 1_000) -> list[str]:
    """Job: groups past their deadline and not full fail; every member's order is voided
    (an ``order_voided`` campaign event each, and a ``group.failed`` bus event after commit)."""
    failed: list[str] = []
    for group in repository.due_groups(session, now, limit):
        done = session.execute(
            update(Group)
            .where(Group.id == group.id, Group.status == "open", Group.expires_at <= now)
            .values(status="failed", completed_at=now)
            .execution_options(synchronize_session=False)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            continue  # a concurrent join filled it, or another worker expired it
        members = repository.group_members(session, group.id)
        for member in members:
            if member.order_status == "voided":
                continue
            member.order_status = "voided"
            _event(
                session, group, "order_voided", member.contact_id,
                {"member_id": member.id, "price": member.price, "reason": "group_expired"},
            )  # fmt: skip
        _event(session, group, GROUP_FAILED, group.leader_contact_id, {"members": len(members)})
        publish_after_commit(
            session,
            GROUP_FAILED,
            {
                "group_id": group.id,
                "workspace_id": group.workspace_id,
                "voided": [m.id for m in members],
            },
        )
        failed.append(group.id)
    session.flush()
    return failed
