from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.kit.pagination import paginate
from liebian.workspaces.models import ApiKey, Workspace


def get_workspace(session: Session, workspace_id: str) -> Workspace | None:
    return session.get(Workspace, workspace_id)


def find_key_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash)).first()


def list_keys(session: Session, workspace_id: str, cursor: str | None, limit: int) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.workspace_id == workspace_id)
    return list(session.scalars(paginate(stmt, ApiKey.id, cursor, limit)))


def get_key(session: Session, workspace_id: str, key_id: str) -> ApiKey | None:
    return session.scalars(
        select(ApiKey).where(ApiKey.workspace_id == workspace_id, ApiKey.id == key_id)
    ).first()


def count_workspaces(session: Session) -> int:
    return len(session.scalars(select(Workspace.id).limit(1)).all())
