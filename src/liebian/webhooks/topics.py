"""The topics an endpoint can subscribe to, and how a bus message becomes webhook events.

Each builder turns one ``publish_after_commit`` payload into (workspace, topic, data) triples,
reading what a receiver needs (external ids rather than internal contact ids, prices, reasons)
inside the publisher's transaction, so the data is exactly what was committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.campaigns.models import Assist, Group, GroupMember, Referral
from liebian.contacts.models import Contact, Tag
from liebian.rewards.models import RewardEntry

# Bus topic names published by the domains (kept as literals: importing the modules that
# define them would tie this package to the group and assist services).
GROUP_FAILED = "group.failed"
GROUP_SUCCEEDED = "group.succeeded"
ASSIST_UNLOCKED = "assist.unlocked"
REFERRAL_HELD = "referral.held"
REWARD_ISSUED = "reward.issued"
REWARD_REVERSED = "reward.reversed"
LIVE_CODE_LOW = "live_code.low_targets"
TAGS_CHANGED = "contact.tags_changed"
TEST = "webhook.test"

TOPICS: dict[str, str] = {
    GROUP_FAILED: "拼团失败：到期未成团，所有成员订单作废 (group failed on expiry)",
    "order.voided": "拼团订单作废，每位成员一条 (a member's group-buy order was voided)",
    GROUP_SUCCEEDED: "拼团成功 (group filled in time)",
    ASSIST_UNLOCKED: "助力/砍价完成 (assist or bargain completed)",
    REFERRAL_HELD: "邀请被风控挂起，等待人工审核 (referral held for review)",
    REWARD_ISSUED: "奖励已发放 (reward issued)",
    REWARD_REVERSED: "奖励已撤销：退款、驳回或退出 (reward reversed)",
    LIVE_CODE_LOW: "活码可用目标不足 (live code low on usable targets)",
    TAGS_CHANGED: "用户标签变化：添加或移除，一次操作一条 (contacts tagged or untagged)",
    TEST: "测试事件 (sent by POST /webhooks/{id}/test)",
}
WILDCARD = "*"

Triple = tuple[str, str, dict[str, Any]]
Builder = Callable[[Session, Any], Iterable[Triple]]


def _external_ids(session: Session, contact_ids: Iterable[str | None]) -> dict[str, str]:
    ids = {c for c in contact_ids if c}
    if not ids:
        return {}
    rows = session.execute(select(Contact.id, Contact.external_id).where(Contact.id.in_(ids)))
    return {cid: ext for cid, ext in rows}


def _fresh(session: Session, model: Any, row_id: str) -> Any:
    # The publisher changed the row with a bulk UPDATE: the identity map may hold it stale.
    stmt = select(model).where(model.id == row_id).execution_options(populate_existing=True)
    return session.scalars(stmt).first()


def _group(session: Session, payload: Mapping[str, Any]) -> Iterable[Triple]:
    group: Group | None = _fresh(session, Group, payload["group_id"])
    if group is None:
        return []
    members = list(
        session.scalars(
            select(GroupMember)
            .where(GroupMember.group_id == group.id)
            .order_by(GroupMember.seat)
            .execution_options(populate_existing=True)
        )
    )
    people = _external_ids(session, [m.contact_id for m in members])
    base = {
        "group_id": group.id,
        "campaign_id": group.campaign_id,
        "size": group.size,
        "price": group.price,
        "leader_external_id": people.get(group.leader_contact_id),
    }
    orders = [
        {
            "member_id": m.id,
            "external_id": people.get(m.contact_id),
            "is_leader": m.is_leader,
            "price": m.price,
            "order_status": m.order_status,
        }
        for m in members
    ]
    if group.status == "failed":
        out: list[Triple] = [
            (group.workspace_id, GROUP_FAILED, {**base, "reason": "expired", "orders": orders})
        ]
        out += [
            (group.workspace_id, "order.voided", {**base, **order, "reason": "group_expired"})
            for order in orders
            if order["order_status"] == "voided"
        ]
        return out
    return [(group.workspace_id, GROUP_SUCCEEDED, {**base, "orders": orders})]


def _assist(session: Session, payload: Mapping[str, Any]) -> Iterable[Triple]:
    assist: Assist | None = _fresh(session, Assist, payload["assist_id"])
    if assist is None:
        return []
    people = _external_ids(session, [assist.owner_contact_id])
    data = {
        "assist_id": assist.id,
        "campaign_id": assist.campaign_id,
        "mode": assist.mode,
        "owner_external_id": people.get(assist.owner_contact_id),
        "helpers": assist.helpers_count,
        "price_now": assist.price_now,
    }
    return [(assist.workspace_id, ASSIST_UNLOCKED, data)]


def _referral(session: Session, payload: Mapping[str, Any]) -> Iterable[Triple]:
    referral: Referral | None = _fresh(session, Referral, payload["referral_id"])
    if referral is None:
        return []
    people = _external_ids(session, [referral.referrer_contact_id, referral.referee_contact_id])
    data = {
        "referral_id": referral.id,
        "campaign_id": referral.campaign_id,
        "status": referral.status,
        "risk_score": referral.risk_score,
        "referrer_external_id": people.get(referral.referrer_contact_id),
        "referee_external_id": people.get(referral.referee_contact_id),
    }
    return [(referral.workspace_id, REFERRAL_HELD, data)]


def _rewards(topic: str) -> Builder:
    def build(session: Session, payload: Mapping[str, Any]) -> Iterable[Triple]:
        ids = list(payload["entry_ids"])
        out: list[Triple] = []
        for start in range(0, len(ids), 500):  # bounded IN lists
            entries = list(
                session.scalars(
                    select(RewardEntry)
                    .where(RewardEntry.id.in_(ids[start : start + 500]))
                    .execution_options(populate_existing=True)
                )
            )
            people = _external_ids(session, [e.contact_id for e in entries])
            out += [(e.workspace_id, topic, reward_data(e, people)) for e in entries]
        return out

    return build


def reward_data(entry: RewardEntry, people: Mapping[str, str]) -> dict[str, Any]:
    return {
        "reward_id": entry.id,
        "campaign_id": entry.campaign_id,
        "external_id": people.get(entry.contact_id),
        "kind": entry.kind,
        "name": entry.name,
        "amount": entry.amount,
        "currency": entry.currency,
        "status": entry.status,
        "reason": entry.reason,
        "coupon_code": entry.coupon_code,
        "referral_id": entry.referral_id,
        "order_id": entry.order_id,
        "reversal_reason": entry.reversal_reason,
    }


def _tags_changed(session: Session, payload: Mapping[str, Any]) -> Iterable[Triple]:
    ids = list(payload["contact_ids"])
    people: dict[str, str] = {}
    for start in range(0, len(ids), 500):  # bounded IN lists
        people.update(_external_ids(session, ids[start : start + 500]))
    tags = session.execute(
        select(Tag.id, Tag.name).where(Tag.id.in_(list(payload["tag_ids"])))
    ).all()
    data = {
        "change": payload["change"],
        "tags": [{"id": tid, "name": name} for tid, name in tags],
        "external_ids": [people[c] for c in ids if c in people],
    }
    return [(payload["workspace_id"], TAGS_CHANGED, data)]


def _passthrough(topic: str) -> Builder:
    def build(_session: Session, payload: Mapping[str, Any]) -> Iterable[Triple]:
        data = {k: v for k, v in payload.items() if k != "workspace_id"}
        return [(payload["workspace_id"], topic, data)]

    return build


BUILDERS: dict[str, Builder] = {
    GROUP_FAILED: _group,
    GROUP_SUCCEEDED: _group,
    ASSIST_UNLOCKED: _assist,
    REFERRAL_HELD: _referral,
    REWARD_ISSUED: _rewards(REWARD_ISSUED),
    REWARD_REVERSED: _rewards(REWARD_REVERSED),
    LIVE_CODE_LOW: _passthrough(LIVE_CODE_LOW),
    TAGS_CHANGED: _tags_changed,
    TEST: _passthrough(TEST),
}
# Bus topic → the webhook topics it can produce (to skip building when nobody listens).
PRODUCES: dict[str, tuple[str, ...]] = {
    GROUP_FAILED: (GROUP_FAILED, "order.voided"),
    GROUP_SUCCEEDED: (GROUP_SUCCEEDED,),
    ASSIST_UNLOCKED: (ASSIST_UNLOCKED,),
    REFERRAL_HELD: (REFERRAL_HELD,),
    REWARD_ISSUED: (REWARD_ISSUED,),
    REWARD_REVERSED: (REWARD_REVERSED,),
    LIVE_CODE_LOW: (LIVE_CODE_LOW,),
    TAGS_CHANGED: (TAGS_CHANGED,),
    TEST: (TEST,),
}


def subscribed(topics: Iterable[str], topic: str) -> bool:
    # The test ping goes to the endpoint it was sent for, whatever it subscribes to.
    return topic == TEST or WILDCARD in topics or topic in topics
