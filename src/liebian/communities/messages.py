"""Group message ingestion: each message is an event, checked against the community's rules.

A message that breaks a rule is a violation of its sender (one per group and message id: a
re-sent message counts once), the sender's nth violation in the community picks the ladder's
action (警告 → 禁言 → 移出), and the action becomes a task for the group owner (the staff task
table of channels/tasks.py: WeChat has no API to mute or remove a member, a person does it)
with the member, the message and the rule. Alert keywords raise an alert and an owner task
without being violations. Everything is written in the request's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

import orjson
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from liebian.communities import events, moderation, repository, service
from liebian.communities.models import (
    Community,
    CommunityFlood,
    CommunityGroup,
    CommunityViolation,
)
from liebian.communities.schemas import MessageIn
from liebian.contacts.models import Contact
from liebian.contacts.repository import by_alias, by_external_id
from liebian.kit.auth import Principal
from liebian.kit.clock import as_utc, utcnow
from liebian.kit.errors import Invalid, NotFound
from liebian.kit.ids import new_id

_ACTION_ZH = {"warn": "警告", "mute": "禁言", "remove": "移出"}
_RULE_ZH = {"keyword": "违禁词", "link": "发链接", "contact": "留联系方式", "flood": "刷屏"}


@lru_cache(maxsize=256)
def _compiled(rules_json: bytes) -> moderation.Compiled:
    return moderation.compile_rules(orjson.loads(rules_json))


def compiled_rules(community: Community) -> moderation.Compiled:
    return _compiled(orjson.dumps(community.rules or {}, option=orjson.OPT_SORT_KEYS))


@dataclass
class Outcome:
    message_id: str
    group_id: str
    duplicate: bool = False
    violation: CommunityViolation | None = None
    alert_words: list[str] = field(default_factory=list)


def _group(session: Session, principal: Principal, msg: MessageIn, i: int) -> CommunityGroup:
    seen = service.visible(session, principal)
    if msg.group_id:
        group = session.get(CommunityGroup, msg.group_id)
        if (
            group is not None
            and group.workspace_id == principal.workspace_id
            and (seen is None or seen.sees_group(group))
        ):
            return group
    elif msg.chat_id:
        group = repository.group_by_chat(session, principal.workspace_id, msg.chat_id)
        if group is not None and (seen is None or seen.sees_group(group)):
            return group
    else:
        raise Invalid(
            "give the message's group_id or chat_id",
            details={"field": f"messages[{i}].group_id"},
        )
    raise NotFound(
        "no community group has this group_id / chat_id",
        code="group_not_found",
        details={"field": f"messages[{i}]"},
    )


def _sender(
    session: Session, workspace_id: str, msg: MessageIn, i: int
) -> tuple[str, Contact | None]:
    if msg.external_id:
        return msg.external_id, by_external_id(session, workspace_id, msg.external_id)
    if msg.wecom_userid:
        return msg.wecom_userid, by_alias(
            session, workspace_id, "wecom_external_userid", msg.wecom_userid
        )
    raise Invalid(
        "give the sender: external_id or wecom_userid",
        details={"field": f"messages[{i}].external_id"},
    )


def _flooding(session: Session, group_id: str, sender: str, limit: int, now: datetime) -> bool:
    """Count the sender's message in the current minute; True for the one message that goes
    over the limit (one violation per flood, not one per message)."""
    row = session.get(CommunityFlood, (group_id, sender), with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(
                    CommunityFlood(group_id=group_id, sender=sender, window_start=now, count=1)
                )
            return limit < 1
        except IntegrityError:
            row = session.get(CommunityFlood, (group_id, sender), with_for_update=True)
            assert row is not None
    if now - as_utc(row.window_start) >= timedelta(minutes=1):
        row.window_start, row.count = now, 1
    else:
        row.count += 1
    return row.count == limit + 1


def ingest(session: Session, principal: Principal, messages: list[MessageIn]) -> list[Outcome]:
    service.authorize(principal, service.WRITE)
    resolved = [
        (msg, _group(session, principal, msg, i), *_sender(session, principal.workspace_id, msg, i))
        for i, msg in enumerate(messages)
    ]  # every message is checked before anything is written
    out: list[Outcome] = []
    communities: dict[str, Community] = {}
    for msg, group, sender_ref, contact in resolved:
        community = communities.get(group.community_id) or session.get(
            Community, group.community_id
        )
        assert community is not None
        communities[community.id] = community
        out.append(_one(session, community, group, msg, sender_ref, contact))
    return out


def _one(
    session: Session,
    community: Community,
    group: CommunityGroup,
    msg: MessageIn,
    sender_ref: str,
    contact: Contact | None,
) -> Outcome:
    now = utcnow()
    at = as_utc(msg.sent_at) if msg.sent_at else now
    sender = contact.id if contact else sender_ref
    result = Outcome(msg.message_id, group.id)
    events.emit(
        session, workspace_id=community.workspace_id, event="group_message",
        event_id=f"cm:msg:{group.id}:{msg.message_id}"[:128], ts=at,
        user_id=_user_id(contact, msg),
        properties={"community_id": community.id, "group_id": group.id, "tier": group.tier,
                    "length": len(msg.text)},
    )  # fmt: skip
    rules = compiled_rules(community)
    if rules.empty:
        return result
    hits = moderation.check(rules, msg.text)
    if rules.flood_per_minute and _flooding(session, group.id, sender, rules.flood_per_minute, now):
        hits.append(moderation.Hit("flood", f"{rules.flood_per_minute + 1} 条/分钟"))
    words = moderation.alert_words(rules, msg.text)
    if hits:
        violation = _violate(session, community, group, msg, sender, contact, hits, now)
        if violation is None:
            result.duplicate = True
            return result
        result.violation = violation
    if words:
        result.alert_words = words
        _keyword_alert(session, community, group, msg, contact, words)
    return result


def _violate(
    session: Session,
    community: Community,
    group: CommunityGroup,
    msg: MessageIn,
    sender: str,
    contact: Contact | None,
    hits: list[moderation.Hit],
    now: datetime,
) -> CommunityViolation | None:
    rules = compiled_rules(community)
    hit = hits[0]
    prior = session.scalar(
        select(func.count()).select_from(CommunityViolation).where(
            CommunityViolation.community_id == community.id, CommunityViolation.sender == sender
        )
    ) or 0  # fmt: skip
    step = int(prior) + 1
    action, mute_hours = moderation.ladder_action(rules, step)
    violation = CommunityViolation(
        id=new_id("cvl"), workspace_id=community.workspace_id, community_id=community.id,
        group_id=group.id, sender=sender, contact_id=contact.id if contact else None,
        message_id=msg.message_id, text=msg.text, rule=hit.rule, step=step, action=action,
        created_at=now,
    )  # fmt: skip
    try:
        with session.begin_nested():
            session.add(violation)
    except IntegrityError:
        return None  # this message was already ingested
    who = _who(session, contact, msg)
    rule_zh = _RULE_ZH.get(hit.rule.split(":")[0], "违规规则")
    if hit.rule.startswith("pattern:"):
        rule_zh = "违规内容"
    title = f"{_ACTION_ZH[action]}{who}（{group.name}，第 {step} 次违规：{rule_zh}）"
    if action == "mute":
        title = f"禁言{who} {mute_hours} 小时（{group.name}，第 {step} 次违规：{rule_zh}）"
    body = (
        f"群：{group.name}\n成员：{who}\n规则：{rule_zh}（命中“{hit.matched}”）\n"
        f"消息：{msg.text[:500]}\n处理：{_ACTION_ZH[action]}"
        + (f" {mute_hours} 小时" if mute_hours else "")
    )
    task = _task(session, community, group, contact, f"community_{action}", title, body,
                 f"cvl:{violation.id}")  # fmt: skip
    violation.task_id = task
    member = repository.member_by_holder(session, community.id, contact.id) if contact else None
    if member is not None and member.group_id == group.id:
        if action == "mute" and mute_hours:
            member.muted_until = now + timedelta(hours=mute_hours)
        elif action == "remove":
            # The owner removes them in WeChat (the task); liebian stops routing them here.
            service.mark_left(session, community, group, member, removed=True)
    service.add_alert(
        session, community, group.id, "violation", body[:1000],
        {"violation_id": violation.id, "rule": hit.rule, "matched": hit.matched,
         "action": action, "step": step, "task_id": task,
         "all_rules": [h.rule for h in hits]},
    )  # fmt: skip
    events.emit(
        session, workspace_id=community.workspace_id, event="group_violation",
        event_id=f"cm:violation:{violation.id}", user_id=_user_id(contact, msg),
        properties={"community_id": community.id, "group_id": group.id, "rule": hit.rule,
                    "action": action, "step": step},
    )  # fmt: skip
    session.flush()
    return violation


def _user_id(contact: Contact | None, msg: MessageIn) -> str | None:
    """The event's person: the contact's external id, else the brand's id the message named,
    else the WeCom customer the connector's way (``wecom:<external_userid>``)."""
    if contact is not None:
        return contact.external_id
    if msg.external_id:
        return msg.external_id
    return f"wecom:{msg.wecom_userid}" if msg.wecom_userid else None


def _who(session: Session, contact: Contact | None, msg: MessageIn) -> str:
    if contact is not None:
        return contact.external_id
    return msg.external_id or msg.wecom_userid or "未知成员"


def _task(
    session: Session,
    community: Community,
    group: CommunityGroup,
    contact: Contact | None,
    kind: str,
    title: str,
    body: str,
    dedupe_key: str,
) -> str:
    from liebian.channels.tasks import create_task

    task = create_task(
        session, community.workspace_id, title=title[:200], body=body, kind=kind,
        contact_id=contact.id if contact else None, assignee=group.owner or None,
        source="community", dedupe_key=dedupe_key,
    )  # fmt: skip
    return task.id


def _keyword_alert(
    session: Session,
    community: Community,
    group: CommunityGroup,
    msg: MessageIn,
    contact: Contact | None,
    words: list[str],
) -> None:
    from liebian.channels.models import StaffTask

    key = f"ckw:{group.id}:{msg.message_id}"[:128]
    if session.scalar(
        select(StaffTask.id).where(
            StaffTask.workspace_id == community.workspace_id, StaffTask.dedupe_key == key
        )
    ):
        return  # this message was already ingested
    who = _who(session, contact, msg)
    body = f"群：{group.name}\n成员：{who}\n关键词：{'、'.join(words)}\n消息：{msg.text[:500]}"
    task = _task(
        session, community, group, contact, "community_keyword",
        f"关键词提醒：{who} 提到“{words[0]}”（{group.name}）", body,
        key,
    )  # fmt: skip
    service.add_alert(
        session, community, group.id, "keyword", body[:1000],
        {"words": words, "message_id": msg.message_id, "task_id": task},
    )  # fmt: skip


def violations_page(
    session: Session, community_id: str, cursor: str | None, limit: int
) -> list[CommunityViolation]:
    from liebian.kit.pagination import paginate

    stmt = select(CommunityViolation).where(CommunityViolation.community_id == community_id)
    return list(session.scalars(paginate(stmt, CommunityViolation.id, cursor, limit)))
