"""``GET /api/v1/links/{id}/stats``: click totals for one link, aggregated inside the store.

Current within the flush interval by construction, and exactly current here: the handler
flushes the spool before it queries. Clicks are humans only; bots (UA-detected, and every
``HEAD``) are counted apart under ``bot_clicks``, so ``by_platform`` and ``by_day`` each add up
to ``clicks``. ``by_day`` buckets in the workspace's time zone.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.app.runtime import Runtime
from liebian.events.store.base import EventStore
from liebian.kit.errors import NotFound
from liebian.links.models import Link
from liebian.workspaces.models import Workspace

router = APIRouter(tags=["links"])


class LinkStats(BaseModel):
    link_id: str
    clicks: int
    bot_clicks: int
    unique_visitors: int
    qr_scans: int
    by_platform: dict[str, int]
    by_day: dict[str, int]
    timezone: str


_DUCK = {
    "totals": (
        "SELECT count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot),"
        " count(DISTINCT NULLIF(visitor_id, '')) FILTER (WHERE NOT is_bot),"
        " count(*) FILTER (WHERE NOT is_bot AND is_qr)"
        " FROM {t} WHERE workspace_id = $ws AND link_id = $link AND event = 'click'"
    ),
    "platforms": (
        "SELECT coalesce(NULLIF(platform, ''), 'browser') AS p, count(*) FROM {t}"
        " WHERE workspace_id = $ws AND link_id = $link AND event = 'click' AND NOT is_bot"
        " GROUP BY p"
    ),
    "days": (
        "SELECT strftime(CAST(timezone($tz, timezone('UTC', ts)) AS DATE), '%Y-%m-%d') AS d,"
        " count(*) FROM {t} WHERE workspace_id = $ws AND link_id = $link AND event = 'click'"
        " AND NOT is_bot GROUP BY d ORDER BY d"
    ),
    "humans": ("SELECT count(*) FROM {t} WHERE link_id = $link AND event = 'click' AND NOT is_bot"),
}
_CLICKHOUSE = {
    "totals": (
        "SELECT countIf(NOT is_bot), countIf(is_bot),"
        " uniqExactIf(visitor_id, NOT is_bot AND visitor_id != ''), countIf(NOT is_bot AND is_qr)"
        " FROM {t} WHERE workspace_id = {{ws:String}} AND link_id = {{link:String}}"
        " AND event = 'click'"
    ),
    "platforms": (
        "SELECT if(platform = '', 'browser', platform) AS p, count()"
        " FROM {t} WHERE workspace_id = {{ws:String}} AND link_id = {{link:String}}"
        " AND event = 'click' AND NOT is_bot GROUP BY p"
    ),
    "days": (
        "SELECT toString(toDate(toTimeZone(ts, {{tz:String}}))) AS d, count() FROM {t}"
        " WHERE workspace_id = {{ws:String}} AND link_id = {{link:String}} AND event = 'click'"
        " AND NOT is_bot GROUP BY d ORDER BY d"
    ),
    "humans": (
        "SELECT count() FROM {t} WHERE link_id = {{link:String}} AND event = 'click' AND NOT is_bot"
    ),
}


def _run(store: EventStore, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    sql = (_CLICKHOUSE if store.dialect == "clickhouse" else _DUCK)[name]
    return store.query(sql.format(t=store.events_table), params)


def flush(runtime: Runtime) -> None:
    """Load the spool now. The background flusher may be draining the same segment at this
    moment (it deletes after loading, and the store skips a segment already loaded), so a
    vanished file just means it got there first."""
    for _ in range(3):
        try:
            runtime.flush_events()
            return
        except FileNotFoundError:
            continue


def human_clicks(runtime: Runtime, link_id: str) -> int:
    """Human clicks ever recorded for a link: the seed of its ``max_clicks`` counter."""
    store = runtime.event_store
    if store is None:
        return 0
    flush(runtime)
    rows = _run(store, "humans", {"link": link_id})
    return int(rows[0][0]) if rows else 0


def link_stats(store: EventStore, workspace_id: str, link_id: str, tz: str) -> LinkStats:
    params = {"ws": workspace_id, "link": link_id}
    totals = _run(store, "totals", params)[0]
    platforms = {str(p): int(n) for p, n in _run(store, "platforms", params)}
    days = {str(d): int(n) for d, n in _run(store, "days", {**params, "tz": tz})}
    return LinkStats(
        link_id=link_id,
        clicks=int(totals[0] or 0),
        bot_clicks=int(totals[1] or 0),
        unique_visitors=int(totals[2] or 0),
        qr_scans=int(totals[3] or 0),
        by_platform=platforms,
        by_day=days,
        timezone=tz,
    )


@router.get("/links/{link_id}/stats", response_model=LinkStats)
def get_link_stats(
    link_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> LinkStats:
    found = session.execute(
        select(Link.id, Workspace.timezone)
        .join(Workspace, Workspace.id == Link.workspace_id)
        .where(Link.id == link_id, Link.workspace_id == principal.workspace_id)
    ).first()
    if found is None:
        # Another workspace's link is indistinguishable from a missing one.
        raise NotFound("link not found", code="link_not_found")
    store = runtime.event_store
    if store is None:
        raise NotFound("the event store is not running in this process", code="no_event_store")
    flush(runtime)
    return link_stats(store, principal.workspace_id, link_id, found[1] or "Asia/Shanghai")
