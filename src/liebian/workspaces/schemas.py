from __future__ import annotations

from datetime import datetime

from liebian.kit.auth import Role
from liebian.kit.schemas import OutModel, StrictModel


class WorkspaceOut(OutModel):
    id: str
    name: str
    timezone: str
    created_at: datetime


class ApiKeyCreate(StrictModel):
    name: str = ""
    role: Role = Role.operator


class ApiKeyOut(OutModel):
    id: str
    name: str
    role: str
    key_hint: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str
