"""Roles and the acting principal. Keys and members live in ``workspaces``; this is the vocabulary."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass

from liebian.kit.errors import Forbidden


class Role(enum.StrEnum):
    owner = "owner"
    admin = "admin"
    operator = "operator"
    analyst = "analyst"
    viewer = "viewer"


# Higher may do everything lower may. Analysts read analytics and PII-free data; operators
# also change links/campaigns; admins manage keys and domains; owners everything.
_RANK = {Role.viewer: 0, Role.analyst: 1, Role.operator: 2, Role.admin: 3, Role.owner: 4}


@dataclass(frozen=True, slots=True)
class Principal:
    workspace_id: str
    role: Role
    key_id: str | None = None
    member_id: str | None = None

    def at_least(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def require(self, role: Role) -> None:
        if not self.at_least(role):
            raise Forbidden(
                f"this action needs the '{role.value}' role or higher; the key has '{self.role.value}'",
                code="insufficient_role",
            )

    @property
    def may_see_pii(self) -> bool:
        return self.at_least(Role.admin)


API_KEY_PREFIX = "lb_"


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # Keys are 256-bit random, so a fast hash is safe here (unlike passwords, which use argon2).
    return hashlib.sha256(key.encode()).hexdigest()
