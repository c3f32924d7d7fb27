"""All SQL of communities. The place counter moves only through conditional UPDATEs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, literal, select, update
from sqlalchemy.orm import Session, aliased

from liebian.communities.models import Community, CommunityAlert, CommunityGroup, CommunityMember
from liebian.kit.pagination import paginate

G = CommunityGroup


def communities_page(
    session: Session,
    workspace_id: str,
    cursor: str | None,
    limit: int,
    only: frozenset[str] | None = None,
) -> list[Community]:
    stmt = select(Community).where(Community.workspace_id == workspace_id)
    if only is not None:  # a data scope (service.visible)
        stmt = stmt.where(Community.id.in_(sorted(only)))
    return list(session.scalars(paginate(stmt, Community.id, cursor, limit)))


def groups_of(session: Session, community_id: str) -> list[CommunityGroup]:
    return list(session.scalars(select(G).where(G.community_id == community_id).order_by(G.id)))


def group_by_chat(session: Session, workspace_id: str, chat_id: str) -> CommunityGroup | None:
    return session.scalars(
        select(G).where(G.workspace_id == workspace_id, G.chat_id == chat_id)
    ).first()


def candidates(session: Session, community_id: str, tier: str | None) -> list[str]:
    """Open groups of the tier with room, oldest first (fill one group before the next)."""
    stmt = select(G.id).where(
        G.community_id == community_id, G.status == "open", G.members < G.capacity
    )
    if tier is not None:
        stmt = stmt.where(G.tier == tier)
        return list(session.scalars(stmt.order_by(G.id)))
    # No tier decided: untiered groups first, then any.
    return list(session.scalars(stmt.order_by(G.tier.is_not(None), G.id)))


def claim_place(session: Session, group_id: str) -> bool:
    """Take one place if the group is open and has room; True when this caller got it.

    One statement: on PostgreSQL a concurrent claim waits for the row and re-checks
    ``members < capacity`` against the committed value (READ COMMITTED re-evaluation); on
    SQLite writers are serialized. The group turns "full" in the same statement."""
    result = session.execute(
        update(G)
        .where(G.id == group_id, G.status == "open", G.members < G.capacity)
        .values(
            members=G.members + 1,
            status=case((G.members + 1 >= G.capacity, "full"), else_=G.status),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def force_place(session: Session, group_id: str) -> None:
    """Count a join the platform reports (it happened: no capacity check), full when at cap."""
    session.execute(
        update(G)
        .where(G.id == group_id)
        .values(
            members=G.members + 1,
            status=case(
                (G.status == "archived", "archived"),
                (G.members + 1 >= G.capacity, "full"),
                else_=G.status,
            ),
        )
        .execution_options(synchronize_session=False)
    )


def release_place(session: Session, group_id: str) -> None:
    session.execute(
        update(G)
        .where(G.id == group_id, G.members > 0)
        .values(
            members=G.members - 1,
            status=case(
                ((G.status == "full") & (G.members - 1 < G.capacity), "open"), else_=G.status
            ),
        )
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True, slots=True)
class Places:
    tier: str | None
    groups_open: int
    places_left: int


def places(
    session: Session, community_id: str, groups: frozenset[str] | None = None
) -> list[Places]:
    """Open groups and places left per tier; ``groups``: only those (a scoped member's)."""
    stmt = select(G.tier, func.count(), func.coalesce(func.sum(G.capacity - G.members), 0)).where(
        G.community_id == community_id, G.status == "open"
    )
    if groups is not None:
        stmt = stmt.where(G.id.in_(groups))
    rows = session.execute(stmt.group_by(G.tier).order_by(G.tier))
    return [Places(r[0], int(r[1]), int(r[2])) for r in rows]


def places_left(session: Session, community_id: str, tier: str | None) -> int:
    stmt = select(func.coalesce(func.sum(G.capacity - G.members), 0)).where(
        G.community_id == community_id, G.status == "open"
    )
    if tier is not None:
        stmt = stmt.where(G.tier == tier)
    return int(session.scalar(stmt) or 0)


def latch_alert(session: Session, community_id: str, now: object) -> bool:
    """Set ``alerted_at`` unless set; True for the one transaction that set it (one crossing,
    one alert, however many scans race)."""
    result = session.execute(
        update(Community)
        .where(Community.id == community_id, Community.alerted_at.is_(None))
        .values(alerted_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def rearm_alert(session: Session, community_id: str) -> None:
    session.execute(
        update(Community)
        .where(Community.id == community_id)
        .values(alerted_at=None)
        .execution_options(synchronize_session="fetch")
    )


def member_by_holder(session: Session, community_id: str, holder: str) -> CommunityMember | None:
    return session.scalars(
        select(CommunityMember).where(
            CommunityMember.community_id == community_id, CommunityMember.holder == holder
        )
    ).first()


def member_by_invite(session: Session, community_id: str, code: str) -> CommunityMember | None:
    return session.scalars(
        select(CommunityMember).where(
            CommunityMember.community_id == community_id, CommunityMember.invite_code == code
        )
    ).first()


def members_page(
    session: Session,
    community_id: str,
    group_ids: list[str] | None,
    cursor: str | None,
    limit: int,
) -> list[CommunityMember]:
    """``group_ids``: only these groups' members (a filter, or a data scope); None: all."""
    stmt = select(CommunityMember).where(CommunityMember.community_id == community_id)
    if group_ids is not None:
        stmt = stmt.where(CommunityMember.group_id.in_(group_ids))
    return list(session.scalars(paginate(stmt, CommunityMember.id, cursor, limit)))


def alerts_page(
    session: Session, community_id: str, cursor: str | None, limit: int
) -> list[CommunityAlert]:
    stmt = select(CommunityAlert).where(CommunityAlert.community_id == community_id)
    return list(session.scalars(paginate(stmt, CommunityAlert.id, cursor, limit)))


def invitations_made(
    session: Session, community_id: str, start: datetime, end: datetime, by: str
) -> dict[str, int]:
    """People given a place in [start, end) through a member's invitation code, counted for
    the inviter's group, tier ('' when none) or the community ('')."""
    inviter = aliased(CommunityMember)
    key = {
        "group": inviter.group_id,
        "tier": func.coalesce(inviter.tier, ""),
    }.get(by, literal(""))
    rows = session.execute(
        select(key, func.count())
        .select_from(CommunityMember)
        .join(inviter, inviter.id == CommunityMember.inviter_member_id)
        .where(
            CommunityMember.community_id == community_id,
            CommunityMember.routed_at >= start,
            CommunityMember.routed_at < end,
        )
        .group_by(key)
    )
    return {str(k or ""): int(n) for k, n in rows}


def members_now(session: Session, community_id: str, by: str) -> dict[str, int]:
    """People joined and not left, per group, tier ('' when none) or the community ('')."""
    key = {
        "group": CommunityMember.group_id,
        "tier": func.coalesce(CommunityMember.tier, ""),
    }.get(by, literal(""))
    rows = session.execute(
        select(key, func.count())
        .where(CommunityMember.community_id == community_id, CommunityMember.status == "joined")
        .group_by(key)
    )
    return {str(k or ""): int(n) for k, n in rows}
