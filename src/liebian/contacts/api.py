"""HTTP for contacts: one person, PII masked unless the key's role may see it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.contacts import service

router = APIRouter(tags=["contacts"])


@router.get("/contacts/{external_id}")
def get_contact(
    external_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    contact = service.get_by_external_id(session, principal.workspace_id, external_id)
    return {
        "id": contact.id,
        "external_id": contact.external_id,
        **service.display(runtime.cipher, contact, may_see_pii=principal.may_see_pii),
        "avatar_url": contact.avatar_url,
        "created_at": contact.created_at,
    }
