"""Group mass posts (企业群发, ``add_msg_template`` chat_type group) to a community's WeCom
customer groups, from an operator or the content calendar.

WeCom delivers a group mass message only after the group's owner confirms it in the WeCom app,
and only from that owner: so a post becomes one WeCom task per owner (``sender`` = the group's
``owner_wecom_userid``) over that owner's groups (``chat_id_list``), written through the
connector (connectors/wecom/group_sends.py) under the key ``<idempotency key>:<owner>`` — the
same request again returns the recorded tasks and asks WeCom nothing. Groups without a chat id
or an owner userid are listed as skipped; groups that received WeCom's monthly 4 are left out
by the connector (``over_cap``). All tasks of a community carry the source
``community:<id>``, so the calendar's posts (one task per group and day, key
``cps:<send id>``) are listed with the operator's.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from liebian.communities import repository, service
from liebian.communities.models import Community, CommunityGroup
from liebian.kit.auth import Principal
from liebian.kit.db import session_scope
from liebian.kit.errors import Conflict, Invalid

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime


def source_of(community_id: str) -> str:
    return f"community:{community_id}"


def connected(session: Session, workspace_id: str) -> bool:
    from liebian.connectors.wecom.repository import connection_of

    return connection_of(session, workspace_id) is not None


def postable(group: CommunityGroup) -> bool:
    """A group the calendar and operators post to through WeCom's group mass send."""
    return (
        group.platform == "wecom"
        and group.status != "archived"
        and bool(group.chat_id)
        and bool(group.owner_wecom_userid)
    )


def post(
    runtime: Runtime, principal: Principal, community_id: str, *, idempotency_key: str,
    text: str, group_ids: list[str] | None,
) -> dict[str, Any]:  # fmt: skip
    from liebian.connectors.wecom import group_sends

    with session_scope(runtime.sessions) as session:
        community = service.get(session, principal, community_id)
        service.authorize(principal, service.WRITE)
        service.require_whole(session, principal, community)
        groups = [g for g in repository.groups_of(session, community.id) if g.platform == "wecom"]
        if group_ids is not None:
            known = {g.id for g in groups}
            missing = [g for g in group_ids if g not in known]
            if missing:
                raise Invalid(
                    f"no WeCom group {missing[0]!r} in this community", code="group_not_found",
                    details={"field": "group_ids", "group_ids": missing[:20]},
                )  # fmt: skip
            groups = [g for g in groups if g.id in set(group_ids)]
        groups = [g for g in groups if g.status != "archived"]
        skipped = [
            {"group_id": g.id, "name": g.name,
             "reason": "no_chat_id" if not g.chat_id else "no_owner_wecom_userid"}
            for g in groups if not postable(g)
        ]  # fmt: skip
        by_owner: dict[str, list[str]] = defaultdict(list)
        for g in groups:
            if postable(g):
                by_owner[str(g.owner_wecom_userid)].append(str(g.chat_id))
        if not by_owner:
            raise Invalid(
                "no WeCom customer group of this community can be posted to: a group needs its "
                "chat_id and its owner's WeCom userid (owner_wecom_userid)",
                code="no_wecom_groups", details={"skipped": skipped[:50]},
            )  # fmt: skip
        if not connected(session, principal.workspace_id):
            raise Conflict(
                "this workspace has no WeCom connection; PUT /api/v1/connectors/wecom first",
                code="wecom_not_connected",
            )
        row_ids = [
            group_sends.record_group_send(
                session, principal.workspace_id, idempotency_key=f"{idempotency_key}:{owner}",
                sender=owner, chat_ids=chats, text=text, source=source_of(community.id),
            )[0]
            for owner, chats in sorted(by_owner.items())
        ]  # fmt: skip
    for row_id in row_ids:  # committed first: WeCom is asked once per task, here or by poll
        group_sends.dispatch(runtime, principal.workspace_id, row_id)
    with runtime.read_sessions() as session:
        return {
            "items": [present(session, community_id, r) for r in _rows(session, row_ids)],
            "skipped": skipped, "monthly_cap": group_sends.MONTHLY_CAP,
        }  # fmt: skip


def _rows(session: Session, ids: list[str]) -> list[Any]:
    from liebian.connectors.wecom.models import WecomMassSend

    return [r for r in (session.get(WecomMassSend, i) for i in ids) if r is not None]


def listing(session: Session, principal: Principal, community: Community) -> dict[str, Any]:
    from liebian.connectors.wecom import group_sends

    rows = group_sends.tasks_of_source(session, principal.workspace_id, source_of(community.id))
    return {
        "items": [present(session, community.id, r) for r in rows], "skipped": [],
        "monthly_cap": group_sends.MONTHLY_CAP,
    }  # fmt: skip


def present(session: Session, community_id: str, row: Any) -> dict[str, Any]:
    """A task with its recipients as the community's groups (by chat id)."""
    from liebian.connectors.wecom import group_sends

    view = group_sends.view(row)
    names = {g.chat_id: g for g in repository.groups_of(session, community_id) if g.chat_id}
    return {
        "id": view.id, "sender": view.sender, "status": view.status, "progress": view.progress,
        "text": view.text, "month": view.month, "errcode": view.errcode, "errmsg": view.errmsg,
        "created_at": view.created_at, "results_at": view.results_at,
        "groups": [
            {"group_id": names[i.target].id if i.target in names else None,
             "name": names[i.target].name if i.target in names else i.target,
             "chat_id": i.target, "status": i.status, "reason": i.reason}
            for i in view.items
        ],
    }  # fmt: skip
