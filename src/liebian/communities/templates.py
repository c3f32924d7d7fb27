"""Welcome (欢迎语) and announcement (群公告) templates: Jinja2 in its sandbox, with the
contact's fields, the community, the group and the member's invite code.

An operator writes ``{{ contact.nickname }}，欢迎加入{{ group.name }}！`` — a missing field renders
as its default (``contact.nickname`` falls back to 「朋友」, any other missing field to an empty
string, or to what ``| default("…")`` gives), and a template that fails to render at send time
falls back to the built-in default text, so a member is always welcomed. Syntax errors and
sandbox violations are refused when the template is saved (422 invalid_template).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from liebian.kit.errors import Invalid

DEFAULT_WELCOME = (
    "{{ contact.nickname }}，欢迎加入{{ community.name }}！请先阅读群公告，有问题随时在群里提问。"
)
DEFAULT_ANNOUNCEMENT = (
    "欢迎来到{{ group.name }}。请文明交流，禁止发广告、链接和联系方式，违者警告、禁言直至移出。"
)
MAX_OUTPUT = 4000


class _Blank(Undefined):
    """A missing field is an empty string, also when asked for one of its attributes."""

    def __str__(self) -> str:
        return ""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self


_env = SandboxedEnvironment(autoescape=False, undefined=_Blank, keep_trailing_newline=False)


def check(template: str, field: str) -> None:
    if not template:
        return
    try:
        _env.from_string(template)
    except TemplateError as exc:
        raise Invalid(
            f"the template cannot be read: {exc}", code="invalid_template",
            details={"field": field},
        ) from None  # fmt: skip


def render(template: str, context: Mapping[str, Any], default: str) -> str:
    """The rendered text; the default template's when ``template`` is empty or fails."""
    for source in (template, default):
        if not source:
            continue
        try:
            text = _env.from_string(source).render(**context).strip()
        except Exception:
            continue
        if text:
            return text[:MAX_OUTPUT]
    return ""


def context(
    *,
    community: Mapping[str, Any],
    contact: Mapping[str, Any] | None = None,
    group: Mapping[str, Any] | None = None,
    member: Mapping[str, Any] | None = None,
    entry_url: str = "",
) -> dict[str, Any]:
    person = dict(contact or {})
    person["nickname"] = person.get("nickname") or "朋友"
    return {
        "contact": person, "community": dict(community), "group": dict(group or {}),
        "member": dict(member or {}), "entry_url": entry_url,
    }  # fmt: skip
