"""The content calendar (内容日历): a weekly rhythm of posts per community, sent once per group
and day at the set time, and the material library posts draw from.

A post has a time (HH:MM in the workspace's time zone) and ISO weekdays (1 = Monday; empty =
every day: 每日话题), and goes to every non-archived group of its community or to one group.
Personal WeChat groups have no API to post into, so "sending" a post to a group is a task for
the group's owner carrying the text, the image and — when the post has a link — a short link
of that group's own (its channel is the group id), so clicks are counted per group. A group
with a bot (``bot_channel_id``: the brand's bot behind a signed webhook, or a WeCom group
robot) is sent the post through it instead, with channels' exactly-once key ``cps:<send>``
(decision 0044); a WeCom customer group with its chat id and its owner's WeCom userid (and a
connected corp) is sent it as a WeCom group mass send the owner confirms in WeCom, recorded
once under the same key (communities/wecom_posts.py, connectors/wecom/group_sends.py). The scheduler's ``community_calendar`` job (``send_due``) runs every
``jobs_interval``:

- a slot is (post, group, local date); it is due once the local time has passed ``at`` on a
  matching weekday, and only for today (a slot missed while the server was down for a whole
  day is not sent late) and only if the post existed before that time;
- ``community_post_sends`` is unique on (post, group, slot) and the send row, the short link
  and the owner task (deduplicated ``cps:<send>``) are written in one transaction, so two
  schedulers or a crash and a rerun send each slot once;
- the post is "done" for a group when its owner marks the task done (channels' task inbox),
  or, through a bot, when channels' send is ``sent``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.communities import repository, wecom_posts
from liebian.communities.models import (
    Community,
    CommunityGroup,
    CommunityMaterial,
    CommunityPost,
    CommunityPostSend,
)
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import as_utc, utcnow
from liebian.kit.db import after_commit, session_scope
from liebian.kit.errors import Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.workspaces.models import Workspace

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime

log = logging.getLogger("liebian.communities.calendar")
_AT = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MATERIAL_KINDS = ("title", "content", "image")
_IMAGE_PREFIXES = ("data:image/png;base64,", "data:image/jpeg;base64,", "data:image/webp;base64,")


def link_policy(runtime: Runtime) -> Any:
    from liebian.kit.netguard import parse_networks
    from liebian.links.service import LinkPolicy

    return LinkPolicy(
        blocklist=tuple(runtime.settings.url_blocklist),
        allowed_networks=parse_networks(runtime.settings.allowed_private_networks),
    )


def check_post(
    session: Session, community: Community, data: dict[str, Any], policy: Any = None
) -> None:
    """A 422 naming the field, before anything is written."""
    if not _AT.match(data.get("at") or ""):
        raise Invalid(
            "at must be a time HH:MM (24 h, workspace time zone)", details={"field": "at"}
        )
    days = data.get("weekdays") or []
    if any(not isinstance(d, int) or isinstance(d, bool) or not 1 <= d <= 7 for d in days):
        raise Invalid(
            "weekdays are ISO weekdays 1 (Monday) … 7 (Sunday)", details={"field": "weekdays"}
        )
    if len(set(days)) != len(days):
        raise Invalid("weekdays repeat a day", details={"field": "weekdays"})
    image = data.get("image")
    if image is not None and not image.startswith(_IMAGE_PREFIXES):
        raise Invalid(
            "image must be a data: URL of a PNG, JPEG or WebP image", details={"field": "image"}
        )
    group_id = data.get("group_id")
    if group_id is not None:
        group = session.get(CommunityGroup, group_id)
        if group is None or group.community_id != community.id:
            raise Invalid(
                f"no group {group_id!r} in this community", code="group_not_found",
                details={"field": "group_id"},
            )  # fmt: skip
    url = data.get("link_url")
    if url is not None:
        from liebian.links.schemas import LinkCreate
        from liebian.links.service import LinkPolicy, _check_urls

        try:
            _check_urls(LinkCreate(url=url), policy or LinkPolicy())
        except Invalid as exc:
            raise Invalid(exc.message, code=exc.code, details={"field": "link_url"}) from None
    if not (data.get("text") or "").strip() and not image and not url:
        raise Invalid("a post needs text, an image or a link", details={"field": "text"})


def create_post(
    session: Session, principal: Principal, community: Community, data: dict[str, Any],
    policy: Any = None,
) -> CommunityPost:  # fmt: skip
    principal.require(Role.operator)
    check_post(session, community, data, policy)
    post = CommunityPost(
        id=new_id("cps"), workspace_id=community.workspace_id, community_id=community.id,
        group_id=data.get("group_id"), title=data["title"], text=data.get("text") or "",
        image=data.get("image"), link_url=data.get("link_url"),
        weekdays=sorted(data.get("weekdays") or []), at=data["at"],
        status=data.get("status") or "active", created_at=utcnow(),
    )  # fmt: skip
    session.add(post)
    session.flush()
    return post


def get_post(session: Session, principal: Principal, post_id: str) -> CommunityPost:
    principal.require(Role.analyst)
    post = session.get(CommunityPost, post_id)
    if post is None or post.workspace_id != principal.workspace_id:
        raise NotFound("no such post", code="post_not_found")
    from liebian.communities.service import visible

    seen = visible(session, principal)  # a member's data scope (issue 15)
    if seen is not None and post.community_id not in seen.communities:
        raise NotFound("no such post", code="post_not_found")
    return post


def posts_of(session: Session, community_id: str) -> list[CommunityPost]:
    return list(
        session.scalars(
            select(CommunityPost)
            .where(CommunityPost.community_id == community_id)
            .order_by(CommunityPost.at, CommunityPost.id)
        )
    )


def sends_of(session: Session, post_id: str, limit: int = 200) -> list[CommunityPostSend]:
    return list(
        session.scalars(
            select(CommunityPostSend)
            .where(CommunityPostSend.post_id == post_id)
            .order_by(CommunityPostSend.slot.desc(), CommunityPostSend.group_id)
            .limit(limit)
        )
    )


# ── the material library ───────────────────────────────────────────────────────────────────


def add_material(session: Session, principal: Principal, kind: str, body: str) -> CommunityMaterial:
    principal.require(Role.operator)
    if kind not in MATERIAL_KINDS:
        raise Invalid(f"kind must be one of {', '.join(MATERIAL_KINDS)}", details={"field": "kind"})
    body = (body or "").strip()
    if not body:
        raise Invalid("body is required", details={"field": "body"})
    if kind == "image" and not body.startswith(_IMAGE_PREFIXES):
        raise Invalid(
            "an image is a data: URL of a PNG, JPEG or WebP image", details={"field": "body"}
        )
    if kind != "image" and len(body) > (100 if kind == "title" else 2000):
        raise Invalid(
            f"a {kind} is at most {100 if kind == 'title' else 2000} characters",
            details={"field": "body"},
        )
    material = CommunityMaterial(
        id=new_id("cmt"), workspace_id=principal.workspace_id, kind=kind, body=body,
        created_at=utcnow(),
    )  # fmt: skip
    session.add(material)
    session.flush()
    return material


def materials(session: Session, principal: Principal, kind: str | None) -> list[CommunityMaterial]:
    principal.require(Role.analyst)
    stmt = select(CommunityMaterial).where(CommunityMaterial.workspace_id == principal.workspace_id)
    if kind:
        stmt = stmt.where(CommunityMaterial.kind == kind)
    return list(session.scalars(stmt.order_by(CommunityMaterial.id.desc()).limit(500)))


# ── sending ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Due:
    post_id: str
    slot: str


def due_slot(post: CommunityPost, tz: str, now: datetime) -> str | None:
    """Today's slot (local date) when it is due at ``now``, else None."""
    zone = ZoneInfo(tz)
    local = as_utc(now).astimezone(zone)
    if post.weekdays and local.isoweekday() not in post.weekdays:
        return None
    hour, minute = (int(x) for x in post.at.split(":"))
    at = datetime.combine(local.date(), time(hour, minute), tzinfo=zone)
    if local < at or as_utc(post.created_at) > at:
        return None  # not yet, or the post did not exist at that time
    return local.date().isoformat()


def _claim(session: Session, post: CommunityPost, group_id: str, slot: str) -> str | None:
    """Insert the send row; its id when this transaction is the one that sends."""
    make: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[
        session.get_bind().dialect.name
    ]
    send_id = new_id("cpd")
    row = session.execute(
        make(CommunityPostSend.__table__)
        .values(id=send_id, workspace_id=post.workspace_id, post_id=post.id,
                group_id=group_id, slot=slot, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["post_id", "group_id", "slot"])
        .returning(CommunityPostSend.__table__.c.id)
    ).first()  # fmt: skip
    return send_id if row is not None else None


def send_post(
    session: Session, runtime: Runtime, post: CommunityPost, slot: str, base_url: str
) -> int:
    """Send the slot to every group not yet sent it; how many groups were sent now."""
    from liebian.channels.tasks import create_task
    from liebian.links import service as links
    from liebian.links.schemas import LinkCreate

    groups = repository.groups_of(session, post.community_id)
    sent = 0
    for group in groups:
        if group.status == "archived" or (post.group_id and group.id != post.group_id):
            continue
        send_id = _claim(session, post, group.id, slot)
        if send_id is None:
            continue  # sent already (another run, or before a crash after its commit)
        short_url = link_id = None
        if post.link_url:
            link = links.create_link(
                session, Principal(post.workspace_id, Role.operator),
                LinkCreate(url=post.link_url, title=f"{post.title} · {group.name}"[:300],
                           channel=group.id[:64], tags=["community", "calendar"]),
                link_policy(runtime),
            )  # fmt: skip
            link_id, short_url = link.id, f"{base_url.rstrip('/')}/{link.slug}"
        if group.bot_channel_id:
            _send_through_bot(session, runtime, post, group, send_id, short_url, link_id)
            sent += 1
            continue
        if wecom_posts.postable(group) and wecom_posts.connected(session, post.workspace_id):
            _send_through_wecom(session, runtime, post, group, send_id, short_url, link_id)
            sent += 1
            continue
        body = "\n".join(
            part for part in (
                f"请在「{group.name}」发送：", post.text, short_url,
                "（附图见内容日历）" if post.image else "",
            ) if part
        )  # fmt: skip
        task = create_task(
            session, post.workspace_id, title=f"内容日历：{post.title}（{group.name}）"[:200],
            body=body, kind="community_post", assignee=group.owner or None, source="community",
            dedupe_key=f"cps:{send_id}",
        )  # fmt: skip
        row = session.get(CommunityPostSend, send_id)
        assert row is not None
        row.link_id, row.short_url, row.task_id = link_id, short_url, task.id
        session.flush()
        sent += 1
    return sent


def bot_contents(
    kind: str, post: CommunityPost, group: CommunityGroup, short_url: str | None
) -> list[dict[str, Any]]:
    """What the group's bot is sent: for a WeCom group robot the text (with the group's short
    link) and, when the post has a PNG/JPEG image, the image as a second message (a robot
    message is one kind); for the brand's webhook one JSON message with all of it (the image
    as its data: URL while the message stays under the webhook's 64 KB)."""
    text = "\n".join(part for part in (post.text, short_url) if part) or post.title
    if kind == "wecom_robot":
        out: list[dict[str, Any]] = [{"text": text[:2048]}]
        for prefix in _IMAGE_PREFIXES[:2]:  # the robot takes PNG and JPEG
            if post.image and post.image.startswith(prefix) and _base64(post.image[len(prefix) :]):
                out.append({"image_base64": post.image[len(prefix) :]})
        return out
    message: dict[str, Any] = {
        "kind": "community_post", "title": post.title, "text": text, "link": short_url,
        "group_id": group.id, "group_name": group.name, "post_id": post.id,
    }  # fmt: skip
    if post.image and len(post.image) <= 48_000:
        message["image"] = post.image
    return [message]


def _base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False  # sent without the image rather than refused by the robot every run
    return True


def _send_through_bot(
    session: Session, runtime: Runtime, post: CommunityPost, group: CommunityGroup,
    send_id: str, short_url: str | None, link_id: str | None,
) -> None:  # fmt: skip
    """The slot through the group's bot, with channels' exactly-once key ``cps:<send>`` (and
    ``cps:<send>:2`` for a robot's image). channels' ``send`` commits the session first, so the
    send row, the short link and the send record are committed together before the call; a
    crash after that commit is resent by channels' recovery with the same key."""
    from liebian.channels.models import Channel
    from liebian.channels.service import SendRequest
    from liebian.channels.service import send as channel_send

    row = session.get(CommunityPostSend, send_id)
    channel = session.get(Channel, group.bot_channel_id)
    assert row is not None and channel is not None
    row.link_id, row.short_url = link_id, short_url
    for i, content in enumerate(bot_contents(channel.kind, post, group, short_url)):
        outcome = channel_send(session, runtime, SendRequest(
            workspace_id=post.workspace_id, channel_id=channel.id, contact_id=None,
            content=content, idempotency_key=f"cps:{send_id}" + (f":{i + 1}" if i else ""),
            source="community", category="transactional",
        ))  # fmt: skip
        if i == 0:
            row = session.get(CommunityPostSend, send_id)
            assert row is not None
            row.channel_send_id = outcome.send_id
            session.flush()


def _send_through_wecom(
    session: Session, runtime: Runtime, post: CommunityPost, group: CommunityGroup,
    send_id: str, short_url: str | None, link_id: str | None,
) -> None:  # fmt: skip
    """The slot as a WeCom group mass send (企业群发 to this customer group, the owner confirms
    in WeCom): the connector's task is written in this transaction under ``cps:<send>`` with
    the slot, and WeCom is called once it commits (the connector's claim makes the call
    once; a crash before it is dispatched by the ``wecom_group_results`` pass). The image is
    not part of it (WeCom takes images as uploaded media): the text and the group's link."""
    from liebian.connectors.wecom import group_sends

    text = "\n".join(part for part in (post.text, short_url) if part) or post.title
    task_id, _fresh = group_sends.record_group_send(
        session, post.workspace_id, idempotency_key=f"cps:{send_id}",
        sender=str(group.owner_wecom_userid), chat_ids=[str(group.chat_id)], text=text[:4000],
        source=wecom_posts.source_of(post.community_id),
    )  # fmt: skip
    row = session.get(CommunityPostSend, send_id)
    assert row is not None
    row.link_id, row.short_url, row.wecom_mass_send_id = link_id, short_url, task_id
    session.flush()
    workspace_id = post.workspace_id
    after_commit(session, lambda: _dispatch_quietly(runtime, workspace_id, task_id))


def _dispatch_quietly(runtime: Runtime, workspace_id: str, task_id: str) -> None:
    from liebian.connectors.wecom import group_sends

    try:
        group_sends.dispatch(runtime, workspace_id, task_id)
    except Exception:  # recorded; the wecom_group_results pass dispatches it
        log.exception("content calendar: WeCom group task %s not dispatched now", task_id)


def send_due(runtime: Runtime, now: datetime | None = None) -> int:
    """The scheduler's job: every due slot of every active post, once. Returns how many
    (post, group) sends were made now."""
    from liebian.links.domains import public_base_url

    now = now or utcnow()
    with session_scope(runtime.read_sessions) as session:
        posts = session.execute(
            select(CommunityPost.id, Workspace.timezone)
            .join(Community, Community.id == CommunityPost.community_id)
            .join(Workspace, Workspace.id == CommunityPost.workspace_id)
            .where(CommunityPost.status == "active", Community.status == "active")
        ).all()
    made = 0
    for post_id, tz in posts:
        try:
            with session_scope(runtime.sessions) as session:
                post = session.get(CommunityPost, post_id)
                if post is None or post.status != "active":
                    continue
                slot = due_slot(post, tz or "Asia/Shanghai", now)
                if slot is None:
                    continue
                base = public_base_url(session, post.workspace_id, runtime.settings.base_url)
                made += send_post(session, runtime, post, slot, base)
        except Exception:  # one post's failure (rolled back whole) does not stop the others
            log.exception("content calendar: sending post %s failed; retried next run", post_id)
    return made


def clicks_by_link(store: Any, workspace_id: str, link_ids: list[str]) -> dict[str, int]:
    """Clicks per short link from the event store (one query for all of them)."""
    if store is None or not link_ids:
        return {}
    from liebian.analytics.sql import Sql

    sql = Sql(store)
    rows = sql.run(
        f"SELECT e.link_id, count(*) FROM {sql.events} e WHERE e.workspace_id = {sql.p(workspace_id)}"
        f" AND e.event = 'click' AND {sql.in_list('e.link_id', link_ids)} GROUP BY e.link_id"
    )
    return {str(r[0]): int(r[1]) for r in rows}
