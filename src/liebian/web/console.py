"""Operator console (运营后台) under ``/admin``: server-rendered shells, data from the JSON API.

The pages carry no workspace data and need no key: each is a Jinja skeleton (headings, forms,
empty tables) and ``console.js`` fills it by calling ``/api/v1/*`` with the operator's API key
from sessionStorage. So the console uses exactly the API brands' developers use (one set of
permission checks), and a leaked HTML response reveals nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from liebian.kit.errors import NotFound

WEB = Path(__file__).resolve().parent
STATIC = WEB / "static"
_env = Environment(
    loader=FileSystemLoader(WEB / "templates" / "console"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "segments.js": "text/javascript; charset=utf-8",
    "people.js": "text/javascript; charset=utf-8",
    "channels.js": "text/javascript; charset=utf-8",
    "communities.js": "text/javascript; charset=utf-8",
    "wecom.js": "text/javascript; charset=utf-8",
    "auth.js": "text/javascript; charset=utf-8",
    "team.js": "text/javascript; charset=utf-8",
    "journeys.js": "text/javascript; charset=utf-8",
    "sign_in.js": "text/javascript; charset=utf-8",
}
# Everything is same-origin; QR images arrive as blob: URLs (fetched with the Bearer header),
# live-code uploads preview as data: URLs. No inline script, so injected markup cannot run.
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
# (path segment, template, Chinese title) in menu order.
NAV = [
    ("", "overview.html", "概览"),
    ("links", "links.html", "短链"),
    ("live-codes", "live_codes.html", "活码"),
    ("domains", "domains.html", "域名"),
    ("analytics", "analytics.html", "数据"),
    ("campaigns", "campaigns.html", "活动"),
    ("review", "review.html", "风控审核"),
    ("rewards", "rewards.html", "奖励"),
    ("sign-in", "sign_in.html", "参与者登录"),
    ("webhooks", "webhooks.html", "Webhook"),
    ("channels", "channels.html", "渠道"),
    ("segments", "segments.html", "人群"),
    ("journeys", "journeys.html", "旅程"),
    ("contacts", "contacts.html", "用户"),
    ("tags", "tags.html", "标签"),
    ("communities", "communities.html", "社群"),
    ("wecom", "wecom.html", "企业微信"),
    ("team", "team.html", "成员与安全"),
]
# Pages over the fission routers (campaigns, referrals, risk, rewards): optional together.
FISSION_PAGES = {"campaigns", "review", "rewards", "sign-in"}

router = APIRouter(prefix="/admin", include_in_schema=False)


def _asset_version() -> str:
    """Content hash in the asset URLs: browsers cache assets for a year, and an upgrade
    still reaches them at once because the URL changes."""
    digest = hashlib.sha256()
    for name in sorted(_ASSETS):
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()[:12]


ASSET_VERSION = _asset_version()


def _has_campaigns(request: Request) -> bool:
    # The fission domains are optional in the wiring; hide their menu items when absent.
    # (Asked of the mounted routers: the app's own route list is built lazily.)
    routers = request.app.state.runtime.extras.get("routers", [])
    return any(getattr(r, "path", "") == "/campaigns" for router in routers for r in router.routes)


def _page(request: Request, template: str, page: str, title: str, **extra: Any) -> HTMLResponse:
    nav = [
        (f"/admin/{seg}" if seg else "/admin", label, seg == page)
        for seg, _tpl, label in NAV
        if seg not in FISSION_PAGES or _has_campaigns(request)
    ]
    body = _env.get_template(template).render(
        page=page or "overview", title=title, nav=nav, v=ASSET_VERSION, **extra
    )
    return HTMLResponse(
        body,
        headers={
            "cache-control": "no-store",
            "content-security-policy": _CSP,
            "x-content-type-options": "nosniff",
            "referrer-policy": "same-origin",
        },
    )


@router.get("/login", response_class=HTMLResponse)
def login(request: Request) -> HTMLResponse:
    return _page(request, "login.html", "login", "登录")


@router.get("/join", response_class=HTMLResponse)
def join(request: Request) -> HTMLResponse:
    """The one-time invitation link (/admin/join#<token>): the token stays in the fragment,
    never sent to the server in the URL nor in a Referer."""
    return _page(request, "join.html", "join", "加入工作区")


@router.get("/static/{name}")
def asset(name: str) -> Response:
    if name not in _ASSETS:  # a fixed list: no path tricks can reach other files
        raise NotFound("no such console asset")
    return FileResponse(
        STATIC / name,
        media_type=_ASSETS[name],
        headers={"cache-control": "public, max-age=31536000, immutable"},
    )


@router.get("/links/{link_id}", response_class=HTMLResponse)
def link_detail(request: Request, link_id: str) -> HTMLResponse:
    return _page(request, "link_detail.html", "links", "短链详情", link_id=link_id)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_detail(request: Request, campaign_id: str) -> HTMLResponse:
    if not _has_campaigns(request):
        raise NotFound("campaigns are not enabled in this deployment")
    return _page(request, "campaign_detail.html", "campaigns", "活动详情", campaign_id=campaign_id)


@router.get("/contacts/{ref}", response_class=HTMLResponse)
def contact_detail(request: Request, ref: str) -> HTMLResponse:
    return _page(request, "contact_detail.html", "contacts", "用户详情", ref=ref)


@router.get("/communities/{community_id}", response_class=HTMLResponse)
def community_detail(request: Request, community_id: str) -> HTMLResponse:
    return _page(
        request, "community_detail.html", "communities", "社群详情", community_id=community_id
    )


@router.get("/", include_in_schema=False)
def trailing_slash() -> RedirectResponse:
    return RedirectResponse("/admin", status_code=308)


def _register(segment: str, template: str, title: str) -> None:
    path = f"/{segment}" if segment else ""

    def view(request: Request) -> HTMLResponse:
        if segment in FISSION_PAGES and not _has_campaigns(request):
            raise NotFound("campaigns are not enabled in this deployment")
        return _page(request, template, segment, title)

    router.add_api_route(path, view, methods=["GET"], response_class=HTMLResponse, name=template)


for _segment, _template, _title in NAV:
    _register(_segment, _template, _title)
