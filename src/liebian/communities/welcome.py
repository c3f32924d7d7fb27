"""Welcome messages on join, and group announcements, through channels.

On ``community.member_joined`` (after the join committed) the community's welcome template is
rendered with the member's contact fields and sent through the community's channel with
``channels.service.send`` — idempotency key ``cmw:<member>:<joined at>``, so a re-delivered
join never welcomes twice (channels keeps the send record, unique per workspace and key).
The send runs on a small worker pool, off the request that made the join.

A customer who adds a staff member through a WeCom 联系我 way whose ``state`` is a community
id (``wecom.contact_added``) is given a place in that community (scene ``wecom``) and welcomed
through WeCom's ``send_welcome_msg`` with the callback's ``welcome_code`` (WeCom accepts it
once, within 20 seconds) — the welcome then carries the group's join link.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.communities import templates
from liebian.communities.models import Community, CommunityGroup, CommunityMember
from liebian.contacts import attributes as contact_attributes
from liebian.contacts.models import Contact, ContactTag, Tag
from liebian.kit.crypto import PiiCipher
from liebian.kit.db import session_scope

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime
    from liebian.channels.base import SendOutcome

log = logging.getLogger("liebian.communities")
POOL_KEY = "communities.welcome_pool"
# Channels that post into a group (no person address): the welcome goes to the group.
GROUP_CHANNELS = frozenset({"wecom_robot"})


def channel_content(kind: str, text: str, subject: str) -> dict[str, Any]:
    """The message in the fields the channel's adapter takes (each refuses any other field
    with a 422): email and the brand's webhook carry the subject, a staff task (personal
    WeChat) its title, a WeCom group robot, SMS and WeCom customer messages only the text."""
    if kind in ("smtp", "webhook"):
        return {"text": text, "subject": subject}
    if kind == "personal_wechat":
        return {"text": text, "title": subject[:200]}
    return {"text": text}


def contact_fields(session: Session, cipher: PiiCipher, contact_id: str | None) -> dict[str, Any]:
    if contact_id is None:
        return {}
    contact = session.get(Contact, contact_id)
    if contact is None:
        return {}
    tags = session.scalars(
        select(Tag.name).join(ContactTag, ContactTag.tag_id == Tag.id).where(
            ContactTag.contact_id == contact_id
        )
    ).all()  # fmt: skip
    values = contact_attributes.values_of(session, contact.workspace_id, contact_id)
    return {
        **{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in values.items()},
        "external_id": contact.external_id, "nickname": cipher.decrypt(contact.nickname_enc),
        "orders_count": contact.orders_count, "tags": list(tags),
    }  # fmt: skip


def welcome_text(
    session: Session, cipher: PiiCipher, community: Community, group: CommunityGroup,
    member: CommunityMember, entry_url: str = "",
) -> str:  # fmt: skip
    ctx = templates.context(
        community={"name": community.name, "id": community.id},
        contact=contact_fields(session, cipher, member.contact_id),
        group={"name": group.name, "join_url": group.join_url or "", "owner": group.owner},
        member={"invite_code": member.invite_code, "tier": member.tier or ""},
        entry_url=entry_url,
    )
    return templates.render(community.welcome_template, ctx, templates.DEFAULT_WELCOME)


def send_welcome(runtime: Runtime, member_id: str) -> SendOutcome | None:
    """Welcome one joined member through the community's channel (once per join)."""
    from liebian.channels.models import Channel
    from liebian.channels.service import SendRequest, send

    with session_scope(runtime.sessions) as session:
        member = session.get(CommunityMember, member_id)
        if member is None or member.status != "joined" or member.joined_at is None:
            return None
        community = session.get(Community, member.community_id)
        group = session.get(CommunityGroup, member.group_id)
        if community is None or group is None or not community.channel_id:
            return None
        channel = session.get(Channel, community.channel_id)
        if channel is None or channel.workspace_id != community.workspace_id:
            return None
        to_group = channel.kind in GROUP_CHANNELS
        if not to_group and member.contact_id is None:
            return None
        text = welcome_text(session, runtime.cipher, community, group, member)
        return send(session, runtime, SendRequest(
            workspace_id=community.workspace_id, channel_id=channel.id,
            contact_id=None if to_group else member.contact_id,
            content=channel_content(channel.kind, text, f"欢迎加入{community.name}"),
            idempotency_key=f"cmw:{member.id}:{member.joined_at.timestamp():.0f}",
            source="community", category="transactional",
        ))  # fmt: skip


def send_announcement(
    session: Session, runtime: Runtime, community: Community, group: CommunityGroup, key: str
) -> SendOutcome:
    """The announcement rendered for the group, sent through the community's channel."""
    from liebian.channels.models import Channel
    from liebian.channels.service import SendRequest, send
    from liebian.kit.errors import Invalid

    channel = session.get(Channel, community.channel_id) if community.channel_id else None
    if channel is None or channel.workspace_id != community.workspace_id:
        raise Invalid(
            "the community has no channel: set channel_id first", code="no_channel",
            details={"field": "channel_id"},
        )  # fmt: skip
    ctx = templates.context(
        community={"name": community.name, "id": community.id},
        group={"name": group.name, "join_url": group.join_url or "", "owner": group.owner},
    )
    text = templates.render(community.announcement_template, ctx, templates.DEFAULT_ANNOUNCEMENT)
    return send(session, runtime, SendRequest(
        workspace_id=community.workspace_id, channel_id=channel.id, contact_id=None,
        content=channel_content(channel.kind, text, f"{group.name} 群公告"),
        idempotency_key=f"cma:{group.id}:{key}"[:200], source="community",
        category="transactional",
    ))  # fmt: skip


def wecom_welcome(runtime: Runtime, payload: dict[str, Any]) -> str | None:
    """A customer added through a 联系我 way whose state is a community: a place, and the
    welcome through WeCom's welcome code. Returns the WeCom outcome status, if one was sent."""
    from liebian.communities import service

    workspace_id = str(payload.get("workspace_id") or "")
    state = str(payload.get("state") or "")
    contact_id = payload.get("contact_id")
    if not state.startswith("cmy_") or not contact_id:
        return None
    with session_scope(runtime.sessions) as session:
        community = session.get(Community, state)
        if community is None or community.workspace_id != workspace_id:
            return None
        contact = session.get(Contact, contact_id)
        who = service.Entrant(
            str(contact_id), str(contact_id), contact.external_id if contact else None, None, "wecom"
        )  # fmt: skip
        try:
            routed = service.route(session, community, who, tier=None, scene="wecom")
        except service.EntryRefused:
            log.warning("no place for a WeCom contact in %s", community.id)
            return None
        text = welcome_text(session, runtime.cipher, community, routed.group, routed.member)
    welcome_code = str(payload.get("welcome_code") or "")
    if not welcome_code:
        return None
    from liebian.connectors.wecom.service import send_welcome_msg

    return send_welcome_msg(runtime, workspace_id, welcome_code, text).status


def install(runtime: Runtime) -> None:
    from liebian.communities.service import MEMBER_JOINED

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="community-welcome")
    runtime.extras[POOL_KEY] = pool

    def run(work: Any, *args: Any) -> None:
        try:
            work(runtime, *args)
        except Exception:  # logged: a failed welcome must not fail the join
            log.exception("community welcome failed for %r", args)

    def on_joined(payload: Any) -> None:
        member_id = (payload or {}).get("member_id")
        if member_id:
            pool.submit(run, send_welcome, member_id)

    def on_contact_added(payload: Any) -> None:
        if str((payload or {}).get("state") or "").startswith("cmy_"):
            # At once: WeCom's welcome code is valid for 20 seconds.
            pool.submit(run, wecom_welcome, dict(payload))

    runtime.bus.subscribe(MEMBER_JOINED, on_joined)
    runtime.bus.subscribe("wecom.contact_added", on_contact_added)
