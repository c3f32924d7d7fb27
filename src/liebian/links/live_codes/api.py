"""HTTP for live codes: CRUD, targets, alerts and the target image.

Reads need any key of the workspace; changes need the operator role. The target image is
also reachable without a key when the URL carries the signature the scan page puts there, so
a participant's phone can load exactly the group QR it was shown.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep, get_principal
from liebian.kit.errors import NotFound
from liebian.kit.pagination import page_of
from liebian.kit.schemas import Page
from liebian.links.live_codes import repository, service
from liebian.links.live_codes.schemas import (
    AlertOut,
    LiveCodeCreate,
    LiveCodeOut,
    LiveCodeUpdate,
    Reorder,
    TargetCreate,
    TargetUpdate,
)
from liebian.links.models import LiveCode

router = APIRouter(prefix="/live-codes", tags=["live codes"])

Limit = Annotated[int, Query(ge=1, le=500)]


def _out(session: SessionDep, runtime: RuntimeDep, live_code: LiveCode) -> LiveCodeOut:
    return service.present(session, live_code, runtime.settings.base_url)


@router.post("", response_model=LiveCodeOut, status_code=201)
def create_live_code(
    body: LiveCodeCreate, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> LiveCodeOut:
    live_code = service.create(session, principal, body, runtime.settings.url_blocklist)
    return _out(session, runtime, live_code)


@router.get("", response_model=Page[LiveCodeOut])
def list_live_codes(
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    cursor: str | None = None,
    limit: Limit = 50,
    channel: str | None = None,
) -> Page[LiveCodeOut]:
    rows, next_cursor = page_of(
        service.list_page(session, principal, cursor, limit, channel), limit
    )
    return Page(items=[_out(session, runtime, r) for r in rows], next_cursor=next_cursor)


@router.get("/{live_code_id}", response_model=LiveCodeOut)
def get_live_code(
    live_code_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> LiveCodeOut:
    return _out(session, runtime, service.get(session, principal, live_code_id))


@router.patch("/{live_code_id}", response_model=LiveCodeOut)
def update_live_code(
    live_code_id: str,
    body: LiveCodeUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> LiveCodeOut:
    return _out(session, runtime, service.update(session, principal, live_code_id, body))


@router.delete("/{live_code_id}", status_code=204)
def delete_live_code(live_code_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    service.delete(session, principal, live_code_id)
    return Response(status_code=204)


@router.post("/{live_code_id}/targets", response_model=LiveCodeOut, status_code=201)
def add_target(
    live_code_id: str,
    body: TargetCreate,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> LiveCodeOut:
    live_code = service.add_target(
        session, principal, live_code_id, body, runtime.settings.url_blocklist
    )
    return _out(session, runtime, live_code)


@router.post("/{live_code_id}/targets/reorder", response_model=LiveCodeOut)
def reorder_targets(
    live_code_id: str,
    body: Reorder,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> LiveCodeOut:
    live_code = service.reorder(session, principal, live_code_id, body.target_ids)
    return _out(session, runtime, live_code)


@router.patch("/{live_code_id}/targets/{target_id}", response_model=LiveCodeOut)
def update_target(
    live_code_id: str,
    target_id: str,
    body: TargetUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> LiveCodeOut:
    live_code = service.update_target(
        session, principal, live_code_id, target_id, body, runtime.settings.url_blocklist
    )
    return _out(session, runtime, live_code)


@router.delete("/{live_code_id}/targets/{target_id}", response_model=LiveCodeOut)
def remove_target(
    live_code_id: str,
    target_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> LiveCodeOut:
    live_code = service.remove_target(session, principal, live_code_id, target_id)
    return _out(session, runtime, live_code)


@router.get("/{live_code_id}/alerts", response_model=Page[AlertOut])
def list_alerts(
    live_code_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Limit = 50,
) -> Page[AlertOut]:
    rows, next_cursor = page_of(
        service.list_alerts(session, principal, live_code_id, cursor, limit), limit
    )
    return Page(items=[AlertOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/{live_code_id}/targets/{target_id}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
def target_image(
    live_code_id: str,
    target_id: str,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    sig: str | None = None,
) -> Response:
    """The uploaded group QR: with ``sig`` (from the scan page) no key is needed."""
    if sig is not None and service.check_image_signature(runtime.secret, target_id, sig):
        workspace_id: str | None = None
        cache = "public, max-age=300"
    else:
        workspace_id = get_principal(request).workspace_id
        cache = "private, no-cache"
    found = repository.target_image(session, live_code_id, target_id, workspace_id)
    if found is None:
        raise NotFound("no image target with this id", code="target_not_found")
    data, content_type = found
    return Response(
        content=data,
        media_type=content_type,
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )
