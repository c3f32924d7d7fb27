"""Joins and leaves of WeCom customer groups, from the connector's bus topics.

``wecom.group_changed`` {workspace_id, chat_id, change, joins, leaves} arrives after the
connector committed the (deduplicated) callback. For a group of ours with that ``chat_id``:
each joining customer is recorded as joined (a member routed by a scan is confirmed; someone
who came another way gets a row, counted past capacity — the join happened), each leaving one
as left (the place is given back); ``dismiss`` archives the group. Staff members in the
change list are skipped: customers are the ids WeCom gives external contacts (``wo…``/``wm…``)
or ids already known as a contact's ``wecom_external_userid`` alias.

Customers are found or created the connector's way (alias ``wecom_external_userid``, a new
contact named ``wecom:<external_userid>``), through the contacts service: no connector
internals are imported.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from liebian.communities import repository, service
from liebian.communities.models import Community, CommunityMember
from liebian.contacts import identity
from liebian.contacts import service as contacts
from liebian.contacts.repository import by_alias
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime

log = logging.getLogger("liebian.communities")
GROUP_CHANGED = "wecom.group_changed"
ALIAS = "wecom_external_userid"


def _userid(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("userid") or item.get("UserId") or item.get("external_userid") or "")
    return str(item or "")


def _customer(session: Session, workspace_id: str, userid: str) -> str | None:
    contact = by_alias(session, workspace_id, ALIAS, userid)
    if contact is not None:
        return contact.id
    if not userid.startswith(("wo", "wm")):
        return None  # a staff member of the corp, not a customer
    external_id = f"wecom:{userid}"
    contact_id = contacts.ensure_ids(session, workspace_id, {external_id})[external_id]
    identity.attach(session, workspace_id, contact_id, ALIAS, userid)
    return contact_id


def apply_group_change(session: Session, payload: dict[str, Any]) -> int:
    """Apply one ``wecom.group_changed``; returns how many members changed."""
    workspace_id = str(payload.get("workspace_id") or "")
    chat_id = str(payload.get("chat_id") or "")
    group = repository.group_by_chat(session, workspace_id, chat_id) if chat_id else None
    if group is None:
        return 0
    community = session.get(Community, group.community_id)
    assert community is not None
    changed = 0
    if payload.get("change") == "dismiss":
        for member in session.query(CommunityMember).filter(
            CommunityMember.group_id == group.id, CommunityMember.status.in_(("routed", "joined"))
        ):
            service.mark_left(session, community, group, member)
            changed += 1
        group.status, group.updated_at = "archived", utcnow()
        return changed
    for item in payload.get("joins") or ():
        contact_id = _customer(session, workspace_id, _userid(item))
        if contact_id is not None:
            service.join_known(session, community, group, contact_id, "wecom")
            changed += 1
    for item in payload.get("leaves") or ():
        contact_id = _customer(session, workspace_id, _userid(item))
        if contact_id is not None and service.leave_known(session, community, group, contact_id):
            changed += 1
    return changed


def install(runtime: Runtime) -> None:
    def on_group_changed(payload: Any) -> None:
        try:
            with session_scope(runtime.sessions) as session:
                apply_group_change(session, dict(payload or {}))
        except Exception:  # the callback stands (WeCom got its answer); log what was lost
            log.exception("wecom group change not applied to communities: %r", payload)

    runtime.bus.subscribe(GROUP_CHANGED, on_group_changed)
