from __future__ import annotations

from datetime import datetime

from pydantic import Field

from liebian.kit.auth import Role
from liebian.kit.schemas import OutModel, StrictModel


class WorkspaceOut(OutModel):
    id: str
    name: str
    timezone: str
    created_at: datetime


class ApiKeyCreate(StrictModel):
    name: str = Field("", max_length=200)
    role: Role = Role.operator
    # May do sensitive operations (exports with PII, payouts, …) without a second factor.
    sensitive: bool = False


class ApiKeyOut(OutModel):
    id: str
    name: str
    role: str
    key_hint: str
    created_at: datetime
    sensitive: bool = False
    member_id: str | None = None
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str
