"""QR codes of links and live codes, as PNG or SVG bytes.

The encoded text is the short URL on the workspace's current healthy domain plus ``qr=1``
(:func:`liebian.links.qr.qr_target`), so scans are counted apart from clicks and a blocked
domain is never printed on a new poster.

A centre logo is uploaded with ``POST`` (multipart field ``logo``, ≤ 1 MB PNG/JPEG/WebP/GIF/BMP).
There is deliberately no ``logo_url``: fetching a caller-given URL from the server is an SSRF
hole and a slow request path, and the operator has the file at hand anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Query, Response, UploadFile
from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.kit.errors import NotFound
from liebian.links.domains import public_base_url
from liebian.links.models import Link, LiveCode
from liebian.links.qr import MAX_LOGO_BYTES, qr_target, render_qr

router = APIRouter(tags=["qr codes"])

Format = Annotated[Literal["png", "svg"], Query(description="png or svg")]
Size = Annotated[int, Query(description="pixels, 64–2048")]
Color = Annotated[str, Query(description="hex colour, e.g. #000000")]
Border = Annotated[int, Query(description="quiet zone in modules, 0–16")]
Logo = Annotated[UploadFile, File(description="centre logo, ≤ 1 MB image")]

# (session, workspace id, item id, base URL) → (short URL, slug), or NotFound.
ShortUrlLookup = Callable[[Session, str, str, str], tuple[str, str]]

_MEDIA = {"png": "image/png", "svg": "image/svg+xml"}
_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"image/png": {}, "image/svg+xml": {}}, "description": "the QR code"}
}


def _link_short_url(
    session: Session, workspace_id: str, link_id: str, base_url: str
) -> tuple[str, str]:
    slug = session.scalar(
        select(Link.slug).where(Link.id == link_id, Link.workspace_id == workspace_id)
    )
    if slug is None:
        raise NotFound(f"no link {link_id} in this workspace", code="link_not_found")
    return f"{public_base_url(session, workspace_id, base_url)}/{slug}", slug


def _live_code_short_url(
    session: Session, workspace_id: str, live_code_id: str, base_url: str
) -> tuple[str, str]:
    slug = session.scalar(
        select(LiveCode.slug).where(
            LiveCode.id == live_code_id, LiveCode.workspace_id == workspace_id
        )
    )
    if slug is None:
        raise NotFound(f"no live code {live_code_id} in this workspace", code="live_code_not_found")
    return f"{public_base_url(session, workspace_id, base_url)}/{slug}", slug


def _image(short_url: str, slug: str, options: QrOptions, logo: bytes | None) -> Response:
    fmt = options.format
    data = render_qr(
        qr_target(short_url),
        fmt=fmt,
        size=options.size,
        logo=logo,
        dark=options.dark,
        light=options.light,
        border=options.border,
    )
    return Response(
        content=data,
        media_type=_MEDIA[fmt],
        headers={
            # The encoded domain changes when a domain is blocked: always revalidate.
            "Cache-Control": "private, no-cache",
            "Content-Disposition": f'inline; filename="{slug}.{fmt}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _read_logo(logo: UploadFile) -> bytes:
    # Read one byte past the limit: enough for render_qr to report "too large" without
    # holding an arbitrarily large upload in memory.
    return await logo.read(MAX_LOGO_BYTES + 1)


@dataclass
class QrOptions:
    """The query parameters every QR endpoint takes (one dependency, so the four stay alike)."""

    format: Format = "png"
    size: Size = 512
    dark: Color = "#000000"
    light: Color = "#ffffff"
    border: Border = 2


QrOptionsDep = Annotated[QrOptions, Depends()]


@router.get("/links/{link_id}/qr", response_class=Response, responses=_RESPONSES)
def link_qr(
    link_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    options: QrOptionsDep,
) -> Response:
    url, slug = _link_short_url(session, principal.workspace_id, link_id, runtime.settings.base_url)
    return _image(url, slug, options, None)


@router.post("/links/{link_id}/qr", response_class=Response, responses=_RESPONSES)
async def link_qr_with_logo(
    link_id: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    logo: Logo,
    options: QrOptionsDep,
) -> Response:
    data = await _read_logo(logo)
    return await _in_thread(
        runtime, _link_short_url, link_id, principal.workspace_id, options, data
    )


@router.get("/live-codes/{live_code_id}/qr", response_class=Response, responses=_RESPONSES)
def live_code_qr(
    live_code_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    options: QrOptionsDep,
) -> Response:
    url, slug = _live_code_short_url(
        session, principal.workspace_id, live_code_id, runtime.settings.base_url
    )
    return _image(url, slug, options, None)


@router.post("/live-codes/{live_code_id}/qr", response_class=Response, responses=_RESPONSES)
async def live_code_qr_with_logo(
    live_code_id: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    logo: Logo,
    options: QrOptionsDep,
) -> Response:
    data = await _read_logo(logo)
    return await _in_thread(
        runtime, _live_code_short_url, live_code_id, principal.workspace_id, options, data
    )


async def _in_thread(
    runtime: RuntimeDep,
    lookup: ShortUrlLookup,
    item_id: str,
    workspace_id: str,
    options: QrOptions,
    logo: bytes,
) -> Response:
    """The upload is read asynchronously; the lookup and the Pillow work run off the loop."""
    import anyio.to_thread

    def work() -> Response:
        with runtime.read_sessions() as session:
            url, slug = lookup(session, workspace_id, item_id, runtime.settings.base_url)
        return _image(url, slug, options, logo)

    return await anyio.to_thread.run_sync(work)
