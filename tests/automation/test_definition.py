"""The journey definition and template rules as plain functions (no app, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import pytest

from liebian.automation import definition as d
from liebian.automation.content import MissingField, check_template, render
from liebian.kit.errors import Invalid


def _steps(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"trigger": {"type": "manual"}, "steps": list(steps)}


def _refused(data: Any, code: str, field: str, **kw: Any) -> None:
    with pytest.raises(Invalid) as info:
        d.check_definition(data, **kw)
    assert info.value.code == code, info.value.message
    assert info.value.details["field"] == field, info.value.message


def test_definitions_refused_with_the_field_to_fix() -> None:
    wait = {"id": "w", "type": "wait", "duration": {"hours": 1}}
    _refused(_steps(), "invalid_journey", "steps")
    _refused({"trigger": {"type": "nope"}, "steps": [wait]}, "invalid_journey", "trigger.type")
    _refused(_steps({**wait, "colour": 1}), "invalid_journey", "steps[0].colour")
    _refused(_steps(wait, {**wait}), "invalid_journey", "steps[1].id")
    _refused(_steps({**wait, "next": "ghost"}), "invalid_journey", "steps[0]")
    # a loop — with or without a wait — is refused: each step runs once per person
    _refused(
        _steps({"id": "a", "type": "add_tag", "tag_ids": ["t"]}, {**wait, "next": "a"}),
        "journey_loop",
        "steps[1]",
    )
    _refused(
        _steps({"id": "b", "type": "branch", "condition": {}, "then": "b", "else": None}),
        "journey_loop",
        "steps[0]",
    )
    # unreachable only matters for a publish
    orphan = _steps({**wait, "next": None}, {"id": "x", "type": "add_tag", "tag_ids": ["t"]})
    d.check_definition(orphan)
    _refused(orphan, "unreachable_step", "steps[1]", require_reachable=True)
    split = {"id": "s", "type": "split", "paths": [{"percent": 50}, {"percent": 40}]}
    _refused(_steps(split), "invalid_journey", "steps[0].paths")
    _refused(
        _steps({**wait, "duration": {"days": 500}}), "invalid_journey", "steps[0].duration.days"
    )
    _refused(
        _steps({"id": "u", "type": "wait", "until": {"time": "25:00"}}),
        "invalid_journey",
        "steps[0].until.time",
    )
    _refused(
        {"trigger": {"type": "manual"}, "entry": {"mode": "once_per_days"}, "steps": [wait]},
        "invalid_journey",
        "entry.days",
    )
    ok = d.check_definition(
        _steps(
            {"id": "b", "type": "branch", "condition": {"type": "tags", "tags": ["t"]},
             "then": "s", "else": None},
            {"id": "s", "type": "split", "paths": [{"percent": 30}, {"percent": 70, "next": None}]},
        ),
        require_reachable=True,
    )  # fmt: skip
    assert [p for p, _ in ok.conditions] == ["steps[0].condition"]


def test_templates_print_fields_only() -> None:
    check_template("{{ contact.nickname | default('朋友') }}，欢迎！", "t", frozenset({"city"}))
    check_template(
        "{{ attributes.city | default('') }} {{ journey.name }}", "t", frozenset({"city"})
    )
    bad = {
        "{{ contact.password }}": "template_unknown_field",
        "{{ attributes.nope }}": "template_unknown_field",
        "{{ ''.__class__ }}": "template_code",
        "{{ contact.nickname.upper() }}": "template_code",
        "{% for x in tags %}{{ x }}{% endfor %}": "template_code",
        "{{ cycler }}": "template_unknown_field",
        "{{ contact.nickname | attr('x') }}": "template_code",
        "{{ contact.nickname ": "template_syntax",
    }
    for text, code in bad.items():
        with pytest.raises(Invalid) as info:
            check_template(text, "steps[0].content.text", frozenset({"city"}))
        assert info.value.code == code, text
    ctx = {"contact": {"id": "ctc_1"}, "attributes": {}, "journey": {"name": "新人"}, "tags": []}
    assert render("你好{{ contact.nickname | default('朋友') }}", ctx) == "你好朋友"
    with pytest.raises(MissingField):
        render("你好{{ contact.nickname }}", ctx)


def test_wait_until_local_time_and_weekdays_and_split() -> None:
    # Friday 2026-03-06 20:00 Shanghai = 12:00 UTC; next weekday 09:30 is Monday.
    friday = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    got = d.wait_until(friday, time(9, 30), (1, 2, 3, 4, 5), "Asia/Shanghai")
    assert got == datetime(2026, 3, 9, 1, 30, tzinfo=UTC)
    # same day, later
    got = d.wait_until(friday, time(21, 0), (5,), "Asia/Shanghai")
    assert got == datetime(2026, 3, 6, 13, 0, tzinfo=UTC)
    paths = [{"percent": 20}, {"percent": 80}]
    picks = [d.split_pick(f"jrr_{i}", "s", paths) for i in range(2000)]
    assert 300 <= picks.count(0) <= 500  # ~20 %
    assert picks == [d.split_pick(f"jrr_{i}", "s", paths) for i in range(2000)]  # stable
