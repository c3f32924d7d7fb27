"""HTTP for links: parse, call the service, shape the reply."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import Field

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.kit.auth import Role
from liebian.kit.errors import Invalid
from liebian.kit.netguard import parse_networks
from liebian.kit.pagination import page_of
from liebian.kit.schemas import Page, StrictModel
from liebian.links import repository, service
from liebian.links.domains import public_base_url
from liebian.links.models import Link
from liebian.links.schemas import BulkResult, LinkCreate, LinkOut, LinkUpdate

router = APIRouter(tags=["links"])


def _policy(runtime: RuntimeDep) -> service.LinkPolicy:
    return service.LinkPolicy(
        blocklist=tuple(runtime.settings.url_blocklist),
        allowed_networks=parse_networks(runtime.settings.allowed_private_networks),
    )


def qr_url(api_base: str, link_id: str) -> str:
    """Absolute, like a live code's: the QR image is served by this server (``base_url``)."""
    return f"{api_base.rstrip('/')}/api/v1/links/{link_id}/qr"


def to_out(link: Link, base: str, api_base: str) -> LinkOut:
    return LinkOut(
        id=link.id,
        slug=link.slug,
        short_url=f"{base}/{link.slug}",
        url=link.url,
        title=link.title,
        channel=link.channel,
        campaign_id=link.campaign_id,
        utm=link.utm or {},
        tags=link.tags,
        expires_at=link.expires_at,
        expired_url=link.expired_url,
        max_clicks=link.max_clicks,
        has_password=link.password_hash is not None,
        allowed_platforms=link.allowed_platforms,
        ios_url=link.ios_url,
        android_url=link.android_url,
        variants=link.variants,
        browser_guide=link.browser_guide,
        qr_url=qr_url(api_base, link.id),
        created_at=link.created_at,
        updated_at=link.updated_at,
    )


def _base(session: SessionDep, principal: PrincipalDep, runtime: RuntimeDep) -> str:
    return public_base_url(session, principal.workspace_id, runtime.settings.base_url)


@router.post("/links", response_model=LinkOut, status_code=201)
def create_link(
    body: LinkCreate, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> LinkOut:
    link = service.create_link(session, principal, body, _policy(runtime))
    return to_out(link, _base(session, principal, runtime), runtime.settings.base_url)


@router.get("/links", response_model=Page[LinkOut])
def list_links(
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    tag: str | None = None,
    channel: str | None = None,
    q: Annotated[
        str | None, Query(max_length=200, description="search slug, URL and title")
    ] = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[LinkOut]:
    rows = service.list_links(
        session, principal, tag=tag, channel=channel, search=q, cursor=cursor, limit=limit
    )
    items, next_cursor = page_of(rows, limit)
    base = _base(session, principal, runtime)
    api_base = runtime.settings.base_url
    return Page(items=[to_out(link, base, api_base) for link in items], next_cursor=next_cursor)


@router.get("/links/export.csv", response_class=StreamingResponse)
def export_links(principal: PrincipalDep, runtime: RuntimeDep) -> StreamingResponse:
    principal.require(Role.analyst)

    def rows() -> Iterator[str]:
        # Its own session: a streaming body outlives the request's dependency scope.
        with runtime.read_sessions() as session:  # no writer lock for a slow download
            yield from service.export_csv(repository.iter_links(session, principal.workspace_id))

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="links.csv"'},
    )


@router.get("/links/{link_id}", response_model=LinkOut)
def get_link(
    link_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> LinkOut:
    link = service.get_link(session, principal, link_id)
    return to_out(link, _base(session, principal, runtime), runtime.settings.base_url)


@router.patch("/links/{link_id}", response_model=LinkOut)
def update_link(
    link_id: str,
    body: LinkUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> LinkOut:
    link = service.update_link(session, principal, link_id, body, _policy(runtime))
    return to_out(link, _base(session, principal, runtime), runtime.settings.base_url)


@router.delete("/links/{link_id}", status_code=204)
def delete_link(link_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    service.delete_link(session, principal, link_id)
    return Response(status_code=204)


class BulkCreate(StrictModel):
    links: list[dict[str, Any]] = Field(
        description=f"at most {service.MAX_BULK} link objects, as for POST /links"
    )
    return_items: bool = Field(default=False, description="include every created link in the reply")


def _bulk_reply(
    created: list[dict[str, Any]], base: str, api_base: str, return_items: bool
) -> BulkResult:
    items = None
    if return_items:
        items = [
            LinkOut.model_validate(
                {**values, "short_url": f"{base}/{values['slug']}", "tags": [], "has_password": values["password_hash"] is not None,
                 "qr_url": qr_url(api_base, values["id"]), "utm": values["utm"] or {}}
            )
            for values in created
        ]  # fmt: skip
    return BulkResult(created=len(created), items=items)


@router.post("/links/bulk", response_model=BulkResult, status_code=201)
def bulk_create(
    body: BulkCreate, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> BulkResult:
    """All or nothing: any bad row rejects the batch with a 422 listing every bad row."""
    created = service.bulk_create(session, principal, body.links, _policy(runtime))
    return _bulk_reply(
        created, _base(session, principal, runtime), runtime.settings.base_url, body.return_items
    )


@router.post("/links/bulk/csv", response_model=BulkResult, status_code=201)
def bulk_create_csv(
    body: Annotated[bytes, Body(media_type="text/csv")],
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> BulkResult:
    """CSV with a header row (columns as in GET /links/export.csv; lists separated by '|').
    All or nothing, like the JSON bulk call; bad rows are listed by data-row number."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(
            "CSV must be UTF-8 encoded (save as 'CSV UTF-8' in Excel)", code="bad_csv"
        ) from exc
    rows = service.parse_csv(text)
    created = service.bulk_create(session, principal, rows, _policy(runtime))
    return _bulk_reply(
        created, _base(session, principal, runtime), runtime.settings.base_url, False
    )
