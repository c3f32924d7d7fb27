"""Communities: configuration, groups, and the entry decision (threshold → tier → a place).

A place is taken by :func:`route`: the first open group of the tier with room, through the
repository's conditional UPDATE; if another scan filled that group first the next one is
tried, and when none is left the person gets a clear refusal (and the owner an alert). Each
(community, holder) has one member row (unique key), so a re-scan — or two racing scans of the
same phone — show the same group and take one place. After every place taken, when fewer than
``alert_below`` places remain in the tier, one ``low_places`` alert is written (latched on the
community until an operator adds room).

Bus topics published after commit: ``community.member_joined`` / ``community.member_left`` /
``community.screening_answered`` with {workspace_id, community_id, group_id, contact_id, ...}.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from liebian.communities import events, repository, routing
from liebian.communities.models import (
    DEFAULT_CAPACITY,
    Community,
    CommunityAlert,
    CommunityGroup,
    CommunityMember,
)
from liebian.communities.moderation import compile_pattern
from liebian.communities.schemas import (
    CommunityCreate,
    CommunityUpdate,
    GroupCreate,
    GroupUpdate,
    QuestionIn,
)
from liebian.contacts import attributes as contact_attributes
from liebian.contacts import tags as contact_tags
from liebian.contacts.models import Contact, Tag
from liebian.kit.auth import Principal, Role
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import as_utc, utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from liebian.kit.ids import new_id

MEMBER_JOINED = "community.member_joined"
MEMBER_LEFT = "community.member_left"
SCREENING_ANSWERED = "community.screening_answered"
_ANSWER_ATTRIBUTE_TYPES = {
    "single": "string",
    "multiple": "string",
    "text": "string",
    "date": "date",
}

READ, WRITE = "read", "write"


def authorize(principal: Principal, action: str) -> None:
    """The one place communities decide who may do what: analysts read, operators change.
    What they may see is :func:`visible` (a member's data scope)."""
    principal.require(Role.analyst if action == READ else Role.operator)


# ── data scope: a community's staff see their own groups (issue 15) ────────────────────────


@dataclass(frozen=True, slots=True)
class Visible:
    """What a scoped principal reaches: whole communities, and single groups of others
    (``partial``: community id → its groups in scope). None from :func:`visible` means the
    whole workspace."""

    whole: frozenset[str]
    partial: Mapping[str, frozenset[str]]

    @property
    def communities(self) -> frozenset[str]:
        return self.whole | frozenset(self.partial)

    def groups_of(self, community_id: str) -> frozenset[str] | None:
        """The community's groups in scope; None: all of them."""
        if community_id in self.whole:
            return None
        return self.partial.get(community_id, frozenset())

    def sees_group(self, group: CommunityGroup) -> bool:
        allowed = self.groups_of(group.community_id)
        return allowed is None or group.id in allowed


def visible(session: Session, principal: Principal) -> Visible | None:
    if principal.scope is None:
        return None
    whole = frozenset(i for i in principal.scope if i.startswith("cmy_"))
    group_ids = [i for i in principal.scope if i.startswith("cgp_")]
    partial: dict[str, set[str]] = {}
    if group_ids:
        rows = session.execute(
            select(CommunityGroup.id, CommunityGroup.community_id).where(
                CommunityGroup.workspace_id == principal.workspace_id,
                CommunityGroup.id.in_(group_ids),
            )
        )
        for group_id, community_id in rows:
            if community_id not in whole:
                partial.setdefault(community_id, set()).add(group_id)
    return Visible(whole, {c: frozenset(g) for c, g in partial.items()})


def require_whole(session: Session, principal: Principal, community: Community) -> None:
    """Community-wide reads and changes (its settings, new groups, alerts, violations, tier
    moves, tier/community metrics) need the whole community in scope, not a few groups."""
    seen = visible(session, principal)
    if seen is not None and community.id not in seen.whole:
        raise Forbidden(
            "your data scope covers only some groups of this community",
            code="out_of_scope",
        )


def scope_problems(session: Session, workspace_id: str, ids: list[str]) -> list[str]:
    """The ids of a data scope that name no community or group of the workspace."""
    found = set(
        session.scalars(
            select(Community.id).where(
                Community.workspace_id == workspace_id, Community.id.in_(ids)
            )
        )
    ) | set(
        session.scalars(
            select(CommunityGroup.id).where(
                CommunityGroup.workspace_id == workspace_id, CommunityGroup.id.in_(ids)
            )
        )
    )
    return [i for i in ids if i not in found]


def scope_within(session: Session, principal: Principal, ids: list[str]) -> bool:
    """Whether every id is inside the principal's own scope (no one grants more than they
    see)."""
    seen = visible(session, principal)
    if seen is None:
        return True
    groups = {
        g: c
        for g, c in session.execute(
            select(CommunityGroup.id, CommunityGroup.community_id).where(CommunityGroup.id.in_(ids))
        )
    }
    for i in ids:
        if i in seen.whole:
            continue
        community_id = groups.get(i)
        if community_id is None:
            return False
        allowed = seen.groups_of(community_id)
        if allowed is not None and i not in allowed:
            return False
    return True


# ── configuration ──────────────────────────────────────────────────────────────────────────


def _check_config(session: Session, workspace_id: str, data: Mapping[str, Any]) -> None:
    routing.check_config(data["tiers"], data["screening"], data["routing"])
    if data["kind"] == "flash" and (data.get("starts_at") is None or data.get("ends_at") is None):
        raise Invalid(
            "a flash community (快闪群) needs starts_at and ends_at",
            code="flash_needs_dates",
            details={"field": "ends_at"},
        )
    if data.get("starts_at") and data.get("ends_at") and data["starts_at"] >= data["ends_at"]:
        raise Invalid("ends_at must be after starts_at", details={"field": "ends_at"})
    if data["threshold"] == "screening" and not data["screening"]:
        raise Invalid(
            "a screening threshold needs at least one question",
            code="invalid_screening",
            details={"field": "screening"},
        )
    if data["threshold"] == "activity" and not (data.get("threshold_config") or {}).get(
        "campaign_id"
    ):
        raise Invalid(
            "an activity threshold names the campaign: threshold_config.campaign_id",
            details={"field": "threshold_config.campaign_id"},
        )
    known = contact_attributes.defs(session, workspace_id)
    tag_ids: set[str] = set()
    for i, q in enumerate(data["screening"]):
        attr = q.get("attribute")
        if attr:
            wanted = _ANSWER_ATTRIBUTE_TYPES[q["type"]]
            have = known.get(attr)
            if have is None or have.type != wanted:
                raise Invalid(
                    f"question {q['key']!r} stores its answer in attribute {attr!r}: define it "
                    f"first as type {wanted!r} (POST /api/v1/contact-attributes)",
                    code="invalid_screening",
                    details={"field": f"screening[{i}].attribute"},
                )
        tag_ids.update((q.get("tags") or {}).values())
    if tag_ids:
        found = set(
            session.scalars(
                select(Tag.id).where(Tag.workspace_id == workspace_id, Tag.id.in_(tag_ids))
            )
        )
        missing = sorted(tag_ids - found)
        if missing:
            raise Invalid(
                f"no tag {missing[0]!r} in this workspace",
                code="tag_not_found",
                details={"field": "screening", "missing": missing},
            )
    for i, pattern in enumerate((data.get("rules") or {}).get("banned_patterns") or []):
        compile_pattern(pattern, f"rules.banned_patterns[{i}]")
    from liebian.communities import templates

    for name in ("welcome_template", "announcement_template"):
        templates.check(data.get(name) or "", name)
    if data.get("channel_id"):
        from liebian.channels.models import Channel

        channel = session.get(Channel, data["channel_id"])
        if channel is None or channel.workspace_id != workspace_id:
            raise Invalid(
                f"no channel {data['channel_id']!r} in this workspace (POST /api/v1/channels)",
                code="channel_not_found",
                details={"field": "channel_id"},
            )


def create(session: Session, principal: Principal, body: CommunityCreate) -> Community:
    authorize(principal, WRITE)
    if principal.scope is not None:
        raise Forbidden(
            "your data scope is limited to some communities: creating one needs the whole "
            "workspace",
            code="out_of_scope",
        )
    data = body.model_dump()
    _check_config(session, principal.workspace_id, data)
    now = utcnow()
    community = Community(
        id=new_id("cmy"), workspace_id=principal.workspace_id, created_at=now, updated_at=now,
        **data,
    )  # fmt: skip
    session.add(community)
    session.flush()
    return community


def get(session: Session, principal: Principal, community_id: str) -> Community:
    authorize(principal, READ)
    community = session.get(Community, community_id)
    seen = visible(session, principal)
    if (
        community is None
        or community.workspace_id != principal.workspace_id
        or (seen is not None and community.id not in seen.communities)
    ):
        raise NotFound("no such community", code="community_not_found")
    return community


def list_page(
    session: Session, principal: Principal, cursor: str | None, limit: int
) -> list[Community]:
    authorize(principal, READ)
    seen = visible(session, principal)
    return repository.communities_page(
        session, principal.workspace_id, cursor, limit,
        only=None if seen is None else seen.communities,
    )  # fmt: skip


def list_groups(
    session: Session, principal: Principal, community: Community
) -> list[CommunityGroup]:
    seen = visible(session, principal)
    allowed = None if seen is None else seen.groups_of(community.id)
    return [
        g for g in repository.groups_of(session, community.id) if allowed is None or g.id in allowed
    ]


def member_groups(
    session: Session, principal: Principal, community: Community, group_id: str | None
) -> list[str] | None:
    """The groups whose members a principal may list or export (None: every group)."""
    seen = visible(session, principal)
    allowed = None if seen is None else seen.groups_of(community.id)
    if group_id is not None:
        if allowed is not None and group_id not in allowed:
            raise NotFound("no such group", code="group_not_found")
        return [group_id]
    return None if allowed is None else sorted(allowed)


def update(
    session: Session, principal: Principal, community_id: str, body: CommunityUpdate
) -> Community:
    community = get(session, principal, community_id)
    authorize(principal, WRITE)
    require_whole(session, principal, community)
    changes = body.model_dump(exclude_unset=True)
    current = {
        k: getattr(community, k)
        for k in ("kind", "starts_at", "ends_at", "threshold", "threshold_config", "tiers",
                  "screening", "routing", "rules", "welcome_template", "announcement_template",
                  "channel_id")
    }  # fmt: skip
    merged = {**current, **changes}
    _check_config(session, principal.workspace_id, merged)
    if "tiers" in changes:
        keys = {t["key"] for t in changes["tiers"]}
        used = sorted(
            {g.tier for g in repository.groups_of(session, community.id) if g.tier} - keys
        )
        if used:
            raise Conflict(
                f"tier {used[0]!r} still has groups: move or archive them first",
                code="tier_in_use",
                details={"field": "tiers"},
            )
    for key, value in changes.items():
        setattr(community, key, value)
    community.updated_at = utcnow()
    if "alert_below" in changes:
        repository.rearm_alert(session, community.id)
    session.flush()
    return community


# ── groups ─────────────────────────────────────────────────────────────────────────────────


def _check_tier(community: Community, tier: str | None) -> None:
    keys = [t["key"] for t in community.tiers]
    if tier is not None and tier not in keys:
        raise Invalid(
            f"tier {tier!r} is not one of the community's tiers ({', '.join(keys) or 'none'})",
            code="unknown_tier",
            details={"field": "tier"},
        )


def _check_qr(qr_image: str | None) -> None:
    if qr_image is not None and not qr_image.startswith(
        ("data:image/png;base64,", "data:image/jpeg;base64,", "data:image/webp;base64,")
    ):
        raise Invalid(
            "qr_image must be a data: URL of a PNG, JPEG or WebP image",
            details={"field": "qr_image"},
        )


def _chat_taken(session: Session, group: CommunityGroup) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(
            "another group already has this WeCom chat_id",
            code="chat_id_taken",
            details={"field": "chat_id"},
        ) from None


def create_group(
    session: Session, principal: Principal, community_id: str, body: GroupCreate
) -> CommunityGroup:
    community = get(session, principal, community_id)
    authorize(principal, WRITE)
    require_whole(session, principal, community)
    _check_tier(community, body.tier)
    _check_qr(body.qr_image)
    _check_bot(session, community.workspace_id, body.bot_channel_id)
    now = utcnow()
    group = CommunityGroup(
        id=new_id("cgp"), workspace_id=community.workspace_id, community_id=community.id,
        name=body.name, platform=body.platform, owner=body.owner,
        capacity=body.capacity or DEFAULT_CAPACITY[body.platform], tier=body.tier,
        status="open", members=0, qr_image=body.qr_image, join_url=body.join_url,
        chat_id=body.chat_id, bot_channel_id=body.bot_channel_id,
        owner_wecom_userid=body.owner_wecom_userid, created_at=now,
        updated_at=now,
    )  # fmt: skip
    session.add(group)
    _chat_taken(session, group)
    repository.rearm_alert(session, community.id)  # new room: the next crossing alerts again
    return group


BOT_KINDS = ("webhook", "wecom_robot")


def _check_bot(session: Session, workspace_id: str, channel_id: str | None) -> None:
    """A group's bot is a channel of this workspace that posts into a group (no person)."""
    if channel_id is None:
        return
    from liebian.channels.models import Channel

    channel = session.get(Channel, channel_id)
    if channel is None or channel.workspace_id != workspace_id:
        raise Invalid(
            f"no channel {channel_id!r} in this workspace (POST /api/v1/channels)",
            code="channel_not_found", details={"field": "bot_channel_id"},
        )  # fmt: skip
    if channel.kind not in BOT_KINDS:
        raise Invalid(
            f"a group's bot is a {' or '.join(BOT_KINDS)} channel, not {channel.kind}",
            code="not_a_group_bot", details={"field": "bot_channel_id"},
        )  # fmt: skip


def get_group(session: Session, principal: Principal, group_id: str) -> CommunityGroup:
    authorize(principal, READ)
    group = session.get(CommunityGroup, group_id)
    seen = visible(session, principal)
    if (
        group is None
        or group.workspace_id != principal.workspace_id
        or (seen is not None and not seen.sees_group(group))
    ):
        raise NotFound("no such group", code="group_not_found")
    return group


def update_group(
    session: Session, principal: Principal, group_id: str, body: GroupUpdate
) -> CommunityGroup:
    group = get_group(session, principal, group_id)
    authorize(principal, WRITE)
    changes = body.model_dump(exclude_unset=True)
    community = session.get(Community, group.community_id)
    assert community is not None
    if "tier" in changes:
        _check_tier(community, changes["tier"])
    _check_qr(changes.get("qr_image"))
    _check_bot(session, group.workspace_id, changes.get("bot_channel_id"))
    # Lock the row for the check: a scan may be taking a place right now.
    session.refresh(group, with_for_update=True)
    capacity = changes.get("capacity")
    if capacity is not None and capacity < group.members:
        raise Invalid(
            f"capacity {capacity} is below the group's current members ({group.members})",
            code="capacity_below_members",
            details={"field": "capacity", "members": group.members},
        )
    for key, value in changes.items():
        setattr(group, key, value)
    if "status" not in changes and group.status != "archived":
        group.status = "full" if group.members >= group.capacity else "open"
    group.updated_at = utcnow()
    _chat_taken(session, group)
    repository.rearm_alert(session, community.id)
    return group


# ── the entry decision ─────────────────────────────────────────────────────────────────────


class EntryRefused(DomainError):
    """Why a person cannot enter (rendered as a Chinese page on the entry page)."""

    status = 409


@dataclass(frozen=True, slots=True)
class Entrant:
    """Who is scanning: the contact when known, else the visitor."""

    holder: str
    contact_id: str | None
    external_id: str | None
    visitor_id: str | None
    platform: str | None = None


@dataclass(frozen=True, slots=True)
class Routed:
    member: CommunityMember
    group: CommunityGroup
    new: bool


def _invite_code() -> str:
    return secrets.token_urlsafe(9)[:12]


def check_open(community: Community, now: datetime) -> None:
    if community.status != "active":
        raise EntryRefused("this community is archived", code="community_closed")
    if community.starts_at is not None and now < as_utc(community.starts_at):
        raise EntryRefused("not started yet", code="community_not_started")
    if community.ends_at is not None and now >= as_utc(community.ends_at):
        raise EntryRefused("this community has ended", code="community_ended")


def check_threshold(
    session: Session, community: Community, who: Entrant, invite_code: str | None
) -> CommunityMember | None:
    """The inviter (invitation threshold), or None; EntryRefused when the person may not enter."""
    kind = community.threshold
    if kind == "invitation":
        inviter = (
            repository.member_by_invite(session, community.id, invite_code.strip())
            if invite_code
            else None
        )
        if inviter is None or inviter.status not in ("routed", "joined"):
            raise EntryRefused("a valid invitation code is required", code="invite_required")
        return inviter
    if kind in ("activity", "purchase"):
        if who.contact_id is None:
            raise EntryRefused("sign in first", code="sign_in_required")
        contact = session.get(Contact, who.contact_id)
        if kind == "purchase":
            need = int((community.threshold_config or {}).get("min_orders") or 1)
            if contact is None or contact.orders_count < need:
                raise EntryRefused("no purchase yet", code="purchase_required")
        else:
            from liebian.campaigns.repository import participant_by_contact

            campaign_id = str((community.threshold_config or {}).get("campaign_id") or "")
            if participant_by_contact(session, campaign_id, who.contact_id) is None:
                raise EntryRefused("join the campaign first", code="activity_required")
    return None


def route(
    session: Session,
    community: Community,
    who: Entrant,
    *,
    tier: str | None,
    tier_source: str | None = None,
    scene: str = "scan",
    answers: Mapping[str, Any] | None = None,
    inviter: CommunityMember | None = None,
) -> Routed:
    """A place in an open group of ``tier`` with room, or the place the holder already has."""
    now = utcnow()
    existing = repository.member_by_holder(session, community.id, who.holder)
    if existing is not None and existing.status in ("routed", "joined"):
        group = session.get(CommunityGroup, existing.group_id)
        if group is not None and group.status != "archived":
            return Routed(existing, group, new=False)
    if existing is not None and existing.status == "removed":
        raise EntryRefused("removed from this community", code="member_removed")
    for group_id in repository.candidates(session, community.id, tier):
        if not repository.claim_place(session, group_id):
            continue  # a concurrent scan filled it first: try the next
        member = _seat(session, community, who, group_id, existing, tier, tier_source, scene,
                       answers, inviter, now)  # fmt: skip
        if member is None:
            # The same holder's concurrent scan recorded a place first: give this one back.
            repository.release_place(session, group_id)
            session.expire_all()
            again = repository.member_by_holder(session, community.id, who.holder)
            assert again is not None
            group = session.get(CommunityGroup, again.group_id)
            assert group is not None
            return Routed(again, group, new=False)
        group = session.get(CommunityGroup, group_id)
        assert group is not None
        session.refresh(group)
        _after_place(session, community, group, now)
        _emit_member(session, community, group, member, who, "group_routed")
        if group.platform == "wechat":
            # A personal WeChat group sends no join signal: showing its QR is the join.
            mark_joined(session, community, group, member, who)
        return Routed(member, group, new=True)
    _raise_low(session, community, tier, now, force=True)
    raise EntryRefused("no group has room", code="no_places")


def _seat(
    session: Session,
    community: Community,
    who: Entrant,
    group_id: str,
    existing: CommunityMember | None,
    tier: str | None,
    tier_source: str | None,
    scene: str,
    answers: Mapping[str, Any] | None,
    inviter: CommunityMember | None,
    now: datetime,
) -> CommunityMember | None:
    stored = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in (answers or {}).items()}
    try:
        with session.begin_nested():
            if existing is None:
                member = CommunityMember(
                    id=new_id("cmb"), workspace_id=community.workspace_id,
                    community_id=community.id, group_id=group_id, holder=who.holder,
                    contact_id=who.contact_id, status="routed", scene=scene, tier=tier,
                    tier_source=tier_source, answers=stored, invite_code=_invite_code(),
                    inviter_member_id=inviter.id if inviter else None, routed_at=now,
                )  # fmt: skip
                session.add(member)
            else:  # came back after leaving: the same row, a new place
                member = existing
                member.group_id, member.status, member.scene = group_id, "routed", scene
                member.tier, member.tier_source = tier, tier_source
                member.answers = stored or member.answers
                member.routed_at, member.joined_at, member.left_at = now, None, None
                member.contact_id = member.contact_id or who.contact_id
            session.flush()
    except IntegrityError:
        return None
    return member


def _after_place(
    session: Session, community: Community, group: CommunityGroup, now: datetime
) -> None:
    _raise_low(session, community, group.tier, now, force=False)


def _raise_low(
    session: Session, community: Community, tier: str | None, now: datetime, *, force: bool
) -> None:
    left = repository.places_left(session, community.id, tier)
    if not force and left >= community.alert_below:
        return
    if not repository.latch_alert(session, community.id, now):
        return
    tier_name = next((t["name"] for t in community.tiers if t["key"] == tier), None)
    where = f"「{tier_name}」" if tier_name else ""
    add_alert(
        session, community, None, "low_places",
        f"{community.name}{where}仅剩 {left} 个空位，请新建群" if left else
        f"{community.name}{where}已没有空位，新进的人无法入群，请立即新建群",
        {"tier": tier, "places_left": left},
    )  # fmt: skip


def add_alert(
    session: Session,
    community: Community,
    group_id: str | None,
    kind: str,
    message: str,
    details: dict[str, Any],
) -> CommunityAlert:
    alert = CommunityAlert(
        id=new_id("cal"), workspace_id=community.workspace_id, community_id=community.id,
        group_id=group_id, kind=kind, message=message[:1000], details=details, created_at=utcnow(),
    )  # fmt: skip
    session.add(alert)
    session.flush()
    publish_after_commit(
        session,
        "community.alert",
        {"workspace_id": community.workspace_id, "community_id": community.id,
         "alert_id": alert.id, "kind": kind},
    )  # fmt: skip
    return alert


def _external_id(session: Session, contact_id: str | None) -> str | None:
    if contact_id is None:
        return None
    return session.scalar(select(Contact.external_id).where(Contact.id == contact_id))


def _emit_member(
    session: Session,
    community: Community,
    group: CommunityGroup,
    member: CommunityMember,
    who: Entrant | None,
    event: str,
    seq: str | None = None,
) -> None:
    stamp = seq or f"{member.routed_at.timestamp():.3f}"
    events.emit(
        session, workspace_id=community.workspace_id, event=event,
        event_id=f"cm:{event}:{member.id}:{stamp}",
        user_id=(who.external_id if who else None) or _external_id(session, member.contact_id),
        visitor_id=who.visitor_id if who else None, platform=who.platform if who else None,
        properties={"community_id": community.id, "group_id": group.id, "tier": member.tier,
                    "scene": member.scene, "member_id": member.id},
    )  # fmt: skip


def mark_joined(
    session: Session,
    community: Community,
    group: CommunityGroup,
    member: CommunityMember,
    who: Entrant | None = None,
) -> None:
    if member.status == "joined":
        return
    member.status = "joined"
    member.joined_at = utcnow()
    session.flush()
    _emit_member(session, community, group, member, who, "group_joined",
                 f"{member.joined_at.timestamp():.3f}")  # fmt: skip
    publish_after_commit(session, MEMBER_JOINED, _payload(community, group, member))


def mark_left(
    session: Session,
    community: Community,
    group: CommunityGroup,
    member: CommunityMember,
    *,
    removed: bool = False,
) -> None:
    if member.status in ("left", "removed"):
        return
    member.status = "removed" if removed else "left"
    member.left_at = utcnow()
    repository.release_place(session, group.id)
    session.flush()
    _emit_member(session, community, group, member, None, "group_left",
                 f"{member.left_at.timestamp():.3f}")  # fmt: skip
    publish_after_commit(
        session, MEMBER_LEFT, {**_payload(community, group, member), "removed": removed}
    )


def _payload(
    community: Community, group: CommunityGroup, member: CommunityMember
) -> dict[str, Any]:
    return {
        "workspace_id": community.workspace_id, "community_id": community.id,
        "group_id": group.id, "contact_id": member.contact_id, "member_id": member.id,
        "tier": member.tier, "scene": member.scene,
    }  # fmt: skip


def join_known(
    session: Session,
    community: Community,
    group: CommunityGroup,
    contact_id: str,
    scene: str,
    inviter: CommunityMember | None = None,
) -> CommunityMember:
    """A join the platform or the API reports: counted even past capacity (it happened)."""
    existing = repository.member_by_holder(session, community.id, contact_id)
    if existing is not None and existing.status in ("routed", "joined"):
        if existing.group_id != group.id:  # joined another group than the one shown
            old = session.get(CommunityGroup, existing.group_id)
            if old is not None:
                repository.release_place(session, old.id)
            repository.force_place(session, group.id)
            existing.group_id = group.id
        mark_joined(session, community, group, existing)
        return existing
    now = utcnow()
    repository.force_place(session, group.id)
    if existing is None:
        member = CommunityMember(
            id=new_id("cmb"), workspace_id=community.workspace_id, community_id=community.id,
            group_id=group.id, holder=contact_id, contact_id=contact_id, status="routed",
            scene=scene, tier=group.tier, answers={}, invite_code=_invite_code(),
            inviter_member_id=inviter.id if inviter else None, routed_at=now,
        )  # fmt: skip
        session.add(member)
    else:
        member = existing
        member.group_id, member.status, member.scene, member.tier = (
            group.id,
            "routed",
            scene,
            group.tier,
        )
        member.routed_at, member.left_at = now, None
    session.flush()
    mark_joined(session, community, group, member)
    return member


def leave_known(
    session: Session, community: Community, group: CommunityGroup, contact_id: str
) -> bool:
    member = repository.member_by_holder(session, community.id, contact_id)
    if member is None or member.group_id != group.id or member.status not in ("routed", "joined"):
        return False
    mark_left(session, community, group, member)
    return True


# ── screening side effects ─────────────────────────────────────────────────────────────────


def apply_screening(
    session: Session,
    community: Community,
    contact_id: str,
    answers: Mapping[str, Any],
    group_id: str | None,
) -> None:
    """Answers → the contact's custom attributes and tags; publishes screening_answered."""
    questions = [QuestionIn.model_validate(q) for q in community.screening]
    values: dict[str, Any] = {}
    tag_ids: list[str] = []
    for q in questions:
        answer = answers.get(q.key)
        if answer is None:
            continue
        if q.attribute:
            values[q.attribute] = ",".join(answer) if isinstance(answer, list) else answer
        chosen = answer if isinstance(answer, list) else [answer]
        tag_ids += [q.tags[c] for c in chosen if isinstance(c, str) and c in q.tags]
    if values:
        contact_attributes.set_attributes(session, community.workspace_id, contact_id, values)
    if tag_ids:
        contact_tags.add_tags(
            session, community.workspace_id, [contact_id], tag_ids, source="api",
            reason=f"community:{community.id}",
        )  # fmt: skip
    publish_after_commit(
        session,
        SCREENING_ANSWERED,
        {"workspace_id": community.workspace_id, "community_id": community.id,
         "contact_id": contact_id, "group_id": group_id,
         "answers": {k: (v.isoformat() if isinstance(v, date) else v) for k, v in answers.items()}},
    )  # fmt: skip


def enter(
    session: Session,
    cipher: PiiCipher | None,
    community: Community,
    who: Entrant,
    raw_answers: Mapping[str, Any],
    invite_code: str | None,
    today: date,
) -> Routed:
    """The whole entry decision of one scan: open? threshold? answers → tier → a place."""
    check_open(community, utcnow())
    inviter = check_threshold(session, community, who, invite_code)
    answers: dict[str, Any] = {}
    tier: str | None = None
    source: str | None = None
    if community.screening and (community.threshold == "screening" or raw_answers):
        answers = routing.check_answers(community.screening, raw_answers)
        tier, source = routing.decide_tier(community.tiers, community.routing, answers, today)
    if answers and who.contact_id is None and who.visitor_id:
        # Answers live on a contact: an anonymous visitor gets one, named by the visitor id
        # (identify() later merges it into the brand's user through the visitor alias).
        from liebian.contacts import identity
        from liebian.contacts import service as contacts

        contact = contacts.upsert(
            session, cipher, community.workspace_id,
            contacts.ContactInput(f"visitor:{who.visitor_id}", visitor_id=who.visitor_id),
        )  # fmt: skip
        identity.attach(session, community.workspace_id, contact.id, "visitor_id", who.visitor_id)
        who = Entrant(who.holder, contact.id, contact.external_id, who.visitor_id, who.platform)
    scene = "screening" if answers else "invite" if inviter else "scan"
    routed = route(
        session, community, who, tier=tier, tier_source=source, scene=scene, answers=answers,
        inviter=inviter,
    )  # fmt: skip
    if routed.new and answers and who.contact_id:
        apply_screening(session, community, who.contact_id, answers, routed.group.id)
    return routed


# ── tiers that move as time passes ─────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class TierMove:
    member: CommunityMember
    to_tier: str


def tier_moves(session: Session, community: Community, today: date) -> list[TierMove]:
    """Members whose tier came from a date answer and, as of ``today``, belongs to another
    tier (a child turning 3 is due for the 3–8 group)."""
    rows = session.scalars(
        select(CommunityMember).where(
            CommunityMember.community_id == community.id,
            CommunityMember.tier_source == "age",
            CommunityMember.status.in_(("routed", "joined")),
        )
    )
    moves = []
    for member in rows:
        now_tier = routing.age_tier(community.tiers, member.answers or {}, today)
        if now_tier is not None and now_tier != member.tier:
            moves.append(TierMove(member, now_tier))
    return moves


def offer_moves(
    session: Session, community: Community, today: date, entry_url: str
) -> list[tuple[TierMove, str]]:
    """An owner task per due move (once per member and tier): invite them to the new tier's
    group. The member keeps their place until they actually join there."""
    from liebian.channels.tasks import create_task

    out = []
    names = {t["key"]: t["name"] for t in community.tiers}
    for move in tier_moves(session, community, today):
        group = session.get(CommunityGroup, move.member.group_id)
        who = _external_id(session, move.member.contact_id) or move.member.holder
        task = create_task(
            session, community.workspace_id,
            title=f"邀请 {who} 进入「{names.get(move.to_tier, move.to_tier)}」群"[:200],
            body=(f"{who} 所在的「{names.get(move.member.tier or '', move.member.tier)}」群"
                  f"（{group.name if group else ''}）已不再适合，请发送入群链接：{entry_url}"),
            kind="community_tier_move", contact_id=move.member.contact_id,
            assignee=(group.owner if group else None) or None, source="community",
            dedupe_key=f"ctm:{move.member.id}:{move.to_tier}",
        )  # fmt: skip
        out.append((move, task.id))
    return out
