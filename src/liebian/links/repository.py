"""All SQL for links and the slug registry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.orm import Session

from liebian.kit.pagination import paginate
from liebian.links.models import Link, LinkTag, Slug

# SQLite (≥ 3.32) allows 32,766 bound parameters per statement; a bulk call's 10,000 slugs fit
# in two statements.
_IN_CHUNK = 5000


def get_link(session: Session, workspace_id: str, link_id: str) -> Link | None:
    return session.scalars(
        select(Link).where(Link.workspace_id == workspace_id, Link.id == link_id)
    ).first()


def taken_slugs(session: Session, slugs: Iterable[str]) -> set[str]:
    wanted = list(slugs)
    found: set[str] = set()
    for i in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[i : i + _IN_CHUNK]
        found.update(session.scalars(select(Slug.slug).where(Slug.slug.in_(chunk))))
    return found


def list_links(
    session: Session,
    workspace_id: str,
    *,
    tag: str | None,
    channel: str | None,
    search: str | None,
    cursor: str | None,
    limit: int,
) -> list[Link]:
    stmt = select(Link).where(Link.workspace_id == workspace_id)
    if channel:
        stmt = stmt.where(Link.channel == channel)
    if tag:
        stmt = stmt.where(
            Link.id.in_(
                select(LinkTag.link_id).where(
                    LinkTag.workspace_id == workspace_id, LinkTag.tag == tag
                )
            )
        )
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        stmt = stmt.where(
            or_(
                Link.slug.ilike(pattern, escape="\\"),
                Link.url.ilike(pattern, escape="\\"),
                Link.title.ilike(pattern, escape="\\"),
            )
        )
    return list(session.scalars(paginate(stmt, Link.id, cursor, limit)))


def iter_links(session: Session, workspace_id: str, batch: int = 1000) -> Iterable[Link]:
    last = ""
    while True:
        rows = list(
            session.scalars(
                select(Link)
                .where(Link.workspace_id == workspace_id, Link.id > last)
                .order_by(Link.id)
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def bulk_insert(
    session: Session,
    links: Sequence[dict[str, Any]],
    slugs: Sequence[dict[str, Any]],
    tags: Sequence[dict[str, Any]],
) -> None:
    """Core inserts on the session's connection (no ORM bookkeeping per row): 10,000 rows are
    one executemany per table inside the request's transaction."""
    connection = session.connection()
    connection.execute(insert(Slug), list(slugs))
    connection.execute(insert(Link), list(links))
    if tags:
        connection.execute(insert(LinkTag), list(tags))


def delete_slug(session: Session, slug: str) -> None:
    session.execute(delete(Slug).where(Slug.slug == slug))
