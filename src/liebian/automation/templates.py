"""Ready journeys an operator starts in one step and then adjusts (模板).

Each template is a function of a few choices (the channel to send on, the coupon amounts, the
event names a brand uses) that returns a normal definition: it is validated, stored as a
draft and published like any other, so an operator edits it afterwards with the builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from liebian.kit.errors import Invalid

Definition = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Options:
    channel_id: str
    coupon_amount: int = 1000  # 分
    reward_amount: int = 500
    consultant: str | None = None


def _send(sid: str, o: Options, text: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "type": "send", "channel_id": o.channel_id, "content": {"text": text},
            **extra}  # fmt: skip


def _wait(sid: str, **duration: int) -> dict[str, Any]:
    return {"id": sid, "type": "wait", "duration": duration}


NAME = "{{ contact.nickname | default('朋友') }}"


def warmup_7day(o: Options) -> Definition:
    """Day0 welcome + 新人券, Day1 first-day task, Day2 干货, Day4 invite a friend for a coupon,
    Day6 1:1 by a consultant (a staff task)."""
    return {
        "trigger": {"type": "event", "event": "signup"},
        "entry": {"mode": "once"},
        "goal_event": "purchase",
        "steps": [
            _send("d0_welcome", o, f"{NAME}，欢迎加入！新人券已放入你的账户，7 天内有效。"),
            {"id": "d0_coupon", "type": "grant_reward", "kind": "coupon",
             "amount": o.coupon_amount, "name": "新人券"},
            _wait("to_d1", days=1),
            _send("d1_task", o, f"{NAME}，今天的新手任务：完善资料，领取积分。"),
            _wait("to_d2", days=1),
            _send("d2_tips", o, "干货分享：3 个让你快速上手的小技巧。"),
            _wait("to_d4", days=2),
            _send("d4_invite", o, f"{NAME}，邀请一位好友，双方各得一张优惠券。"),
            _wait("to_d6", days=2),
            {"id": "d6_consult", "type": "task",
             "title": "1v1 回访新人 {{ contact.external_id }}",
             **({"assignee": o.consultant} if o.consultant else {})},
        ],
    }  # fmt: skip


def first_day_activation(o: Options) -> Definition:
    """Sign-up → the first task; done within a day → a reward; else a reminder."""
    return {
        "trigger": {"type": "event", "event": "signup"},
        "entry": {"mode": "once"},
        "goal_event": "task_completed",
        "steps": [
            _send("task", o, f"{NAME}，完成首日任务即可领取奖励。"),
            {"id": "done", "type": "wait_event", "event": "task_completed",
             "timeout": {"days": 1}, "next": "reward", "timeout_next": "remind"},
            {"id": "reward", "type": "grant_reward", "kind": "points",
             "amount": o.reward_amount, "name": "首日任务奖励", "next": None},
            _send("remind", o, f"{NAME}，首日任务还没完成哦，奖励等你来拿。"),
        ],
    }  # fmt: skip


def winback_30day(o: Options) -> Definition:
    """No purchase for 30 days → a nudge with a coupon; no purchase a week later → last call."""
    return {
        "trigger": {"type": "inactivity", "event": "purchase", "days": 30},
        "entry": {"mode": "once_per_days", "days": 90},
        "goal_event": "purchase",
        "steps": [
            {"id": "coupon", "type": "grant_reward", "kind": "coupon",
             "amount": o.coupon_amount, "name": "回归券"},
            _send("nudge", o, f"{NAME}，好久不见！送你一张回归券。"),
            {"id": "bought", "type": "wait_event", "event": "purchase",
             "timeout": {"days": 7}, "next": None, "timeout_next": "last"},
            _send("last", o, f"{NAME}，回归券明天到期，别错过。"),
        ],
    }  # fmt: skip


def birthday(o: Options) -> Definition:
    """7 days before a birthday at 10:00: an invitation; a friend qualifies → a 免单券."""
    return {
        "trigger": {"type": "date_attribute", "attribute": "birthday", "offset_days": -7,
                    "at": "10:00", "yearly": True},
        "entry": {"mode": "once_per_days", "days": 300},
        "steps": [
            _send("invite", o, f"{NAME}，生日快乐将至！邀请好友一起来，赢免单券。"),
            {"id": "friend", "type": "wait_event", "event": "invite_qualified",
             "timeout": {"days": 14}, "next": "free", "timeout_next": None},
            {"id": "free", "type": "grant_reward", "kind": "coupon", "amount": o.coupon_amount,
             "name": "生日免单券"},
        ],
    }  # fmt: skip


def post_purchase_share(o: Options) -> Definition:
    """2 hours after a purchase: share your order; shared within 3 days → points."""
    return {
        "trigger": {"type": "event", "event": "purchase"},
        "entry": {"mode": "every_time"},
        "steps": [
            _wait("settle", hours=2),
            _send("ask", o, f"{NAME}，晒单分享给好友，可得积分奖励。"),
            {"id": "shared", "type": "wait_event", "event": "share", "timeout": {"days": 3},
             "next": "points", "timeout_next": None},
            {"id": "points", "type": "grant_reward", "kind": "points",
             "amount": o.reward_amount, "name": "晒单积分"},
        ],
    }  # fmt: skip


def group_buy_reminder(o: Options) -> Definition:
    """A group opened: 20 hours later, unless it succeeded, remind to bring the last people."""
    return {
        "trigger": {"type": "event", "event": "group_open"},
        "entry": {"mode": "every_time"},
        "goal_event": "group_success",
        "steps": [
            {"id": "wait", "type": "wait_event", "event": "group_success",
             "timeout": {"hours": 20}, "next": None, "timeout_next": "remind"},
            _send("remind", o, f"{NAME}，你的拼团还差几人就成团了，快去邀请好友！"),
        ],
    }  # fmt: skip


TEMPLATES: dict[str, tuple[str, Callable[[Options], Definition]]] = {
    "warmup_7day": ("7 天新人培育", warmup_7day),
    "first_day_activation": ("首日激活", first_day_activation),
    "winback_30day": ("30 天沉睡唤醒", winback_30day),
    "birthday": ("生日关怀", birthday),
    "post_purchase_share": ("购后晒单", post_purchase_share),
    "group_buy_reminder": ("拼团提醒", group_buy_reminder),
}


def build(template: str, options: Options) -> tuple[str, Definition]:
    """(default name, definition) of a template."""
    found = TEMPLATES.get(template)
    if found is None:
        raise Invalid(f"no template {template!r}; pick one of {', '.join(TEMPLATES)}",
                      code="unknown_template", details={"field": "template"})  # fmt: skip
    name, make = found
    return name, make(options)
