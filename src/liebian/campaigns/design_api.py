"""HTTP for the poster designer and the phone-size previews (rules in ``campaigns/design.py``).

- ``GET/PUT /campaigns/{id}/poster``: the design (text, colours, background) and its lint;
- ``POST /campaigns/{id}/poster/background``: upload a background image (the raw bytes, with
  their Content-Type); answers the stored name to put in the design;
- ``POST /campaigns/{id}/poster/preview``: the poster as a participant would get it, drawn
  from an unsaved design, with a sample nickname and the campaign's entry link in the QR;
- ``GET /campaigns/{id}/preview-link``: a short-lived signed address of the participant entry
  page as a phone shows it (``/admin/preview/p/{id}``), for the console's phone frame; the console's
  unsaved name and share copy ride along as query parameters and are shown only there.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.app.runtime import Runtime
from liebian.campaigns import design, service
from liebian.campaigns.lifecycle_api import LintOut
from liebian.campaigns.models import Campaign
from liebian.campaigns.schemas import LintFinding
from liebian.kit.auth import Role
from liebian.kit.db import session_scope
from liebian.kit.errors import Invalid, NotFound
from liebian.kit.page_security import PAGE_CSP
from liebian.kit.schemas import error_responses
from liebian.links.domains import public_base_url

router = APIRouter(tags=["campaigns"])
page_router = APIRouter(include_in_schema=False)
PREVIEW_TTL = 15 * 60


class PosterDesignOut(BaseModel):
    campaign_id: str
    design: design.PosterDesign
    lint: LintOut


class BackgroundOut(BaseModel):
    name: str = Field(description="put it in the design's background_image")
    width: int
    height: int
    bytes: int


class PreviewLinkOut(BaseModel):
    url: str = Field(description="relative; valid until expires_at (unix seconds)")
    expires_at: int


def _lint_out(findings: list[Any]) -> LintOut:
    return LintOut(
        ok=not any(w.severity == "error" for w in findings),
        findings=[
            LintFinding(code=w.code, severity=w.severity, field=w.field, matched=w.matched,
                        message=w.message, suggestion=w.suggestion)
            for w in findings
        ],
    )  # fmt: skip


def _design_out(campaign: Campaign, d: design.PosterDesign) -> PosterDesignOut:
    return PosterDesignOut(
        campaign_id=campaign.id, design=d, lint=_lint_out(design.lint_design(campaign, d))
    )


@router.get(
    "/campaigns/{campaign_id}/poster",
    response_model=PosterDesignOut,
    responses=error_responses(401, 403, 404),
)
def get_poster(campaign_id: str, principal: PrincipalDep, session: SessionDep) -> PosterDesignOut:
    """The poster design (the defaults until one is saved) and its copy lint."""
    campaign = service.get(session, principal.workspace_id, campaign_id)
    return _design_out(campaign, design.design_of(campaign))


@router.put(
    "/campaigns/{campaign_id}/poster",
    response_model=PosterDesignOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def put_poster(
    campaign_id: str,
    body: design.PosterDesign,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> PosterDesignOut:
    """Save the design (logged in the change log). A live campaign refuses copy with a lint
    error (422 ``copy_lint_error``); warnings come back in ``lint``."""
    campaign, saved, _ = design.save_design(
        session, principal, campaign_id, body.model_dump(), runtime.settings.data_dir
    )
    return _design_out(campaign, saved)


@router.post(
    "/campaigns/{campaign_id}/poster/background",
    response_model=BackgroundOut,
    status_code=201,
    responses=error_responses(401, 403, 404, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the image file's bytes (≤ 5 MB, 300–4096 px a side)",
            "content": {t: {"schema": {"type": "string", "format": "binary"}}
                        for t in design.UPLOAD_TYPES},
        }
    },
)  # fmt: skip
async def upload_background(
    campaign_id: str, request: Request, principal: PrincipalDep, runtime: RuntimeDep
) -> BackgroundOut:
    """Upload a poster background (PNG, JPEG or WebP). It is checked, re-encoded and stored;
    nothing is changed until a design names it."""
    principal.require(Role.operator)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > design.MAX_UPLOAD_BYTES:
        raise design.ImageTooLarge(
            f"upload at most {design.MAX_UPLOAD_BYTES // 1024 // 1024} MB",
            details={"max_bytes": design.MAX_UPLOAD_BYTES},
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > design.MAX_UPLOAD_BYTES:
            raise design.ImageTooLarge(
                f"upload at most {design.MAX_UPLOAD_BYTES // 1024 // 1024} MB",
                details={"max_bytes": design.MAX_UPLOAD_BYTES},
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    content_type = request.headers.get("content-type", "")

    def work() -> design.StoredImage:
        with session_scope(runtime.read_sessions) as session:
            service.get(session, principal.workspace_id, campaign_id)  # 404 before any write
        return design.store_background(
            runtime.settings.data_dir, principal.workspace_id, raw, content_type
        )

    from starlette.concurrency import run_in_threadpool

    stored = await run_in_threadpool(work)
    return BackgroundOut(
        name=stored.name, width=stored.width, height=stored.height, bytes=stored.bytes
    )


@router.post(
    "/campaigns/{campaign_id}/poster/preview",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_responses(401, 403, 404, 422)},
)
def preview_poster(
    campaign_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    body: design.PosterDesign | None = None,
) -> Response:
    """The poster a participant would get, from this (unsaved) design or the saved one: a
    sample nickname, the campaign's entry link in the QR."""
    campaign = service.get(session, principal.workspace_id, campaign_id)
    if (
        body is not None
        and body.background_image is not None
        and design.poster_for(campaign, runtime.settings.data_dir, body)[0].background_image is None
    ):
        raise Invalid(
            "background_image is not an image uploaded to this workspace; upload it first",
            code="unknown_background_image",
            details={"field": "poster.background_image"},
        )
    base = public_base_url(session, principal.workspace_id, runtime.settings.base_url)
    png = design.render_for(
        campaign, runtime.settings.data_dir, url=f"{base}/p/{campaign.id}",
        nickname=design.SAMPLE_NICKNAME, font_path=runtime.settings.poster_font or None,
        design=body,
    )  # fmt: skip
    return Response(png, media_type="image/png", headers={"cache-control": "no-store"})


def _preview_sig(runtime: Runtime, campaign_id: str, expires: int) -> str:
    msg = f"campaign-preview:{campaign_id}:{expires}".encode()
    return hmac.new(runtime.secret, msg, hashlib.sha256).hexdigest()[:32]


@router.get(
    "/campaigns/{campaign_id}/preview-link",
    response_model=PreviewLinkOut,
    responses=error_responses(401, 403, 404),
)
def preview_link(
    campaign_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> PreviewLinkOut:
    """A signed address (15 minutes) of the participant entry page as a phone shows it, for
    a phone-size frame in the console; add ``name`` / ``share_text`` to preview unsaved copy."""
    campaign = service.get(session, principal.workspace_id, campaign_id)
    expires = int(time.time()) + PREVIEW_TTL
    query = urlencode({"exp": expires, "sig": _preview_sig(runtime, campaign.id, expires)})
    return PreviewLinkOut(url=f"/admin/preview/p/{campaign.id}?{query}", expires_at=expires)


# The preview is framed by the console (same origin), unlike participant pages (never framed).
_PREVIEW_HEADERS = {
    "content-security-policy": PAGE_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'"),
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
    "cache-control": "no-store",
    "x-robots-tag": "noindex",
}


@page_router.get("/admin/preview/p/{campaign_id}", response_class=HTMLResponse)
def preview_page(campaign_id: str, request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    q = request.query_params
    exp = q.get("exp", "")
    sig = q.get("sig", "")
    if (
        not exp.isdigit()
        or int(exp) < time.time()
        or not hmac.compare_digest(_preview_sig(runtime, campaign_id, int(exp)), sig)
    ):
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>预览已过期</title>"
            "<p>预览链接已过期，请在后台刷新活动页。</p>",
            status_code=403,
            headers=_PREVIEW_HEADERS,
        )
    from liebian.campaigns import pages

    with session_scope(runtime.read_sessions) as session:
        campaign = _campaign_or_404(session, campaign_id)
        context = pages.campaign_context(session, runtime, campaign)
        shown = _Shown(
            campaign, name=q.get("name", "")[:200], share_text=q.get("share_text", "")[:500]
        )
        context["campaign"] = shown
        html = pages.entry_html(context, pages.ANONYMOUS, None, q.get("ch") or None)
    return HTMLResponse(html, headers=_PREVIEW_HEADERS)


class _Shown:
    """The campaign as the preview shows it: the console's unsaved name and copy over the
    stored row, which is never modified."""

    def __init__(self, campaign: Campaign, *, name: str, share_text: str) -> None:
        self._campaign = campaign
        self.name = name.strip() or campaign.name
        self.share_text = share_text.strip() or campaign.share_text

    def __getattr__(self, item: str) -> Any:
        return getattr(self._campaign, item)


def _campaign_or_404(session: Session, campaign_id: str) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("no such campaign", code="campaign_not_found")
    return campaign
