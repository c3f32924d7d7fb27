"""Welcome and announcement templates as plain functions: fields, defaults, the sandbox."""

from __future__ import annotations

import pytest

from liebian.communities import templates
from liebian.kit.errors import Invalid


def _ctx(**contact: object) -> dict[str, object]:
    return templates.context(
        community={"name": "宝妈交流群"}, contact=contact, group={"name": "0–3 岁 1 群"},
        member={"invite_code": "AbC123"},
    )  # fmt: skip


def test_fields_defaults_and_fallbacks() -> None:
    t = "{{ contact.nickname }}，欢迎加入{{ group.name }}！宝宝生日：{{ contact.baby_birthday | default('未填') }}{{ contact.city }}"
    assert templates.render(t, _ctx(nickname="小美", baby_birthday="2025-03-01"), "") == (
        "小美，欢迎加入0–3 岁 1 群！宝宝生日：2025-03-01"
    )
    # No nickname: 「朋友」; a missing attribute: its default, or nothing (also its attributes).
    assert (
        templates.render(t + "{{ contact.a.b.c }}", _ctx(), "")
        == "朋友，欢迎加入0–3 岁 1 群！宝宝生日：未填"
    )
    # Empty, or failing at render time (the sandbox refuses internals): the default text.
    assert templates.render("", _ctx(), templates.DEFAULT_WELCOME).startswith(
        "朋友，欢迎加入宝妈交流群"
    )
    escape = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    assert templates.render(escape, _ctx(), "默认欢迎语") == "默认欢迎语"
    assert templates.render("{{ 1 / 0 }}", _ctx(), "默认欢迎语") == "默认欢迎语"
    assert (
        templates.render("<b>{{ contact.nickname }}</b>", _ctx(nickname="<x>"), "") == "<b><x></b>"
    )


def test_unreadable_templates_are_refused_when_saved() -> None:
    templates.check("{{ contact.nickname }}", "welcome_template")
    with pytest.raises(Invalid) as err:
        templates.check("{{ contact.nickname ", "welcome_template")
    assert err.value.code == "invalid_template" and err.value.details == {
        "field": "welcome_template"
    }
