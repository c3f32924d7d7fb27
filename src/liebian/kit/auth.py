"""Roles and the acting principal. Keys and members live in ``workspaces``; this is the vocabulary."""

from __future__ import annotations

import enum
import hashlib
import re
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


def rank(role: Role) -> int:
    return _RANK[role]


# How recent a second verification must be for a sensitive operation (issue 15).
STEP_UP_SECONDS = 600


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a key (``key_id``; a program), a signed-in member (``session_id``), or
    both (a key owned by a member). ``permissions`` narrows a custom role (team/permissions.py);
    ``stepped_up`` says a second verification is current (a session verified by TOTP in the
    last ``STEP_UP_SECONDS``, or a key made to do sensitive operations). ``scope`` is a data
    scope: the ids of the objects (communities, groups) this principal is limited to, None for
    the whole workspace; the domain that owns those objects applies it."""

    workspace_id: str
    role: Role
    key_id: str | None = None
    member_id: str | None = None
    session_id: str | None = None
    permissions: frozenset[str] | None = None
    stepped_up: bool = False
    scope: frozenset[str] | None = None

    def at_least(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def require_step_up(self, what: str) -> None:
        """Sensitive operations (exports with PII, payouts, key creation, role changes, …)."""
        if not self.stepped_up:
            if self.session_id is not None:
                message = (
                    f"{what} needs a second verification in the last "
                    f"{STEP_UP_SECONDS // 60} minutes: POST /api/v1/auth/step-up with your "
                    "authenticator code, then retry"
                )
            else:
                message = (
                    f"{what} needs a key made for sensitive operations ('sensitive': true, "
                    "created by a member who has just verified with their authenticator)"
                )
            raise Forbidden(message, code="step_up_required")

    def require(self, role: Role) -> None:
        if not self.at_least(role):
            raise Forbidden(
                f"this action needs the '{role.value}' role or higher; "
                f"you have '{self.role.value}'",
                code="insufficient_role",
            )

    @property
    def may_see_pii(self) -> bool:
        if self.permissions is not None:
            return "contacts:pii" in self.permissions
        return self.at_least(Role.admin)


API_KEY_PREFIX = "lb_"
_KEY_BYTES = 32
# What generate_api_key makes: the prefix and 43 URL-safe base64 characters (32 bytes).
_WELL_FORMED = re.compile(r"lb_[A-Za-z0-9_-]{43}")


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def is_well_formed_api_key(key: str) -> bool:
    """Whether ``key`` has the shape of a key this server makes. Anything else (a truncated
    copy, a guess, a fuzzer's string) is refused before it is hashed or looked up."""
    return len(key) == 46 and _WELL_FORMED.fullmatch(key) is not None


def hash_api_key(key: str) -> str:
    # Keys are 256-bit random, so a fast hash is safe here (unlike passwords, which use argon2).
    return hashlib.sha256(key.encode()).hexdigest()
