"""Group rules as plain functions: what is banned, what only alerts, and the ladder."""

from __future__ import annotations

from liebian.communities import moderation


def _rules(**kw: object) -> moderation.Compiled:
    return moderation.compile_rules(kw)


def test_banned_things_are_found_and_named() -> None:
    c = _rules(
        banned_keywords=["代购", "兼职刷单"], banned_patterns=[r"返现\d+元"], block_links=True,
        block_contact_details=True, alert_keywords=["多少钱", "投诉"],
    )  # fmt: skip
    cases = {
        "今天天气不错": [],
        "招兼职刷单，日结": [("keyword", "兼职刷单")],
        "好评返现10元": [("pattern:0", "返现10元")],
        "看这里 https://evil.example/x": [("link", "https://evil.example/x")],
        "进群 weixin.qq.com/g/abc": [("link", "weixin.qq.com/g/")],
        "加我微信: abc_12345 细聊": [("contact", "微信: abc_12345")],
        "电话13812345678": [("contact", "13812345678")],
        "订单号 913812345678901 已发货": [],  # a long number is not a phone
        "代购 加vx：shop8888": [("keyword", "代购"), ("contact", "vx：shop8888")],
    }
    for text, expected in cases.items():
        assert [(h.rule, h.matched) for h in moderation.check(c, text)] == expected, text
    assert moderation.alert_words(c, "这个多少钱？我要投诉") == ["多少钱", "投诉"]
    assert moderation.alert_words(c, "好的") == []


def test_ladder_steps_warn_mute_remove_and_repeat_the_last() -> None:
    c = _rules()  # the default ladder: 1 warn, 2 mute 24 h, 3 remove
    assert [moderation.ladder_action(c, n) for n in (1, 2, 3, 7)] == [
        ("warn", None), ("mute", 24), ("remove", None), ("remove", None),
    ]  # fmt: skip
    custom = _rules(
        ladder=[{"at": 1, "action": "warn"}, {"at": 3, "action": "mute", "mute_hours": 2}]
    )
    assert [moderation.ladder_action(custom, n) for n in (1, 2, 3, 4)] == [
        ("warn", None), ("warn", None), ("mute", 2), ("mute", 2),
    ]  # fmt: skip
    assert _rules().empty and not _rules(flood_per_minute=5).empty
