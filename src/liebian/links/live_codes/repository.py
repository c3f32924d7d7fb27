"""All SQL for live codes, including the scan claim that keeps targets within capacity.

The claim is one conditional UPDATE (``scans = scans + 1 WHERE scans < capacity AND …``) whose
row count says whether this scan got a place. PostgreSQL re-evaluates the WHERE clause against
the newest row version after waiting for a concurrent updater's lock (READ COMMITTED), and
SQLite runs each transaction under BEGIN IMMEDIATE (see ``kit.db``), so no two scans can take
the last place of a target.

Image bytes are deferred everywhere except the image endpoint: a scan or a list must not pull
megabytes of group QR screenshots out of the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer, selectinload

from liebian.kit.pagination import paginate
from liebian.links.live_codes.models import LiveCodeAlert, LiveCodeSeat
from liebian.links.models import LiveCode, LiveCodeTarget, Slug

T = LiveCodeTarget


def usable_clause(now: datetime) -> ColumnElement[bool]:
    """What "usable" means, in SQL: enabled, not expired, with places left."""
    return and_(
        T.enabled.is_(True),
        T.scans < T.capacity,
        or_(T.expires_at.is_(None), T.expires_at > now),
    )


def _with_targets() -> list[object]:
    return [selectinload(LiveCode.targets).options(defer(T.image))]


def get(session: Session, workspace_id: str, live_code_id: str) -> LiveCode | None:
    return session.scalars(
        select(LiveCode)
        .where(LiveCode.id == live_code_id, LiveCode.workspace_id == workspace_id)
        .options(*_with_targets())  # type: ignore[arg-type]
    ).first()


def list_page(
    session: Session, workspace_id: str, cursor: str | None, limit: int, channel: str | None
) -> list[LiveCode]:
    stmt = select(LiveCode).where(LiveCode.workspace_id == workspace_id)
    if channel:
        stmt = stmt.where(LiveCode.channel == channel)
    stmt = paginate(stmt, LiveCode.id, cursor, limit).options(*_with_targets())  # type: ignore[arg-type]
    return list(session.scalars(stmt))


def slug_taken(session: Session, slug: str) -> bool:
    return session.get(Slug, slug) is not None


def target_image(
    session: Session, live_code_id: str, target_id: str, workspace_id: str | None
) -> tuple[bytes, str] | None:
    stmt = (
        select(T.image, T.image_type)
        .join(LiveCode, LiveCode.id == T.live_code_id)
        .where(T.id == target_id, T.live_code_id == live_code_id, T.image.is_not(None))
    )
    if workspace_id is not None:
        stmt = stmt.where(LiveCode.workspace_id == workspace_id)
    row = session.execute(stmt).first()
    if row is None or row.image is None:
        return None
    return bytes(row.image), row.image_type or "application/octet-stream"


# -- the scan path -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScanHead:
    id: str
    workspace_id: str
    slug: str
    name: str
    channel: str | None
    alert_below: int
    alerted: bool


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    label: str
    url: str | None
    image_type: str | None


def scan_head(session: Session, live_code_id: str) -> ScanHead | None:
    row = session.execute(
        select(
            LiveCode.id,
            LiveCode.workspace_id,
            LiveCode.slug,
            LiveCode.name,
            LiveCode.channel,
            LiveCode.alert_below,
            LiveCode.alerted_at,
        ).where(LiveCode.id == live_code_id)
    ).first()
    if row is None:
        return None
    return ScanHead(
        row.id, row.workspace_id, row.slug, row.name, row.channel, row.alert_below,
        row.alerted_at is not None,
    )  # fmt: skip


def usable_candidates(session: Session, live_code_id: str, now: datetime) -> list[Candidate]:
    rows = session.execute(
        select(T.id, T.label, T.url, T.image_type)
        .where(T.live_code_id == live_code_id, usable_clause(now))
        .order_by(T.position, T.id)
    )
    return [Candidate(r.id, r.label, r.url, r.image_type) for r in rows]


def claim_place(session: Session, target_id: str, now: datetime) -> bool:
    """Take one place on the target if it is still usable; True when this scan got it."""
    result = session.execute(
        update(T)
        .where(T.id == target_id, usable_clause(now))
        .values(scans=T.scans + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def seat_target(
    session: Session, live_code_id: str, holders: Sequence[str], now: datetime
) -> Candidate | None:
    """The target one of these holders already has a place on (the first holder's first),
    if it is still enabled and unexpired (full or not: the place is theirs)."""
    row = session.execute(
        select(T.id, T.label, T.url, T.image_type)
        .join(LiveCodeSeat, LiveCodeSeat.target_id == T.id)
        .where(
            LiveCodeSeat.live_code_id == live_code_id,
            LiveCodeSeat.holder.in_(list(holders)),
            T.enabled.is_(True),
            or_(T.expires_at.is_(None), T.expires_at > now),
        )
        .order_by(LiveCodeSeat.holder != holders[0])
    ).first()
    return None if row is None else Candidate(row.id, row.label, row.url, row.image_type)


def take_seat(
    session: Session, live_code_id: str, holder: str, target_id: str, now: datetime
) -> bool:
    """Record the holder's place; False when a concurrent scan of theirs recorded one first
    (PostgreSQL; SQLite serializes writers). Only this row is rolled back then."""
    existing = session.get(LiveCodeSeat, (live_code_id, holder))
    try:
        with session.begin_nested():
            if existing is None:
                session.add(
                    LiveCodeSeat(
                        live_code_id=live_code_id,
                        holder=holder,
                        target_id=target_id,
                        created_at=now,
                    )
                )
            else:  # their old target was disabled or expired: the new place replaces it
                existing.target_id = target_id
                existing.created_at = now
            session.flush()
    except IntegrityError:
        return False
    return True


def release_place(session: Session, target_id: str) -> None:
    session.execute(
        update(T)
        .where(T.id == target_id, T.scans > 0)
        .values(scans=T.scans - 1)
        .execution_options(synchronize_session=False)
    )


def count_usable(session: Session, live_code_id: str, now: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(T)
            .where(T.live_code_id == live_code_id, usable_clause(now))
        )
        or 0
    )


def latch_alert(session: Session, live_code_id: str, now: datetime) -> bool:
    """Set ``alerted_at`` unless already set; True for the one transaction that set it.

    The same conditional-UPDATE pattern as the claim: concurrent scans that all see the count
    drop below the threshold race here, and exactly one wins, so one crossing makes one alert.
    """
    result = session.execute(
        update(LiveCode)
        .where(LiveCode.id == live_code_id, LiveCode.alerted_at.is_(None))
        .values(alerted_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def rearm_alert(session: Session, live_code_id: str) -> None:
    session.execute(
        update(LiveCode)
        .where(LiveCode.id == live_code_id, LiveCode.alerted_at.is_not(None))
        .values(alerted_at=None)
        .execution_options(synchronize_session="fetch")
    )


def add_alert(session: Session, alert: LiveCodeAlert) -> None:
    session.add(alert)
    session.flush()


def list_alerts(
    session: Session, live_code_id: str, cursor: str | None, limit: int
) -> list[LiveCodeAlert]:
    stmt = paginate(
        select(LiveCodeAlert).where(LiveCodeAlert.live_code_id == live_code_id),
        LiveCodeAlert.id,
        cursor,
        limit,
    )
    return list(session.scalars(stmt))


def delete_slug(session: Session, slug: str) -> None:
    session.execute(delete(Slug).where(Slug.slug == slug))
