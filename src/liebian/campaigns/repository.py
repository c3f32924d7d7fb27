"""All SQL for campaigns, participants, referrals, groups and assists."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from liebian.campaigns.models import (
    Assist,
    AssistHelp,
    Campaign,
    Conversion,
    Group,
    GroupMember,
    Participant,
    Referral,
)
from liebian.contacts.models import Contact
from liebian.kit.clock import utcnow
from liebian.kit.db import UTCDateTime
from liebian.kit.ids import new_id
from liebian.kit.pagination import paginate
from liebian.kit.precompiled import Precompiled, insert_columns

T = TypeVar("T")

# Bound on how many referral edges the ring check loads: rings are small and recent.
GRAPH_EDGE_LIMIT = 20_000


def locked(session: Session, model: type[T], workspace_id: str, row_id: str) -> T | None:
    """The row under ``SELECT … FOR UPDATE`` (PostgreSQL). SQLite ignores the clause; its
    ``BEGIN IMMEDIATE`` already serializes writers, which gives the same guarantee."""
    stmt = (
        select(model)
        .where(model.id == row_id, model.workspace_id == workspace_id)  # type: ignore[attr-defined]
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).first()


def get(session: Session, model: type[T], workspace_id: str, row_id: str) -> T | None:
    table: Any = model
    stmt = select(model).where(table.id == row_id, table.workspace_id == workspace_id)
    return session.scalars(stmt).first()


def list_campaigns(
    session: Session,
    workspace_id: str,
    *,
    type_: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> list[Campaign]:
    stmt = select(Campaign).where(Campaign.workspace_id == workspace_id)
    if type_:
        stmt = stmt.where(Campaign.type == type_)
    if status:
        stmt = stmt.where(Campaign.status == status)
    return list(session.scalars(paginate(stmt, Campaign.id, cursor, limit)))


def participant_by_contact(
    session: Session, campaign_id: str, contact_id: str
) -> Participant | None:
    return session.scalars(
        select(Participant)
        .where(Participant.campaign_id == campaign_id, Participant.contact_id == contact_id)
        .execution_options(populate_existing=True)
    ).first()


def participant_by_code(session: Session, campaign_id: str, code: str) -> Participant | None:
    return session.scalars(
        select(Participant).where(
            Participant.campaign_id == campaign_id, Participant.invite_code == code
        )
    ).first()


def has_prior_activity(
    session: Session, workspace_id: str, contact_id: str, campaign_id: str
) -> bool:
    """Was this person already ours before this campaign (another campaign or a purchase)?"""
    other = session.scalar(
        select(func.count())
        .select_from(Participant)
        .where(
            Participant.workspace_id == workspace_id,
            Participant.contact_id == contact_id,
            Participant.campaign_id != campaign_id,
        )
    )
    if other:
        return True
    bought = session.scalar(
        select(func.count())
        .select_from(Conversion)
        .where(Conversion.contact_id == contact_id, Conversion.event == "purchase")
    )
    return bool(bought)


def current_referral(
    session: Session, campaign_id: str, referee_participant_id: str
) -> Referral | None:
    return session.scalars(
        select(Referral)
        .where(
            Referral.campaign_id == campaign_id,
            Referral.referee_participant_id == referee_participant_id,
            Referral.status != "superseded",
        )
        .order_by(Referral.seq.desc())
        .execution_options(populate_existing=True)
    ).first()


def max_referral_seq(session: Session, campaign_id: str, referee_participant_id: str) -> int:
    value = session.scalar(
        select(func.max(Referral.seq)).where(
            Referral.campaign_id == campaign_id,
            Referral.referee_participant_id == referee_participant_id,
        )
    )
    return -1 if value is None else int(value)


def recent_referral_times(
    session: Session, referrer_participant_id: str, since: datetime
) -> list[datetime]:
    return list(
        session.scalars(
            select(Referral.created_at).where(
                Referral.referrer_participant_id == referrer_participant_id,
                Referral.created_at >= since,
            )
        )
    )


def referee_cluster(
    session: Session, referrer_participant_id: str, referee: Participant
) -> tuple[list[str], list[str]]:
    """The referrer's other referrals whose referee shares ``referee``'s device, and those
    whose referee shares its IP and user agent: (referral ids by device, by IP + UA)."""
    device, ip, ua = referee.device_id, referee.ip_hash, referee.user_agent
    if not device and not (ip and ua):
        return [], []
    rows = session.execute(
        select(Referral.id, Participant.device_id, Participant.ip_hash, Participant.user_agent)
        .join(Participant, Participant.id == Referral.referee_participant_id)
        .where(
            Referral.referrer_participant_id == referrer_participant_id,
            Participant.id != referee.id,
            or_(
                Participant.device_id == device if device else false(),
                and_(Participant.ip_hash == ip, Participant.user_agent == ua)
                if ip and ua
                else false(),
            ),
        )
        .order_by(Referral.created_at, Referral.id)
    ).all()
    by_device = [r.id for r in rows if device and r.device_id == device]
    by_ip_ua = [r.id for r in rows if ip and ua and r.ip_hash == ip and r.user_agent == ua]
    return by_device, by_ip_ua


def participants_on_device(
    session: Session, campaign_id: str, visitor_id: str | None, device_id: str | None
) -> int:
    if not visitor_id and not device_id:
        return 0
    cond = (
        Participant.visitor_id == visitor_id if visitor_id else Participant.device_id == device_id
    )
    return int(
        session.scalar(
            select(func.count(func.distinct(Participant.contact_id))).where(
                Participant.campaign_id == campaign_id, cond
            )
        )
        or 0
    )


def referral_edges(session: Session, workspace_id: str) -> list[tuple[str, str]]:
    rows = session.execute(
        select(Referral.referrer_contact_id, Referral.referee_contact_id)
        .where(Referral.workspace_id == workspace_id, Referral.status != "superseded")
        .order_by(Referral.id.desc())
        .limit(GRAPH_EDGE_LIMIT)
    ).all()
    return [(a, b) for a, b in rows]


def order_counts(session: Session, contact_id: str) -> tuple[int, int]:
    """(orders, refunded orders) of a contact, for the referrer refund-rate signal."""
    orders = session.scalar(
        select(func.count(func.distinct(Conversion.order_id))).where(
            Conversion.contact_id == contact_id, Conversion.event == "purchase"
        )
    )
    refunded = session.scalar(
        select(func.count(func.distinct(Conversion.order_id))).where(
            Conversion.contact_id == contact_id, Conversion.event == "refund"
        )
    )
    return int(orders or 0), int(refunded or 0)


def _counted() -> tuple[Any, ...]:
    """What makes a referral count toward tiers: approved, qualified, still valid."""
    return (
        Referral.status == "approved",
        Referral.qualified_at.is_not(None),
        Referral.invalidated_at.is_(None),
    )


def counted_referrals(session: Session, referrer_participant_id: str) -> list[Referral]:
    """Referrals that count toward tiers: approved, qualified, still valid; oldest first."""
    return list(
        session.scalars(
            select(Referral)
            .where(Referral.referrer_participant_id == referrer_participant_id, *_counted())
            .order_by(Referral.qualified_at, Referral.id)
        )
    )


def counted_referral_counts(session: Session, referrer_ids: list[str]) -> dict[str, int]:
    """``len(counted_referrals(…))`` of many referrers in one query per 500 (absent: 0)."""
    counts: dict[str, int] = {}
    for start in range(0, len(referrer_ids), 500):
        rows = session.execute(
            select(Referral.referrer_participant_id, func.count())
            .where(Referral.referrer_participant_id.in_(referrer_ids[start : start + 500]))
            .where(*_counted())
            .group_by(Referral.referrer_participant_id)
        )
        counts.update({referrer: int(n) for referrer, n in rows})
    return counts


def invite_rows(session: Session, campaign_id: str, codes: list[str]) -> dict[str, tuple[Any, ...]]:
    """Per invite code, what an invite page is made of — (participant id, channel, config
    version, contact id, the contact's external id and sealed nickname, counted referrals) —
    as plain rows, no objects: the cheap check whether a cached page is still right."""
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(codes), 500):
        rows = session.execute(
            select(
                Participant.invite_code, Participant.id, Participant.channel,
                Participant.config_version, Participant.contact_id, Contact.external_id,
                Contact.nickname_enc,
            )
            .outerjoin(Contact, Contact.id == Participant.contact_id)
            .where(
                Participant.campaign_id == campaign_id,
                Participant.invite_code.in_(codes[start : start + 500]),
            )
        ).all()  # fmt: skip
        counts = counted_referral_counts(session, [r[1] for r in rows])
        found.update((r[0], (*r[1:], counts.get(r[1], 0))) for r in rows)
    return found


def participants_by_codes(
    session: Session, campaign_id: str, codes: list[str]
) -> dict[str, Participant]:
    """:func:`participant_by_code` of many codes, one query per 500 (unknown codes absent)."""
    found: dict[str, Participant] = {}
    for start in range(0, len(codes), 500):
        found.update(
            (p.invite_code, p)
            for p in session.scalars(
                select(Participant).where(
                    Participant.campaign_id == campaign_id,
                    Participant.invite_code.in_(codes[start : start + 500]),
                )
            )
        )
    return found


def list_referrals(
    session: Session,
    workspace_id: str,
    *,
    campaign_id: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> list[Referral]:
    stmt = select(Referral).where(Referral.workspace_id == workspace_id)
    if campaign_id:
        stmt = stmt.where(Referral.campaign_id == campaign_id)
    if status:
        stmt = stmt.where(Referral.status == status)
    return list(session.scalars(paginate(stmt, Referral.id, cursor, limit)))


def leaderboard(session: Session, campaign_id: str, limit: int) -> list[tuple[str, int]]:
    count = func.count(Referral.id).label("n")
    rows = session.execute(
        select(Referral.referrer_participant_id, count)
        .where(
            Referral.campaign_id == campaign_id,
            Referral.status == "approved",
            Referral.qualified_at.is_not(None),
            Referral.invalidated_at.is_(None),
        )
        .group_by(Referral.referrer_participant_id)
        .order_by(count.desc(), Referral.referrer_participant_id)
        .limit(limit)
    ).all()
    return [(pid, int(n)) for pid, n in rows]


def group_members(session: Session, group_id: str) -> list[GroupMember]:
    return list(
        session.scalars(
            select(GroupMember).where(GroupMember.group_id == group_id).order_by(GroupMember.seat)
        )
    )


def due_groups(session: Session, now: datetime, limit: int) -> list[Group]:
    return list(
        session.scalars(
            select(Group)
            .where(Group.status == "open", Group.expires_at <= now)
            .order_by(Group.expires_at)
            .limit(limit)
        )
    )


def assist_helps(session: Session, assist_id: str) -> list[AssistHelp]:
    return list(
        session.scalars(
            select(AssistHelp)
            .where(AssistHelp.assist_id == assist_id)
            .order_by(AssistHelp.helper_index)
        )
    )


def helps_by_helper_since(session: Session, helper_contact_id: str, since: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(AssistHelp)
            .where(
                AssistHelp.helper_contact_id == helper_contact_id, AssistHelp.created_at >= since
            )
        )
        or 0
    )


def open_assist(
    session: Session, campaign_id: str, owner_contact_id: str, now: datetime
) -> Assist | None:
    return session.scalars(
        select(Assist)
        .where(
            Assist.campaign_id == campaign_id,
            Assist.owner_contact_id == owner_contact_id,
            Assist.status.in_(("open", "unlocked")),
            Assist.expires_at > now,
        )
        .order_by(Assist.id.desc())
    ).first()


def day_ago(now: datetime) -> datetime:
    return now - timedelta(days=1)


def by_ids(session: Session, model: type[T], ids: set[str]) -> dict[str, T]:
    if not ids:
        return {}
    rows: Any = session.scalars(select(model).where(model.id.in_(ids)))  # type: ignore[attr-defined]
    return {r.id: r for r in rows}


def graph_rows(session: Session, campaign_id: str) -> list[tuple[str, str, datetime, datetime]]:
    """(referrer, referee, referrer joined, referee joined) of the campaign's live referrals."""
    from sqlalchemy.orm import aliased

    referrer = aliased(Participant)
    referee = aliased(Participant)
    rows = session.execute(
        select(
            Referral.referrer_participant_id,
            Referral.referee_participant_id,
            referrer.joined_at,
            referee.joined_at,
        )
        .join(referrer, referrer.id == Referral.referrer_participant_id)
        .join(referee, referee.id == Referral.referee_participant_id)
        .where(Referral.campaign_id == campaign_id, Referral.status == "approved")
    ).all()
    return [(a, b, ta, tb) for a, b, ta, tb in rows]


def participant_count(session: Session, campaign_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Participant)
            .where(Participant.campaign_id == campaign_id)
        )
        or 0
    )


# ── the join / help hot path ─────────────────────────────────────────────────────────────────
#
# Joins and helps run while the database's write lock is held (BEGIN IMMEDIATE on SQLite, the
# row lock on PostgreSQL), so every microsecond spent there is paid by every waiting writer.
# These statements are built once and compiled once per dialect (``kit.precompiled``): no ORM
# identity map, no per-call statement building, cache-key generation or result wrapping, only
# the columns the reply needs. They do not autoflush: ``hot_connection`` flushes first.

_groups: Table = Group.__table__  # type: ignore[assignment]
_members: Table = GroupMember.__table__  # type: ignore[assignment]
_assists: Table = Assist.__table__  # type: ignore[assignment]
_helps: Table = AssistHelp.__table__  # type: ignore[assignment]
_campaigns: Table = Campaign.__table__  # type: ignore[assignment]
_contacts: Table = Contact.__table__  # type: ignore[assignment]


def hot_connection(session: Session) -> Connection:
    """The session's connection for the statements below, with pending ORM changes written
    first (what autoflush does before ``session.execute``)."""
    session.flush()
    return session.connection()


CONTACT_ID = Precompiled(
    select(_contacts.c.id).where(
        _contacts.c.workspace_id == bindparam("workspace_id"),
        _contacts.c.external_id == bindparam("external_id"),
    )
)

GROUP_FOR_JOIN = Precompiled(
    select(
        _groups.c.id, _groups.c.campaign_id, _groups.c.leader_contact_id, _groups.c.size,
        _groups.c.price, _groups.c.member_count, _groups.c.status, _groups.c.expires_at,
        _campaigns.c.config,
    )
    .join(_campaigns, _campaigns.c.id == _groups.c.campaign_id)
    .where(_groups.c.id == bindparam("group_id"), _groups.c.workspace_id == bindparam("workspace_id"))
    .with_for_update(of=_groups)
)  # fmt: skip

GROUP_MEMBERS = Precompiled(
    select(
        _members.c.contact_id, _contacts.c.external_id, _members.c.is_leader, _members.c.seat,
        _members.c.price, _members.c.order_status, _members.c.joined_at,
    )
    .join(_contacts, _contacts.c.id == _members.c.contact_id)
    .where(_members.c.group_id == bindparam("group_id"))
    .order_by(_members.c.seat)
)  # fmt: skip

TAKE_SEAT = Precompiled(
    update(_groups)
    .where(
        _groups.c.id == bindparam("group_id"),
        _groups.c.status == "open",
        _groups.c.member_count == bindparam("seat"),
        _groups.c.member_count < _groups.c.size,
    )
    .values(member_count=bindparam("seat") + 1)
)

# The last seat taken: the group succeeds (once) and its members' orders are confirmed.
GROUP_SUCCEEDS = Precompiled(
    update(_groups)
    .where(_groups.c.id == bindparam("group_id"), _groups.c.status == "open")
    .values(status="success", completed_at=bindparam("completed_at", type_=UTCDateTime))
)

CONFIRM_ORDERS = Precompiled(
    update(_members)
    .where(_members.c.group_id == bindparam("group_id"), _members.c.order_status == "pending")
    .values(order_status="confirmed")
)

INSERT_MEMBER = insert_columns(
    _members,
    ("id", "group_id", "workspace_id", "contact_id", "seat", "is_leader", "price",
     "order_status", "joined_at"),
)  # fmt: skip

ASSIST_FOR_HELP = Precompiled(
    select(
        _assists.c.id, _assists.c.campaign_id, _assists.c.owner_contact_id,
        _assists.c.owner_visitor_id, _assists.c.owner_ip_hash, _assists.c.owner_user_agent,
        _assists.c.mode, _assists.c.helpers_count, _assists.c.helpers_required,
        _assists.c.price_now, _assists.c.status, _assists.c.expires_at, _campaigns.c.config,
        _contacts.c.external_id.label("owner_external_id"),
    )
    .join(_campaigns, _campaigns.c.id == _assists.c.campaign_id)
    .join(_contacts, _contacts.c.id == _assists.c.owner_contact_id)
    .where(_assists.c.id == bindparam("assist_id"), _assists.c.workspace_id == bindparam("workspace_id"))
    .with_for_update(of=_assists)
)  # fmt: skip

# One read for both help rules: has this person helped this activity (ever), and how many
# activities have they helped since a day ago (the per-day cap).
HELPER_HISTORY = Precompiled(
    select(
        func.count(case((_helps.c.assist_id == bindparam("assist_id"), 1))),
        func.count(case((_helps.c.created_at >= bindparam("since", type_=UTCDateTime), 1))),
    ).where(_helps.c.helper_contact_id == bindparam("helper_contact_id"))
)

MOVE_HELP = Precompiled(
    update(_assists)
    .where(
        _assists.c.id == bindparam("assist_id"),
        _assists.c.helpers_count == bindparam("index"),
        _assists.c.status == "open",
    )
    .values(
        helpers_count=bindparam("index") + 1,
        price_now=func.coalesce(bindparam("price_after", type_=Integer), _assists.c.price_now),
        status=bindparam("new_status"),
        unlocked_at=bindparam("unlocked_at", type_=UTCDateTime),
    )
)

INSERT_HELP = insert_columns(
    _helps,
    ("id", "assist_id", "workspace_id", "helper_contact_id", "helper_index", "cut",
     "price_after", "visitor_id", "created_at"),
)  # fmt: skip

ASSIST_HELPS = Precompiled(
    select(
        _contacts.c.external_id, _helps.c.helper_index, _helps.c.cut, _helps.c.price_after,
        _helps.c.created_at,
    )
    .join(_contacts, _contacts.c.id == _helps.c.helper_contact_id)
    .where(_helps.c.assist_id == bindparam("assist_id"))
    .order_by(_helps.c.helper_index)
)  # fmt: skip

CONTACT_EXTERNAL_ID = Precompiled(
    select(_contacts.c.external_id).where(_contacts.c.id == bindparam("id"))
)

# INSERT … ON CONFLICT DO NOTHING RETURNING: the same SQL on both databases, built with each
# one's dialect construct.
_NEW_CONTACT_COLUMNS = ("id", "workspace_id", "external_id", "created_at", "updated_at")
_INSERT_CONTACT = {
    name: Precompiled(
        maker(_contacts)
        .values({c: bindparam(c, type_=_contacts.c[c].type) for c in _NEW_CONTACT_COLUMNS})
        .on_conflict_do_nothing(index_elements=["workspace_id", "external_id"])
        .returning(_contacts.c.id)
    )
    for name, maker in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


# Columns the INSERT above carries because the model gives them a Python-side default
# (counters added by contacts): the precompiled statement binds every one, so they are
# passed explicitly, or the row would get NULL where the column is NOT NULL.
_CONTACT_DEFAULTS = {
    c.name: c.default.arg
    for c in _contacts.c
    if isinstance(c.default, ScalarElementColumnDefault) and c.name not in _NEW_CONTACT_COLUMNS
}


def contact_id(conn: Connection, workspace_id: str, external_id: str) -> str:
    """The id of the contact for ``external_id``, created on first sight.

    ``contacts.service.upsert`` without PII, in one or two statements: the person is usually
    known already (a read), else one INSERT … ON CONFLICT DO NOTHING RETURNING.
    """
    key = {"workspace_id": workspace_id, "external_id": external_id}
    found = CONTACT_ID.execute(conn, key).scalar()
    if found is not None:
        return str(found)
    now = utcnow()
    new = (
        _INSERT_CONTACT[conn.dialect.name]
        .execute(
            conn,
            {**_CONTACT_DEFAULTS, **key, "id": new_id("ctc"), "created_at": now, "updated_at": now},
        )
        .scalar()
    )
    if new is None:  # a concurrent request created it first (PostgreSQL; SQLite serializes)
        new = CONTACT_ID.execute(conn, key).one()[0]
    return str(new)


def take_stock(
    conn: Connection, campaign_id: str, config: dict[str, Any], *, units: int = 1, amount: int = 0
) -> bool:
    """``service.take_stock`` from the campaign's id and stored config, with one statement
    per shape (stock limit or not, budget limit or not) instead of per call."""
    stock = config.get("stock")
    budget = config.get("budget")
    params: dict[str, Any] = {"campaign_id": campaign_id, "units": units, "amount": amount}
    if stock is not None:
        params["stock"] = stock
    if budget is not None:
        params["budget"] = budget
    return bool(_TAKE_STOCK[(stock is not None, budget is not None)].execute(conn, params).rowcount)


def _take_stock_statement(stock_limit: bool, budget_limit: bool) -> Precompiled:
    stmt = update(_campaigns).where(_campaigns.c.id == bindparam("campaign_id"))
    if stock_limit:
        stmt = stmt.where(_campaigns.c.stock_used + bindparam("units") <= bindparam("stock"))
    if budget_limit:
        stmt = stmt.where(_campaigns.c.budget_used + bindparam("amount") <= bindparam("budget"))
    return Precompiled(
        stmt.values(
            stock_used=_campaigns.c.stock_used + bindparam("units"),
            budget_used=_campaigns.c.budget_used + bindparam("amount"),
        )
    )


_TAKE_STOCK = {
    (stock, budget): _take_stock_statement(stock, budget)
    for stock in (False, True)
    for budget in (False, True)
}


def activity_campaign(session: Session, kind: str, activity_id: str) -> str | None:
    """The campaign of a group (``kind`` "group") or an assist ("assist")."""
    model: Any = Group if kind == "group" else Assist
    found: str | None = session.scalar(select(model.campaign_id).where(model.id == activity_id))
    return found


def activity_rows(session: Session, kind: str, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """Per group or assist, what its page shows that moves — status, counts, price, deadline
    (names of members and helpers change with the counts) — as plain rows: the cheap check
    whether a cached page is still right."""
    if kind == "group":
        columns: tuple[Any, ...] = (
            Group.id, Group.status, Group.member_count, Group.size, Group.price, Group.expires_at,
        )  # fmt: skip
    else:
        columns = (
            Assist.id, Assist.status, Assist.helpers_count, Assist.helpers_required,
            Assist.price_now, Assist.expires_at,
        )  # fmt: skip
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(ids), 500):
        rows = session.execute(select(*columns).where(columns[0].in_(ids[start : start + 500])))
        found.update((r[0], tuple(r[1:])) for r in rows)
    return found
