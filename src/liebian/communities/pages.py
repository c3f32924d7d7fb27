"""The community entry page (/c/{community}): what a scan of the community's live code opens.

GET shows the community, the threshold's form (screening questions, an invitation code) and a
button; POST decides (threshold → tier → a place) and shows the group's QR or join link. The
place is taken on POST only, so link previews and crawlers take none. A re-scan by the same
phone (the ``lb_vid`` cookie, or a keyed hash of IP and user agent without it; the contact when
a participant token says who it is) is shown the same group without taking a second place.

Every refusal is a Chinese page (what happened, what to do); no JSON, no script, nothing
loaded from elsewhere: the QR is a data: image. Works in WeChat's in-app browser at phone size.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from liebian.app.deps import participant_rate_limit
from liebian.app.runtime import Runtime
from liebian.communities import entry, events, service
from liebian.communities.models import Community, CommunityMember
from liebian.contacts.models import Contact
from liebian.contacts.repository import by_external_id
from liebian.kit.client_ip import client_ip
from liebian.kit.clock import as_utc, utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import DomainError, Unauthorized
from liebian.kit.ids import new_id
from liebian.kit.page_security import PAGE_HEADERS
from liebian.kit.visitor import VISITOR_COOKIE, VISITOR_MAX_AGE
from liebian.links.platforms import classify_cached
from liebian.redirect.clicks import new_id as new_visitor_id
from liebian.redirect.clicks import valid_id

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
IDENTITY_COOKIE = "lb_pt"  # the participant token cookie the fission pages set (same brand sign-in)
router = APIRouter(include_in_schema=False, dependencies=[Depends(participant_rate_limit)])

# code → (title, what happened, what to do, HTTP status)
_ERRORS: dict[str, tuple[str, str, str, int]] = {
    "community_not_found": ("社群不存在", "没有找到这个社群，二维码或链接可能已失效。", "请向商家要一个新的入群码。", 404),
    "community_closed": ("社群已关闭", "这个社群已经停止招募。", "请关注商家，留意新的社群。", 410),
    "community_not_started": ("社群尚未开放", "这个社群还没有开始招募。", "请在开放后再扫码进入。", 409),
    "community_ended": ("社群已结束", "这个快闪群已经结束。", "请关注商家，留意下一期。", 410),
    "no_places": ("群已满员", "所有群的名额都已经满了，商家正在准备新群。", "请稍后再扫码，或联系商家客服。", 409),
    "invite_required": ("需要邀请码", "这个社群需要群成员的邀请码才能加入，你填写的邀请码无效。", "请向邀请你的朋友确认邀请码后重试。", 403),
    "sign_in_required": ("请先登录", "加入这个社群需要先在商家那里登录。", "请从商家的公众号、小程序或 App 里的入口进入本页。", 401),
    "purchase_required": ("仅限已购用户", "这个社群只对下过单的顾客开放。", "下单后再扫码进入即可。", 403),
    "activity_required": ("请先参加活动", "这个社群只对参加了指定活动的用户开放。", "参加活动后再扫码进入即可。", 403),
    "member_removed": ("无法加入", "你已被移出这个社群。", "如有疑问，请联系商家客服。", 403),
    "token_invalid": ("请重新进入", "你的登录信息无效。", "请回到商家的公众号、小程序或 App，再从入口进入。", 401),
    "token_expired": ("登录已过期", "你的登录信息已过期。", "请回到商家的公众号、小程序或 App，再从入口进入。", 401),
}  # fmt: skip
_DEFAULT_ERROR = (
    "出了点问题",
    "暂时没能完成操作。",
    "请稍后重试；如果一直不行，请联系商家客服。",
    409,
)
_KIND_ZH = {"acquisition": "引流群", "welfare": "福利群", "flash": "快闪群"}


def _html(name: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    body = _env.get_template(name).render(**context)
    return HTMLResponse(
        body, status_code=http_status, headers={"cache-control": "no-store", **PAGE_HEADERS}
    )


def error_page(code: str, *, back: str | None = None, form: Any = None) -> HTMLResponse:
    title, what, todo, status = _ERRORS.get(code, _DEFAULT_ERROR)
    return _html(
        "community_error.html", http_status=status, title=title, what=what, todo=todo, code=code,
        back=back,
    )  # fmt: skip


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _entrant(
    request: Request, runtime: Runtime, community: Community, session: Any
) -> tuple[service.Entrant, bool]:
    """Who is scanning, and whether the visitor cookie is new (to be set)."""
    cookie = request.cookies.get(VISITOR_COOKIE, "")
    new = not valid_id(cookie)
    visitor_id = new_visitor_id() if new else cookie
    ua = request.headers.get("user-agent", "")[:1000]
    platform = classify_cached(ua).platform
    contact_id = external_id = None
    token = request.cookies.get(IDENTITY_COOKIE) or request.query_params.get("t")
    if token:
        from liebian.campaigns import participant_token

        external_id = participant_token.verify(
            participant_token.workspace_key(runtime.secret, community.workspace_id), token
        )
        contact = by_external_id(session, community.workspace_id, external_id)
        contact_id = contact.id if contact else None
    if contact_id is not None:
        holder = contact_id
    elif not new:
        holder = f"v:{visitor_id}"
    else:
        # No cookie yet (first request, or cookies off): a keyed hash of IP and user agent, so
        # a cookie-less re-scan from the same phone keeps its place.
        ip = client_ip(request.scope, runtime.settings.trusted_proxies)
        digest = hmac.new(runtime.secret, f"cm|{ip}|{ua}".encode(), hashlib.sha256).hexdigest()
        holder = f"h:{digest[:40]}"
    return service.Entrant(holder, contact_id, external_id, visitor_id, platform), new


def _finish(response: Response, request: Request, who: service.Entrant, new: bool) -> Response:
    if new and who.visitor_id:
        response.set_cookie(
            VISITOR_COOKIE, who.visitor_id, max_age=VISITOR_MAX_AGE, httponly=True,
            samesite="lax", secure=request.url.scheme == "https",
        )  # fmt: skip
    return response


def _context(community: Community, tz: str) -> dict[str, Any]:
    ends = (
        community.ends_at.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")
        if community.ends_at
        else None
    )
    return {"community": community, "kind_zh": _KIND_ZH.get(community.kind, ""), "ends": ends}


def _guarded(work: Callable[[], Response]) -> Response:
    try:
        return work()
    except Unauthorized as exc:
        return error_page(exc.code)
    except DomainError as exc:
        if exc.code in _ERRORS:
            return error_page(exc.code)
        raise


@router.get("/c/{community_id}", response_class=HTMLResponse)
def entry_page(community_id: str, request: Request) -> Response:
    runtime = _runtime(request)

    def work() -> Response:
        with session_scope(runtime.read_sessions) as session:
            community = session.get(Community, community_id)
            if community is None:
                return error_page("community_not_found")
            who, new = _entrant(request, runtime, community, session)
            events.emit_now(
                runtime, workspace_id=community.workspace_id, event="community_view",
                event_id=new_id("evt"), user_id=who.external_id, visitor_id=who.visitor_id,
                platform=who.platform, channel=(request.query_params.get("ch") or "")[:64] or None,
                properties={"community_id": community.id},
            )  # fmt: skip
            service.check_open(community, utcnow())
            page = _html(
                "community_entry.html", title=community.name, error=None, answers={},
                **_context(community, runtime.settings.default_timezone),
            )  # fmt: skip
        return _finish(page, request, who, new)

    return _guarded(work)


# The console's phone-size preview of the entry page (a signed address, 15 minutes): the same
# template, framed by the console (same origin), no page view recorded, the button disabled.
PREVIEW_TTL = 15 * 60
preview_router = APIRouter(include_in_schema=False)


def preview_signature(secret: bytes, community_id: str, expires: int) -> str:
    msg = f"community-preview:{community_id}:{expires}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()[:32]


_PREVIEW_HEADERS = {
    **PAGE_HEADERS,
    "content-security-policy": PAGE_HEADERS["content-security-policy"].replace(
        "frame-ancestors 'none'", "frame-ancestors 'self'"
    ),
    "x-frame-options": "SAMEORIGIN",
    "cache-control": "no-store",
    "x-robots-tag": "noindex",
}


@preview_router.get("/admin/preview/c/{community_id}", response_class=HTMLResponse)
def preview_page(community_id: str, request: Request) -> Response:
    import time

    runtime = _runtime(request)
    exp, sig = request.query_params.get("exp", ""), request.query_params.get("sig", "")
    if (
        not exp.isdigit()
        or int(exp) < time.time()
        or not hmac.compare_digest(preview_signature(runtime.secret, community_id, int(exp)), sig)
    ):
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>预览已过期</title>"
            "<p>预览链接已过期，请刷新社群页。</p>",
            status_code=403, headers=_PREVIEW_HEADERS,
        )  # fmt: skip
    with session_scope(runtime.read_sessions) as session:
        community = session.get(Community, community_id)
        if community is None:
            return HTMLResponse("", status_code=404, headers=_PREVIEW_HEADERS)
        body = _env.get_template("community_entry.html").render(
            title=community.name, error=None, answers={}, preview=True,
            **_context(community, runtime.settings.default_timezone),
        )  # fmt: skip
    return HTMLResponse(body, headers=_PREVIEW_HEADERS)


@router.post("/c/{community_id}", response_class=HTMLResponse)
async def join_action(community_id: str, request: Request) -> Response:
    form = await request.form()
    raw: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key.startswith("q_") and isinstance(value, str):
            name = key[2:]
            if name in raw:
                prev = raw[name]
                raw[name] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                raw[name] = value
    invite = form.get("invite")
    invite_code = invite if isinstance(invite, str) else None
    runtime = _runtime(request)

    today = utcnow().astimezone(ZoneInfo(runtime.settings.default_timezone)).date()

    def identify() -> tuple[Community | None, service.Entrant | None, bool]:
        with session_scope(runtime.read_sessions) as session:
            community = session.get(Community, community_id)
            if community is None:
                return None, None, False
            session.expunge(community)
            who, new = _entrant(request, runtime, community, session)
            return community, who, new

    def form_again(exc: DomainError) -> Response:
        with session_scope(runtime.read_sessions) as session:
            community = session.get(Community, community_id)
            assert community is not None
            return _html(
                "community_entry.html", http_status=422, title=community.name,
                error=exc.message, field=(exc.details or {}).get("field"), answers=raw,
                **_context(community, runtime.settings.default_timezone),
            )  # fmt: skip

    try:
        community, who, new = await run_in_threadpool(identify)
    except Unauthorized as exc:
        return error_page(exc.code)
    if community is None or who is None:
        return error_page("community_not_found")
    # Multiple-choice answers arrive as repeated fields; the form says which are lists.
    multiple = {q["key"] for q in community.screening if q["type"] == "multiple"}
    answers = {k: ([v] if k in multiple and isinstance(v, str) else v) for k, v in raw.items()}
    entrant = who
    try:
        # The decision is committed before the page is shown (the group commit on SQLite).
        placed = await entry.run(
            runtime,
            lambda session: entry.decide(
                session, runtime.cipher, community_id, entrant, answers, invite_code, today
            ),
        )
    except DomainError as exc:
        if exc.code in _ERRORS:
            return _finish(error_page(exc.code, back=f"/c/{community_id}"), request, who, new)
        if exc.status == 422:  # a screening answer to fix: the form again, with the reason
            return _finish(await run_in_threadpool(form_again, exc), request, who, new)
        raise
    tasks = [
        {"key": t["key"], "label": t["label"],
         "href": f"/c/{community_id}/t/{placed.member_id}/{t['key']}"
                 f"?s={task_signature(runtime.secret, placed.member_id, t['key'])}"}
        for t in community.first_day_tasks or []
    ]  # fmt: skip
    page = _html(
        "community_group.html", title=community.name,
        group={"name": placed.group_name, "qr_image": placed.qr_image,
               "join_url": placed.join_url, "platform": placed.platform},
        member={"invite_code": placed.invite_code, "tier": placed.tier}, tasks=tasks,
        **_context(community, runtime.settings.default_timezone),
    )  # fmt: skip
    return _finish(page, request, who, new)


# ── first-day tasks (首日任务) ─────────────────────────────────────────────────────────────

FIRST_DAY = timedelta(hours=24)


def task_signature(secret: bytes, member_id: str, key: str) -> str:
    """Signs a member's task link, so a tap is that member's (links cannot be made up)."""
    return hmac.new(secret, f"cft|{member_id}|{key}".encode(), hashlib.sha256).hexdigest()[:20]


@router.get("/c/{community_id}/t/{member_id}/{key}")
def first_day_task(community_id: str, member_id: str, key: str, request: Request) -> Response:
    """A member's first-day task link: a tap within 24 h of their place is recorded once
    (event ``first_day_task``, id ``cm:first_day_task:<member>:<key>``, the contact as user),
    and the task's page opens either way."""
    runtime = _runtime(request)
    given = request.query_params.get("s", "")
    if not hmac.compare_digest(given, task_signature(runtime.secret, member_id, key)):
        return error_page("community_not_found")
    with session_scope(runtime.read_sessions) as session:
        community = session.get(Community, community_id)
        member = session.get(CommunityMember, member_id)
        if community is None or member is None or member.community_id != community.id:
            return error_page("community_not_found")
        task = next((t for t in community.first_day_tasks or [] if t["key"] == key), None)
        if task is None:
            return error_page("community_not_found")
        since = member.joined_at or member.routed_at
        if member.status in ("routed", "joined") and utcnow() - as_utc(since) <= FIRST_DAY:
            external = session.scalar(
                select(Contact.external_id).where(Contact.id == member.contact_id)
            ) if member.contact_id else None  # fmt: skip
            events.emit_now(
                runtime, workspace_id=community.workspace_id, event="first_day_task",
                event_id=f"cm:first_day_task:{member.id}:{key}", user_id=external,
                visitor_id=member.holder[2:] if member.holder.startswith("v:") else None,
                properties={"community_id": community.id, "group_id": member.group_id,
                            "tier": member.tier, "task": key, "member_id": member.id},
            )  # fmt: skip
    return RedirectResponse(task["url"], status_code=302, headers={"cache-control": "no-store"})
