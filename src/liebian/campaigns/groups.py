"""Group buy (拼团): open a group, join it, succeed when full, fail on expiry.

"A group never holds more members than its size" is held three ways, any one of which is
enough: the group row is locked while a join runs (``FOR UPDATE`` on PostgreSQL, ``BEGIN
IMMEDIATE`` on SQLite), the member counter only moves by ``UPDATE … WHERE member_count <
size``, and each member takes a seat number that is unique within the group.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from liebian.campaigns import fission_events, repository, service
from liebian.campaigns.models import Campaign, CampaignEvent, Group, GroupMember
from liebian.campaigns.schemas import GroupBuyConfig
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.rewards import service as ledger

GROUP_FAILED = "group.failed"
GROUP_SUCCEEDED = "group.succeeded"


def _event(
    session: Session,
    workspace_id: str,
    campaign_id: str,
    group_id: str,
    kind: str,
    contact_id: str | None,
    payload: dict[str, object],
) -> None:
    session.add(
        CampaignEvent(
            id=new_id("cev"), workspace_id=workspace_id, campaign_id=campaign_id,
            kind=kind, subject_id=group_id, contact_id=contact_id, payload=payload, created_at=utcnow(),
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
    common = {"workspace_id": workspace_id, "campaign_id": campaign.id,
              "user_id": leader.external_id, "ts": now}  # fmt: skip
    fission_events.emit(
        session, event="group_open", event_id=f"fx:group_open:{group.id}",
        properties={"group_id": group.id, "size": size, "price": group.price}, **common,
    )  # fmt: skip
    fission_events.emit(
        session, event="join_group", event_id=f"fx:group_join:{group.id}:0",
        properties={"group_id": group.id, "leader": True}, **common,
    )  # fmt: skip
    return group


def get_group(session: Session, workspace_id: str, group_id: str) -> Group:
    group = repository.get(session, Group, workspace_id, group_id)
    if group is None:
        raise NotFound(f"no group {group_id!r} in this workspace", code="group_not_found")
    return group


@dataclass(slots=True)
class GroupView:
    """A group and its members (with their external ids): what the API and pages show."""

    id: str
    campaign_id: str
    status: str
    size: int
    price: int
    member_count: int
    expires_at: datetime
    members: list[dict[str, Any]]


def _members(conn: Connection, group_id: str) -> list[dict[str, Any]]:
    rows = repository.GROUP_MEMBERS.execute(conn, {"group_id": group_id}).rows
    return [r._asdict() for r in rows]


def view(session: Session, group: Group) -> GroupView:
    return GroupView(
        id=group.id, campaign_id=group.campaign_id, status=group.status, size=group.size,
        price=group.price, member_count=group.member_count, expires_at=group.expires_at,
        members=_members(repository.hot_connection(session), group.id),
    )  # fmt: skip


def join_group(
    session: Session,
    cipher: PiiCipher,
    workspace_id: str,
    group_id: str,
    external_id: str,
    *,
    now: datetime | None = None,
) -> GroupView:
    # Runs under the write lock, so it is lean: Core statements built once, the group read
    # with its campaign's config in one go, and the reply built from what was read here.
    now = now or utcnow()
    conn = repository.hot_connection(session)
    contact_id = repository.contact_id(conn, workspace_id, contacts.check_external_id(external_id))
    group = repository.GROUP_FOR_JOIN.execute(
        conn, {"group_id": group_id, "workspace_id": workspace_id}
    ).first()
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
    members = _members(conn, group.id)
    if any(m["contact_id"] == contact_id for m in members):
        raise Conflict("already a member of this group", code="already_member")
    # Stock counts units sold: every seat (leader included) is one unit of the product.
    if not repository.take_stock(conn, group.campaign_id, group.config, units=1):
        raise Conflict("this offer is sold out", code="sold_out")
    seat = group.member_count
    if not repository.TAKE_SEAT.execute(conn, {"group_id": group.id, "seat": seat}).rowcount:
        raise Conflict("this group is full", code="group_full")
    member = {
        "id": new_id("gmb"), "group_id": group.id, "workspace_id": workspace_id,
        "contact_id": contact_id, "seat": seat, "is_leader": False, "price": group.price,
        "order_status": "pending", "joined_at": now,
    }  # fmt: skip
    try:
        repository.INSERT_MEMBER.execute(conn, member)
    except IntegrityError as exc:
        # Cannot happen past the checks above (seat and membership are decided under the
        # lock); if it does, the request rolls back as a whole, seat and stock included.
        raise Conflict("this group is full or you are already in it", code="group_full") from exc
    _expire_cached(session, group.id)
    members.append({**member, "external_id": external_id})
    leader_external = next(
        (m["external_id"] for m in members if m["contact_id"] == group.leader_contact_id), None
    )
    fission_events.emit(
        session, workspace_id=workspace_id, event="join_group",
        event_id=f"fx:group_join:{group.id}:{seat}", campaign_id=group.campaign_id,
        user_id=external_id, referrer=leader_external, ts=now,
        properties={"group_id": group.id, "leader": False},
    )  # fmt: skip
    status = group.status
    if seat + 1 >= group.size:
        config = GroupBuyConfig.model_validate(group.config)
        if _succeed(session, workspace_id, group, config, now):
            status = "success"
            for m in members:
                m["order_status"] = (
                    "confirmed" if m["order_status"] == "pending" else m["order_status"]
                )
    return GroupView(
        id=group.id, campaign_id=group.campaign_id, status=status, size=group.size,
        price=group.price, member_count=seat + 1, expires_at=group.expires_at,
        members=[{k: m[k] for k in _MEMBER_KEYS} for m in members],
    )  # fmt: skip


_MEMBER_KEYS = (
    "contact_id",
    "external_id",
    "is_leader",
    "seat",
    "price",
    "order_status",
    "joined_at",
)


def _expire_cached(session: Session, group_id: str) -> None:
    # The seat was taken with Core; a Group this session loaded before must not go on
    # reporting the old count.
    cached = session.identity_map.get(session.identity_key(Group, group_id))
    if cached is not None:
        session.expire(cached)


def _take_seat_stock(session: Session, campaign: Campaign) -> None:
    # Stock counts units sold: every seat (leader included) is one unit of the product.
    if not service.take_stock(session, campaign, units=1):
        raise Conflict("this offer is sold out", code="sold_out")


_STATUS_ZH = {"success": "already complete (已成团)", "failed": "closed (已失败)"}


def _succeed(
    session: Session, workspace_id: str, group: Any, config: GroupBuyConfig, now: datetime
) -> bool:
    conn = repository.hot_connection(session)
    params = {"group_id": group.id, "completed_at": now}
    if not repository.GROUP_SUCCEEDS.execute(conn, params).rowcount:
        return False
    repository.CONFIRM_ORDERS.execute(conn, {"group_id": group.id})
    if config.leader_discount > 0:
        # The leader's benefit exists only once the group succeeds, hence a ledger entry
        # rather than a lower price at opening.
        ledger.grant(
            session,
            ledger.Grant(
                workspace_id=workspace_id, contact_id=group.leader_contact_id,
                key=f"group_leader:{group.id}", kind="coupon", amount=config.leader_discount,
                name="团长优惠", campaign_id=group.campaign_id, reason="group_leader", status="issued",
            ),
        )  # fmt: skip
    _event(
        session, workspace_id, group.campaign_id, group.id, GROUP_SUCCEEDED,
        group.leader_contact_id, {"size": group.size},
    )  # fmt: skip
    leader = repository.CONTACT_EXTERNAL_ID.execute(conn, {"id": group.leader_contact_id}).scalar()
    fission_events.emit(
        session, workspace_id=workspace_id, event="group_success",
        event_id=f"fx:group_success:{group.id}", campaign_id=group.campaign_id,
        user_id=leader, revenue=group.price * group.size, ts=now,
        properties={"group_id": group.id, "size": group.size},
    )  # fmt: skip
    publish_after_commit(
        session, GROUP_SUCCEEDED, {"group_id": group.id, "workspace_id": workspace_id}
    )
    return True


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
                session, group.workspace_id, group.campaign_id, group.id, "order_voided",
                member.contact_id,
                {"member_id": member.id, "price": member.price, "reason": "group_expired"},
            )  # fmt: skip
        _event(
            session, group.workspace_id, group.campaign_id, group.id, GROUP_FAILED,
            group.leader_contact_id, {"members": len(members)},
        )  # fmt: skip
        leader = session.get(Contact, group.leader_contact_id)
        fission_events.emit(
            session, workspace_id=group.workspace_id, event="group_fail",
            event_id=f"fx:group_fail:{group.id}", campaign_id=group.campaign_id,
            user_id=leader.external_id if leader else None, ts=now,
            properties={"group_id": group.id, "members": len(members)},
        )  # fmt: skip
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
