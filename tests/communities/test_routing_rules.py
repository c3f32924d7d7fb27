"""The entry rules as plain functions: answers checked, tiers decided, config cross-checked."""

from __future__ import annotations

from datetime import date

import pytest
from community_helpers import mother_baby

from liebian.communities import moderation, routing
from liebian.kit.errors import Invalid


def test_months_between_counts_whole_months_and_future_dates() -> None:
    assert routing.months_between(date(2023, 5, 10), date(2026, 5, 9)) == 35
    assert routing.months_between(date(2023, 5, 10), date(2026, 5, 10)) == 36
    assert routing.months_between(date(2027, 2, 1), date(2026, 12, 2)) == -2


def test_age_tier_moves_as_time_passes_and_choice_rules_come_first() -> None:
    cfg = mother_baby()
    answers = {"birthday": date(2023, 12, 15), "city": "上海"}
    assert routing.decide_tier(cfg["tiers"], cfg["routing"], answers, date(2026, 12, 2)) == (
        "t03",
        "age",
    )
    # The child turns 3 on 2026-12-15: from then on the 3–8 tier.
    assert routing.decide_tier(cfg["tiers"], cfg["routing"], answers, date(2026, 12, 15)) == (
        "t38",
        "age",
    )
    beijing = {**answers, "city": "北京"}
    assert routing.decide_tier(cfg["tiers"], cfg["routing"], beijing, date(2026, 12, 2)) == (
        "bj",
        "rule",
    )
    too_old = {"birthday": date(2010, 1, 1), "city": "其他"}
    assert routing.decide_tier(cfg["tiers"], cfg["routing"], too_old, date(2026, 12, 2)) == (
        None,
        None,
    )


def test_answers_of_the_wrong_type_are_refused_naming_the_field() -> None:
    qs = mother_baby()["screening"]
    ok = routing.check_answers(qs, {"birthday": "2024-01-02", "city": "北京", "topics": ["辅食"]})
    assert ok == {"birthday": date(2024, 1, 2), "city": "北京", "topics": ["辅食"]}
    bad = [
        ({"birthday": "明年", "city": "北京"}, "answers.birthday"),
        ({"birthday": "2024-01-02", "city": "广州"}, "answers.city"),
        ({"birthday": "2024-01-02", "city": "北京", "topics": ["游泳"]}, "answers.topics"),
        ({"birthday": "2024-01-02"}, "answers.city"),
        ({"birthday": "2024-01-02", "city": "北京", "nick": "x" * 201}, "answers.nick"),
        ({"birthday": "2024-01-02", "city": "北京", "shoe": "42"}, "answers.shoe"),
    ]
    for raw, field in bad:
        with pytest.raises(Invalid) as err:
            routing.check_answers(qs, raw)
        assert err.value.details["field"] == field, raw


def test_config_refuses_unknown_tiers_and_questions() -> None:
    cfg = mother_baby()
    routing.check_config(cfg["tiers"], cfg["screening"], cfg["routing"])
    cases = [
        (cfg["tiers"], cfg["screening"], [{"question": "city", "values": ["北京"], "tier": "sh"}], "unknown_tier"),
        (cfg["tiers"], cfg["screening"], [{"question": "nick", "values": ["a"], "tier": "bj"}], "invalid_routing"),
        (cfg["tiers"], cfg["screening"], [{"question": "city", "values": ["广州"], "tier": "bj"}], "invalid_routing"),
        ([{"key": "x", "name": "x", "age": {"question": "city", "min_months": 0, "max_months": 3}}], cfg["screening"], [], "invalid_tiers"),
        (cfg["tiers"] + cfg["tiers"][:1], cfg["screening"], [], "invalid_tiers"),
    ]  # fmt: skip
    for tiers, screening, rules, code in cases:
        with pytest.raises(Invalid) as err:
            routing.check_config(tiers, screening, rules)
        assert err.value.code == code
    with pytest.raises(Invalid) as err:
        moderation.compile_pattern("(unclosed", "rules.banned_patterns[0]")
    assert err.value.code == "invalid_pattern"
