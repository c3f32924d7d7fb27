from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from liebian.kit.auth import Role
from liebian.kit.schemas import OutModel, StrictModel

_SCOPE = (
    "data scope: community ids (cmy_…, the whole community) and group ids (cgp_…, that group "
    "only) the member is limited to; null: the whole workspace"
)


class SignIn(StrictModel):
    login: str = Field(max_length=320, description="email or phone number")
    password: str = Field(max_length=200)
    workspace_id: str | None = Field(default=None, max_length=40)


class SignInOut(OutModel):
    member_id: str
    workspace_id: str
    role: str
    # The workspace requires the authenticator code before anything else (POST step-up).
    totp_required: bool
    totp_enabled: bool
    csrf_token: str


class CodeIn(StrictModel):
    code: str = Field(max_length=20)


class MeOut(OutModel):
    workspace_id: str
    role: str
    member_id: str | None = None
    key_id: str | None = None
    name: str = ""
    login: str = ""
    permissions: list[str]
    totp_enabled: bool = False
    # Sensitive operations are allowed until then (a second verification in the last 10 min).
    stepped_up: bool = False
    scope: list[str] | None = Field(default=None, description=_SCOPE)


class EnrollOut(OutModel):
    secret: str
    otpauth_uri: str


class RecoveryCodesOut(OutModel):
    recovery_codes: list[str]


class SignedOut(OutModel):
    sessions_ended: int


class AcceptInvitation(StrictModel):
    token: str = Field(max_length=100)
    login: str = Field(max_length=320)
    password: str = Field(max_length=200)
    name: str = Field(default="", max_length=200)


class InvitationIn(StrictModel):
    role: Role = Role.operator
    custom_role_id: str | None = Field(default=None, max_length=40)
    email: str = Field(default="", max_length=320, description="who it is for (shown masked)")
    scope: list[str] | None = Field(default=None, max_length=200, description=_SCOPE)


class InvitationOut(OutModel):
    id: str
    role: str
    custom_role_id: str | None = None
    expires_at: datetime
    # The one-time link (shown once): /admin/join#<token>
    url: str
    token: str


class MemberOut(OutModel):
    id: str
    name: str
    email: str
    role: str
    custom_role_id: str | None = None
    created_at: datetime
    totp_enabled: bool = False
    scope: list[str] | None = Field(default=None, description=_SCOPE)


class ScopeIn(StrictModel):
    scope: list[str] | None = Field(max_length=200, description=_SCOPE)


class MemberPatch(StrictModel):
    role: Role
    custom_role_id: str | None = Field(default=None, max_length=40)


class RoleIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    permissions: list[str] = Field(max_length=100)


class RoleOut(OutModel):
    id: str
    name: str
    permissions: list[str]
    created_at: datetime


class PermissionsOut(OutModel):
    areas: dict[str, str]
    permissions: list[str]
    roles: dict[str, list[str]]


class PolicyIn(StrictModel):
    require_totp: bool = False
    audit_retention_days: int = Field(default=365, ge=30, le=3650)


class PolicyOut(OutModel):
    require_totp: bool
    audit_retention_days: int


class AuditOut(OutModel):
    id: str
    at: datetime
    actor_type: str
    member_id: str | None = None
    key_id: str | None = None
    action: str
    object_type: str
    object_id: str | None = None
    changes: dict[str, Any]
    ip: str
    user_agent: str
    outcome: str
    status: int


class AuditPage(OutModel):
    items: list[AuditOut]
    next_cursor: str | None = None
