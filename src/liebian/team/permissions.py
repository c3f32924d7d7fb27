"""Permissions: what the built-in roles hold, what custom roles are made of, and which area of
the API each path belongs to. The one table authorization reads (app/deps.py gates a custom
role's request by area here; the built-in roles keep their rank checks in each domain).

A permission is ``<area>:read`` or ``<area>:write``, plus ``contacts:pii`` (phone, email and
name in clear). Analytics queries are POSTs that change nothing: reading them is ``:read``.
"""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from liebian.kit.auth import Role

AREAS: dict[str, str] = {
    "links": "短链、域名与二维码",
    "live_codes": "活码",
    "campaigns": "裂变活动与风控审核",
    "rewards": "奖励与打款",
    "contacts": "用户、标签与人群",
    "communities": "社群",
    "journeys": "自动化旅程",
    "analytics": "数据分析",
    "settings": "设置（Webhook、渠道、连接）",
    "members": "成员、角色与密钥",
    "audit": "审计日志",
}
PERMISSIONS: frozenset[str] = frozenset(
    [f"{area}:{mode}" for area in AREAS for mode in ("read", "write")] + ["contacts:pii"]
)

_READ_ALL = frozenset(f"{a}:read" for a in AREAS if a not in ("members", "audit", "settings"))
_OPERATE = frozenset(
    f"{a}:write"
    for a in ("links", "live_codes", "campaigns", "contacts", "communities", "journeys")
)
BUILT_IN: dict[Role, frozenset[str]] = {
    Role.viewer: _READ_ALL,
    Role.analyst: _READ_ALL,
    Role.operator: _READ_ALL | _OPERATE,
    Role.admin: PERMISSIONS,
    Role.owner: PERMISSIONS,
}

# First path segment under /api/v1 → area. A path not listed is refused to custom roles
# (fail closed); the built-in roles are unaffected.
_PATH_AREAS: dict[str, str] = {
    "links": "links",
    "domains": "links",
    "qr": "links",
    "live-codes": "live_codes",
    "campaigns": "campaigns",
    "assists": "campaigns",
    "groups": "campaigns",
    "referrals": "campaigns",
    "risk": "campaigns",
    "review": "campaigns",
    "rewards": "rewards",
    "payouts": "rewards",
    "contacts": "contacts",
    "tags": "contacts",
    "tag-groups": "contacts",
    "attributes": "contacts",
    "segments": "contacts",
    "communities": "communities",
    "community-groups": "communities",
    "community-messages": "communities",
    "community-materials": "communities",
    "community-posts": "communities",
    "campaign-schedules": "campaigns",
    "contact-attributes": "contacts",
    "identify": "contacts",
    "rule-tags": "contacts",
    "journey-templates": "journeys",
    "staff-tasks": "journeys",
    "channel-settings": "settings",
    "channel-opt-outs": "settings",
    "participant-token-key": "settings",
    "participant-sign-in": "settings",
    "journeys": "journeys",
    "automation": "journeys",
    "tasks": "journeys",
    "analytics": "analytics",
    "spend": "analytics",
    "events": "analytics",
    "webhooks": "settings",
    "channels": "settings",
    "connectors": "settings",
    "wecom": "settings",
    "keys": "members",
    "team": "members",
    "audit": "audit",
}
# Always allowed to any signed-in principal: who am I, sign-out, second verification.
_OPEN = frozenset({"auth", "workspace", "me"})


def area_of(path: str) -> str | None:
    """The area of an ``/api/v1/…`` path; "" for paths every principal may use."""
    rest = path.removeprefix("/api/v1/")
    first = rest.split("/", 1)[0]
    if first in _OPEN:
        return ""
    return _PATH_AREAS.get(first)


def needed(path: str, method: str) -> str | None:
    """The permission a request needs; "" when none; None when the path is unknown."""
    area = area_of(path)
    if area is None or area == "":
        return area
    reading = method in ("GET", "HEAD", "OPTIONS") or area == "analytics"
    return f"{area}:{'read' if reading else 'write'}"


def base_role(permissions: frozenset[str]) -> Role:
    """The built-in rank a custom role acts with in the domains' own rank checks; the area
    gate (``needed``) keeps it out of everything else."""
    if permissions & {"members:write", "settings:write", "rewards:write", "contacts:pii"}:
        return Role.admin
    if any(p.endswith(":write") for p in permissions):
        return Role.operator
    if "analytics:read" in permissions:
        return Role.analyst
    return Role.viewer


def holds(role: Role, custom: frozenset[str] | None) -> frozenset[str]:
    return custom if custom is not None else BUILT_IN[role]


def parse(raw: str) -> frozenset[str]:
    return frozenset(str(p) for p in json.loads(raw))


def custom_role_permissions(session: Session, role_id: str) -> frozenset[str]:
    from liebian.team.models import CustomRole

    role = session.get(CustomRole, role_id)
    # A deleted custom role leaves its members with nothing rather than with their old rank.
    return parse(role.permissions) if role is not None else frozenset()
