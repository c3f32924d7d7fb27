"""Corp tags (企业标签) mirrored both ways.

WeCom → liebian (``sync_corp_tags``): ``get_corp_tag_list`` is read and each corp tag gets a
liebian tag (in a tag group named after the corp tag group), recorded in ``wecom_tag_map``. A
liebian manual tag of the same name is linked rather than duplicated; a corp tag renamed at
WeCom renames its liebian tag (unless the new name is taken); a corp tag gone from WeCom is
unlinked (its liebian tag and the people carrying it stay).

liebian → WeCom (``push_tag_changes``): the contacts domain writes every tag added to or
removed from a contact to ``tag_changes`` (a durable log). The pusher follows that log with a
cursor per connection and, for mirrored tags, calls ``mark_tag`` for every staff member who
follows the customer (WeCom tags a customer per follow). It runs as a scheduler job; mark_tag
is idempotent at WeCom (adding a present tag, removing an absent one change nothing), so a
crash between a call and the cursor's commit only repeats harmless calls. Rows younger than
``lag`` seconds wait for the next pass, so a transaction that commits late with an older id
is not skipped.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from liebian.connectors.wecom import repository
from liebian.connectors.wecom.client import WecomApiError
from liebian.connectors.wecom.models import WecomConnection, WecomTagMap
from liebian.kit.auth import Principal
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import DomainError, Unavailable

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime

log = logging.getLogger("liebian.wecom")
WECOM_GREEN = "#07c160"
PUSH_BATCH = 1000


def sync_corp_tags(runtime: Runtime, principal: Principal) -> dict[str, int]:
    from liebian.connectors.wecom.service import client_for, require
    from liebian.contacts import tags as contact_tags
    from liebian.contacts.models import Tag, TagGroup

    require(principal, "use")
    ws = principal.workspace_id
    answer = client_for(runtime, ws).get_corp_tag_list()
    counts = {"created": 0, "linked": 0, "renamed": 0, "unlinked": 0, "skipped": 0}
    with session_scope(runtime.sessions) as session:
        maps = {
            m.corp_tag_id: m
            for m in session.scalars(select(WecomTagMap).where(WecomTagMap.workspace_id == ws))
        }
        mapped_tag_ids = {m.tag_id for m in maps.values()}
        seen: set[str] = set()
        for group in answer.get("tag_group") or []:
            group_name = str(group.get("group_name") or "企业微信")[:64]
            for corp_tag in group.get("tag") or []:
                corp_id, name = str(corp_tag.get("id") or ""), str(corp_tag.get("name") or "")[:64]
                if not corp_id or not name or corp_tag.get("deleted"):
                    continue
                seen.add(corp_id)
                link = maps.get(corp_id)
                tag = session.get(Tag, link.tag_id) if link is not None else None
                if link is not None and tag is not None:
                    if tag.name != name:
                        taken = session.scalar(
                            select(Tag.id).where(Tag.workspace_id == ws, Tag.name == name)
                        )
                        if taken is None:
                            tag.name = name
                            counts["renamed"] += 1
                    link.name, link.corp_group_name, link.updated_at = name, group_name, utcnow()
                    continue
                if link is not None:  # its liebian tag was deleted: link again below
                    session.delete(link)
                    session.flush()
                same = session.scalar(select(Tag).where(Tag.workspace_id == ws, Tag.name == name))
                if same is not None and (same.kind != "manual" or same.id in mapped_tag_ids):
                    counts["skipped"] += 1  # a rule tag, or mirrored from another corp tag
                    continue
                if same is None:
                    group_row = session.scalar(
                        select(TagGroup).where(
                            TagGroup.workspace_id == ws, TagGroup.name == group_name
                        )
                    )
                    if group_row is None:
                        group_row = contact_tags.create_group(session, ws, group_name)
                    same = contact_tags.create_tag(session, ws, name, WECOM_GREEN, group_row.id)
                    counts["created"] += 1
                else:
                    counts["linked"] += 1
                session.add(
                    WecomTagMap(workspace_id=ws, corp_tag_id=corp_id, tag_id=same.id,
                                corp_group_name=group_name, name=name, updated_at=utcnow())
                )  # fmt: skip
                mapped_tag_ids.add(same.id)
                session.flush()
        gone = [cid for cid in maps if cid not in seen]
        if gone:
            session.execute(
                delete(WecomTagMap).where(
                    WecomTagMap.workspace_id == ws, WecomTagMap.corp_tag_id.in_(gone)
                )
            )
            counts["unlinked"] = len(gone)
    return counts


def pull_customer_tags(runtime: Runtime, workspace_id: str, external_userid: str) -> dict[str, int]:
    """A customer's corp tags as staff set them inside WeCom → the contact's mirrored tags.

    WeCom's ``edit_external_contact`` callback says *that* a follow changed, not what:
    ``externalcontact/get`` is read, the corp tags over every follow (``type`` 1) are the
    wanted set, and the contact gains the mirrored tags it lacks and loses the mirrored tags
    no follow carries any more; tags that are not mirrored are never touched. A corp tag not
    yet mirrored makes the corp tag list be read first. The changes go to the contacts' tag
    log, so the push job repeats them to WeCom — ``mark_tag`` of a tag a follow already has
    (or lacks) changes nothing there."""
    from liebian.connectors.wecom.models import WecomFollow
    from liebian.connectors.wecom.service import client_for
    from liebian.contacts import tags as contact_tags
    from liebian.contacts.models import ContactTag
    from liebian.kit.auth import Role

    answer = client_for(runtime, workspace_id).get_external_contact(external_userid)
    wanted = {
        str(t.get("tag_id"))
        for follow in answer.get("follow_user") or []
        for t in follow.get("tags") or []
        if t.get("type") == 1 and t.get("tag_id")
    }

    def mirrored() -> dict[str, str]:
        with runtime.read_sessions() as session:
            return dict(
                session.execute(
                    select(WecomTagMap.corp_tag_id, WecomTagMap.tag_id).where(
                        WecomTagMap.workspace_id == workspace_id
                    )
                ).all()
            )

    maps = mirrored()
    if wanted - maps.keys():
        sync_corp_tags(runtime, Principal(workspace_id, Role.operator))
        maps = mirrored()
    with session_scope(runtime.sessions) as session:
        contact_id = session.scalar(
            select(WecomFollow.contact_id).where(
                WecomFollow.workspace_id == workspace_id,
                WecomFollow.external_userid == external_userid,
                WecomFollow.contact_id.is_not(None),
            )
        )
        if contact_id is None:
            return {"added": 0, "removed": 0}
        ours = set(maps.values())
        have = set(
            session.scalars(
                select(ContactTag.tag_id).where(
                    ContactTag.contact_id == contact_id, ContactTag.tag_id.in_(ours)
                )
            )
        )
        want = {maps[c] for c in wanted if c in maps}
        reason = f"wecom:{external_userid}"
        added = removed = 0
        if want - have:
            added = contact_tags.add_tags(
                session, workspace_id, [contact_id], sorted(want - have), "event", reason
            )
        if have - want:
            removed = contact_tags.remove_tags(
                session, workspace_id, [contact_id], sorted(have - want), "event", reason
            )
    return {"added": added, "removed": removed}


def push_tag_changes(runtime: Runtime, *, now: datetime | None = None, lag: float = 10.0) -> int:
    """One pass over every connection; returns how many mark_tag calls were made."""
    with runtime.read_sessions() as session:
        workspaces = list(session.scalars(select(WecomConnection.workspace_id)))
    calls = 0
    for ws in workspaces:
        try:
            calls += _push_workspace(runtime, ws, (now or utcnow()) - timedelta(seconds=lag))
        except Unavailable:
            log.warning("WeCom unreachable: tag changes of %s wait for the next pass", ws)
        except DomainError as exc:  # a wrong secret, say: this workspace waits, others go on
            log.warning("tag changes of %s not pushed: %s", ws, exc.message)
    return calls


def _push_workspace(runtime: Runtime, ws: str, cutoff: datetime) -> int:
    from liebian.connectors.wecom.service import client_for
    from liebian.contacts.models import TagChange

    with runtime.read_sessions() as session:
        conn = repository.connection_of(session, ws)
        if conn is None:
            return 0
        cursor = conn.tag_cursor or ""
        rows = session.execute(
            select(TagChange.id, TagChange.contact_id, TagChange.change, WecomTagMap.corp_tag_id)
            .outerjoin(
                WecomTagMap,
                (WecomTagMap.workspace_id == TagChange.workspace_id)
                & (WecomTagMap.tag_id == TagChange.tag_id),
            )
            .where(TagChange.workspace_id == ws, TagChange.id > cursor, TagChange.at <= cutoff)
            .order_by(TagChange.id)
            .limit(PUSH_BATCH)
        ).all()
        if not rows:
            return 0
        # Per contact, the last change of each mirrored tag wins.
        wanted: dict[str, dict[str, str]] = defaultdict(dict)
        for _id, contact_id, change, corp_tag_id in rows:
            if corp_tag_id is not None:
                wanted[contact_id][corp_tag_id] = change
        follows = {
            contact_id: [
                (f.staff_userid, f.external_userid)
                for f in repository.active_follows_of_contact(session, ws, contact_id)
            ]
            for contact_id in wanted
        }
    calls = 0
    if wanted:
        client = client_for(runtime, ws)
        for contact_id, changes in wanted.items():
            add = sorted(t for t, c in changes.items() if c == "added")
            remove = sorted(t for t, c in changes.items() if c == "removed")
            for staff, external in follows.get(contact_id, []):
                try:
                    client.mark_tag(userid=staff, external_userid=external, add_tag=add,
                                    remove_tag=remove)  # fmt: skip
                    calls += 1
                except WecomApiError as exc:
                    if exc.path == "gettoken":
                        raise  # the connection itself is broken: the cursor stays, retry later
                    # This follow only (the staff member left the corp, …): logged, skipped.
                    log.warning("mark_tag %s/%s refused: %s", staff, external, exc.message)
    with session_scope(runtime.sessions) as session:
        conn_row = repository.connection_of(session, ws)
        if conn_row is not None:
            conn_row.tag_cursor = str(rows[-1][0])
    return calls


def tag_map(runtime: Runtime, principal: Principal) -> list[dict[str, Any]]:
    from liebian.connectors.wecom.service import require

    require(principal, "read")
    with runtime.read_sessions() as session:
        return [
            {"corp_tag_id": m.corp_tag_id, "tag_id": m.tag_id, "name": m.name,
             "corp_group_name": m.corp_group_name}
            for m in session.scalars(
                select(WecomTagMap)
                .where(WecomTagMap.workspace_id == principal.workspace_id)
                .order_by(WecomTagMap.corp_group_name, WecomTagMap.name)
            )
        ]  # fmt: skip
