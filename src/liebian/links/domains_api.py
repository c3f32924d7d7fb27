"""HTTP for short domains: add, list, block/unblock, make primary, delete.

Changing domains needs the admin role (it moves every short URL of the workspace); any key of
the workspace may read them, so operators can see which domain their links use now.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import Field

from liebian.app.deps import PrincipalDep, SessionDep
from liebian.kit.schemas import OutModel, Page, StrictModel
from liebian.links import domains
from liebian.links.models import Domain

router = APIRouter(tags=["domains"])


class DomainCreate(StrictModel):
    host: str = Field(max_length=300, description="bare host name, e.g. s.example.com")
    is_primary: bool = False


class DomainUpdate(StrictModel):
    is_primary: bool = Field(description="true makes this the workspace's primary domain")


class BlockBody(StrictModel):
    reason: str = Field(min_length=1, max_length=500, description="why, e.g. 微信内提示停止访问")


class UnblockBody(StrictModel):
    note: str = Field(default="", max_length=500)


class StatusChangeOut(OutModel):
    status: str
    note: str
    actor: str
    created_at: datetime


class DomainOut(OutModel):
    id: str
    host: str
    status: str
    is_primary: bool
    note: str
    created_at: datetime
    status_changed_at: datetime | None
    # The domain short links are built on right now (primary healthy, else any healthy).
    in_use: bool = False
    history: list[StatusChangeOut] | None = None


def _out(
    domain: Domain, in_use_host: str, history: list[StatusChangeOut] | None = None
) -> DomainOut:
    out = DomainOut.model_validate(domain)
    out.in_use = in_use_host == f"https://{domain.host}"
    out.history = history
    return out


@router.get("/domains", response_model=Page[DomainOut])
def list_domains(principal: PrincipalDep, session: SessionDep) -> Page[DomainOut]:
    # A workspace has a handful of domains: one page, no cursor.
    rows = domains.list_domains(session, principal.workspace_id)
    current = domains.public_base_url(session, principal.workspace_id, "")
    return Page(items=[_out(d, current) for d in rows], next_cursor=None)


@router.post("/domains", response_model=DomainOut, status_code=201)
def add_domain(body: DomainCreate, principal: PrincipalDep, session: SessionDep) -> DomainOut:
    domain = domains.add_domain(
        session, domains.Actor.of(principal), body.host, is_primary=body.is_primary
    )
    return _out(domain, domains.public_base_url(session, principal.workspace_id, ""))


@router.get("/domains/{domain_id}", response_model=DomainOut)
def get_domain(domain_id: str, principal: PrincipalDep, session: SessionDep) -> DomainOut:
    domain = domains.get_domain(session, principal.workspace_id, domain_id)
    changes = [StatusChangeOut.model_validate(c) for c in domains.history(session, domain)]
    return _out(domain, domains.public_base_url(session, principal.workspace_id, ""), changes)


@router.patch("/domains/{domain_id}", response_model=DomainOut)
def update_domain(
    domain_id: str, body: DomainUpdate, principal: PrincipalDep, session: SessionDep
) -> DomainOut:
    actor = domains.Actor.of(principal)
    if body.is_primary:
        domain = domains.make_primary(session, actor, domain_id)
    else:
        # Un-setting the primary flag alone would leave the choice to creation order; the
        # operator picks the new primary instead.
        domain = domains.get_domain(session, principal.workspace_id, domain_id)
    return _out(domain, domains.public_base_url(session, principal.workspace_id, ""))


@router.post("/domains/{domain_id}/block", response_model=DomainOut)
def block_domain(
    domain_id: str, body: BlockBody, principal: PrincipalDep, session: SessionDep
) -> DomainOut:
    domain = domains.block_domain(session, domains.Actor.of(principal), domain_id, body.reason)
    return _out(domain, domains.public_base_url(session, principal.workspace_id, ""))


@router.post("/domains/{domain_id}/unblock", response_model=DomainOut)
def unblock_domain(
    domain_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    body: UnblockBody | None = None,
) -> DomainOut:
    note = body.note if body is not None else ""
    domain = domains.unblock_domain(session, domains.Actor.of(principal), domain_id, note)
    return _out(domain, domains.public_base_url(session, principal.workspace_id, ""))


@router.delete("/domains/{domain_id}", status_code=204)
def delete_domain(domain_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    domains.delete_domain(session, domains.Actor.of(principal), domain_id)
    return Response(status_code=204)
