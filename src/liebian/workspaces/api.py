from __future__ import annotations

from fastapi import APIRouter, Query

from liebian.app.deps import PrincipalDep, SessionDep
from liebian.kit.auth import Role
from liebian.kit.errors import NotFound
from liebian.kit.pagination import page_of
from liebian.kit.schemas import Page
from liebian.workspaces import repository, service
from liebian.workspaces.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, WorkspaceOut

router = APIRouter(tags=["workspace"])


@router.get("/workspace", response_model=WorkspaceOut)
def get_workspace(principal: PrincipalDep, session: SessionDep) -> WorkspaceOut:
    workspace = repository.get_workspace(session, principal.workspace_id)
    if workspace is None:
        raise NotFound("workspace not found")
    return WorkspaceOut.model_validate(workspace)


@router.get("/keys", response_model=Page[ApiKeyOut])
def list_keys(
    principal: PrincipalDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: int = Query(50),
) -> Page[ApiKeyOut]:
    principal.require(Role.admin)
    rows, next_cursor = page_of(
        repository.list_keys(session, principal.workspace_id, cursor, limit), limit
    )
    return Page(items=[ApiKeyOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("/keys", response_model=ApiKeyCreated, status_code=201)
def create_key(body: ApiKeyCreate, principal: PrincipalDep, session: SessionDep) -> ApiKeyCreated:
    key, plaintext = service.create_api_key(
        session,
        principal.workspace_id,
        body.role,
        body.name,
        actor=principal,
        sensitive=body.sensitive,
    )
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=plaintext)


@router.delete("/keys/{key_id}", response_model=ApiKeyOut)
def revoke_key(key_id: str, principal: PrincipalDep, session: SessionDep) -> ApiKeyOut:
    return ApiKeyOut.model_validate(service.revoke_api_key(session, principal, key_id))
