"""Communities' periodic job: date-derived tiers move as time passes.

Every run looks at each active community with an age tier and offers every member whose tier,
computed again as of today in the workspace's time zone, is now another one (a child turning
3 is due for the 3–8 group): one owner task per member and new tier (deduplicated by
``ctm:<member>:<tier>``, so hourly runs never repeat an offer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select

from liebian.communities import service
from liebian.communities.models import Community
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.links.domains import public_base_url
from liebian.workspaces.models import Workspace

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime


def offer_due_moves(runtime: Runtime) -> int:
    """Offer every due tier move of every community; returns how many tasks were made or
    found (already offered)."""
    made = 0
    with session_scope(runtime.read_sessions) as session:
        ids = [
            (c.id, c.workspace_id)
            for c in session.scalars(select(Community).where(Community.status == "active"))
            if any(t.get("age") for t in c.tiers or [])
        ]
    for community_id, workspace_id in ids:
        with session_scope(runtime.sessions) as session:
            community = session.get(Community, community_id)
            ws = session.get(Workspace, workspace_id)
            if community is None:
                continue
            today = utcnow().astimezone(ZoneInfo(ws.timezone if ws else "Asia/Shanghai")).date()
            base = public_base_url(session, workspace_id, runtime.settings.base_url)
            made += len(service.offer_moves(session, community, today, f"{base}/c/{community.id}"))
    return made
