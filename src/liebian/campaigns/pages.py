"""Participant H5 pages that act: the campaign entry (/p/{campaign}), an invite landing
(/p/{campaign}/{code}), my page with invite link, poster and rewards (/p/{campaign}/me),
group buy (/g/{group}) and assist (/a/{assist}).

Who is acting: a participant token the brand signed for its user (``campaigns/
participant_token.py``; ``?t=`` on any page link, then an HttpOnly cookie), or a person who
signed in on the page itself with a phone code or WeChat (participants/, the sign-in pages in
campaigns/sign_in_pages.py; a signed session cookie). Without either a page shows everything a
visitor may see and the sign-in the workspace offers. Fraud signals (IP, user agent, the
``lb_vid`` device cookie) come from the request itself, never from a form.

Every refusal a participant can meet (unknown or expired invite, campaign ended or not
started, group full, already helped, sold out, sign-in expired) is a Chinese page that says
what happened and what to do — never JSON. Pages are server-rendered (Jinja2, autoescaped),
plain HTML forms and links, no script and no third-party resource.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from liebian.app.deps import participant_rate_limit
from liebian.app.runtime import Runtime
from liebian.campaigns import (
    assists,
    fission_events,
    groups,
    participant_token,
    referrals,
    repository,
    service,
    writes,
)
from liebian.campaigns.models import Assist, Campaign, Group, Participant
from liebian.campaigns.schemas import AssistConfig, GroupBuyConfig
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact
from liebian.contacts.repository import by_external_id
from liebian.kit.auth import Principal, Role
from liebian.kit.client_ip import client_ip
from liebian.kit.db import session_scope
from liebian.kit.errors import DomainError, NotFound, Unauthorized
from liebian.kit.ids import new_id
from liebian.kit.page_security import PAGE_HEADERS
from liebian.links.domains import public_base_url
from liebian.links.platforms import classify_cached
from liebian.participants import service as sign_in
from liebian.participants.session import SESSION_COOKIE, form_token, session_identity
from liebian.redirect.clicks import VISITOR_COOKIE, VISITOR_MAX_AGE, valid_id
from liebian.redirect.clicks import new_id as new_visitor_id
from liebian.rewards import service as ledger

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_STATUS_ZH = {
    "open": "进行中", "success": "拼团成功", "failed": "拼团失败", "unlocked": "已完成",
    "expired": "已过期", "active": "进行中", "paused": "已暂停", "ended": "已结束", "draft": "未开始",
}  # fmt: skip
_REWARD_STATUS_ZH = {
    "pending": "待发放（等待确认期结束）", "approved": "已确认，即将发放", "issued": "已发放",
    "reversed": "已撤销",
}  # fmt: skip
IDENTITY_COOKIE = "lb_pt"
# The public rate limits (per IP and visitor) apply to every participant page.
router = APIRouter(include_in_schema=False, dependencies=[Depends(participant_rate_limit)])

# code → (title, what happened, what to do, HTTP status)
_ERRORS: dict[str, tuple[str, str, str, int]] = {
    "invite_not_found": ("邀请链接无效", "这个邀请链接不存在或已经失效。", "请向邀请你的朋友要一个新链接，或直接参加活动。", 404),
    "campaign_not_found": ("活动不存在", "没有找到这个活动，链接可能输错了。", "请回到商家的公众号或 App 重新进入。", 404),
    "group_not_found": ("拼团不存在", "没有找到这个团，链接可能输错了。", "请向分享给你的朋友要一个新链接。", 404),
    "assist_not_found": ("助力活动不存在", "没有找到这个助力活动。", "请向分享给你的朋友要一个新链接。", 404),
    "campaign_ended": ("活动已结束", "这个活动已经结束，不能再参与了。", "关注商家，留意下一期活动。", 410),
    "campaign_not_active": ("活动暂未开放", "活动目前已暂停或已结束。", "稍后再来看看，或联系商家客服。", 409),
    "campaign_not_started": ("活动尚未开始", "活动还没有开始。", "请在活动开始后再来参与。", 409),
    "group_full": ("这个团已满员", "这个团的名额已经被抢完了。", "你可以自己开一个团，邀请朋友一起拼。", 409),
    "group_success": ("这个团已拼成", "这个团已经拼团成功，不能再加入了。", "你可以自己开一个团，邀请朋友一起拼。", 409),
    "group_failed": ("拼团已结束", "这个团没有在时限内拼成，已经关闭。", "你可以自己开一个新团。", 409),
    "group_expired": ("拼团已结束", "这个团已经过了截止时间。", "你可以自己开一个新团。", 409),
    "already_member": ("你已在团中", "你已经加入了这个团。", "把团链接分享给朋友，一起拼成。", 409),
    "already_helped": ("你已经助力过了", "每个人只能为同一个活动助力一次。", "谢谢你的帮忙！你也可以发起自己的活动。", 409),
    "self_help": ("不能为自己助力", "发起人不能给自己助力。", "把链接分享给朋友，请他们来帮忙。", 409),
    "help_limit_reached": ("今天助力次数已用完", "为防止刷单，每人每天的助力次数有上限。", "明天再来吧。", 429),
    "assist_complete": ("已经完成啦", "这个助力活动已经完成，不需要再助力了。", "你也可以发起自己的活动。", 409),
    "assist_expired": ("助力已过期", "这个助力活动已经过了截止时间。", "你可以发起一个新的。", 409),
    "sold_out": ("已抢光", "奖品或名额已经全部发完了。", "关注商家，留意补货或下一期活动。", 409),
    "self_referral": ("不能邀请自己", "不能用自己的邀请链接参加。", "把你的链接分享给朋友吧。", 409),
    "token_invalid": ("请重新进入", "你的登录信息无效。", "请回到商家的公众号、小程序或 App，再从活动入口进入。", 401),
    "token_expired": ("登录已过期", "你的登录信息已过期。", "请回到商家的公众号、小程序或 App，再从活动入口进入。", 401),
    "sign_in_required": ("请先登录", "参与活动需要先在商家那里登录。", "请从商家的公众号、小程序或 App 里的活动入口进入本页。", 401),
    "wrong_campaign_type": ("页面不适用", "这个活动不支持这个操作。", "请回到活动首页。", 409),
    # signing in on the page (campaigns/sign_in_pages.py)
    "phone_invalid": ("手机号不正确", "请输入 11 位中国大陆手机号。", "检查号码后重新输入。", 422),
    "sign_in_method_off": ("暂不支持这种登录方式", "这个活动没有开启这种登录方式。", "请换一种方式登录，或从商家的公众号、小程序或 App 进入。", 403),
    "sms_too_many": ("获取验证码太频繁", "为保护你的手机号，每个号码每小时最多获取 5 次验证码。", "请一小时后再试，或换用其他登录方式。", 429),
    "sms_wait": ("请稍后再获取", "验证码每分钟只能获取一次。", "请查看刚收到的短信，或一分钟后再试。", 429),
    "sms_send_failed": ("短信发送失败", "验证码短信暂时没能发出。", "请稍后重试，或换用其他登录方式。", 503),
    "sms_code_format": ("验证码格式不对", "验证码是短信里的 6 位数字。", "请对照短信重新输入。", 422),
    "sms_code_wrong": ("验证码不对", "你输入的验证码和短信里的不一致。", "请对照短信重新输入。", 422),
    "sms_code_expired": ("验证码已失效", "验证码已过期、已经用过，或还没有获取。", "请重新获取验证码。", 410),
    "sms_code_locked": ("验证码已作废", "输错次数太多，这个验证码已作废。", "请重新获取验证码。", 429),
    "form_expired": ("页面已过期", "登录表单已失效，或不是从本站页面提交的。", "请返回活动页重新登录。", 403),
    "wechat_denied": ("未完成微信授权", "你没有同意微信授权，所以无法登录。", "如需参与，请重新点击“微信一键登录”并同意授权，或用手机号登录。", 401),
    "wechat_state_invalid": ("登录已过期", "这次微信登录已过期，或不是从本站页面发起的。", "请返回登录页，重新点击“微信一键登录”。", 403),
    "wechat_code_invalid": ("微信登录失败", "微信没有确认你的身份（授权已失效或已使用）。", "请返回活动页重新登录。", 401),
    "wechat_unreachable": ("暂时连不上微信", "暂时无法连接微信的服务器。", "请稍后重试，或用手机号登录。", 503),
    "wechat_snapshot": ("请打开完整页面", "你正在朋友圈的预览页里，无法确认身份。", "请点击页面下方的“使用完整服务”后再参与。", 401),
}  # fmt: skip
_DEFAULT_ERROR = (
    "出了点问题",
    "暂时没能完成操作。",
    "请稍后重试；如果一直不行，请联系商家客服。",
    409,
)


def _yuan(fen: int | None) -> str:
    if fen is None:
        return ""
    whole, cents = divmod(fen, 100)
    return f"{whole}" if cents == 0 else f"{whole}.{cents:02d}"


_env.filters["yuan"] = _yuan


def _html(name: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    return _page(_env.get_template(name).render(**context), http_status)


def _page(body: str, http_status: int = 200) -> HTMLResponse:
    # Participants refresh to see progress: never serve a stale count from a browser cache.
    return HTMLResponse(
        body, status_code=http_status, headers={"cache-control": "no-store", **PAGE_HEADERS}
    )


def error_page(code: str, *, status: int | None = None, back: str | None = None) -> HTMLResponse:
    title, what, todo, default_status = _ERRORS.get(code, _DEFAULT_ERROR)
    return _html(
        "fission_error.html", http_status=status or default_status, title=title, what=what, todo=todo,
        code=code, back=back,
    )  # fmt: skip


def _percent(done: int, total: int) -> int:
    return 0 if total <= 0 else min(100, round(100 * done / total))


def _local(ts: datetime, tz: str) -> str:
    return ts.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")


# ── who is asking ─────────────────────────────────────────────────────────────────────────


@dataclass(slots=True)
class PageVisitor:
    """The request as a value: signals from the request itself, and the signed-in person."""

    ip: str
    user_agent: str
    visitor_id: str
    new_visitor: bool
    platform: str
    external_id: str | None
    token_error: str | None
    # How the person signed in: "token" (the brand's link), "sms", "wechat"; None: a visitor.
    method: str | None = None


class _Answer(Exception):
    """A page's preamble answered the request itself (the ``?t=`` reload)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _arrive(request: Request, runtime: Runtime, workspace_id: str) -> PageVisitor:
    """The preamble of every GET page: take a ``?t=`` token (answered by a reload, raised as
    :class:`_Answer`), then who is asking."""
    taken = _take_token(request, runtime, workspace_id)
    if taken is not None:
        raise _Answer(taken)
    return _visitor(request, runtime, workspace_id)


def _visitor(request: Request, runtime: Runtime, workspace_id: str) -> PageVisitor:
    cookie = request.cookies.get(VISITOR_COOKIE, "")
    new = not valid_id(cookie)
    external_id, problem, method = None, None, None
    token = request.cookies.get(IDENTITY_COOKIE)
    if token:
        try:
            external_id = participant_token.verify(
                participant_token.workspace_key(runtime.secret, workspace_id), token
            )
            method = "token"
        except Unauthorized as exc:
            problem = exc.code
    if external_id is None:
        # Signed in on the page (phone code, WeChat): only a session of this workspace counts.
        found = session_identity(runtime.secret, request.cookies.get(SESSION_COOKIE), workspace_id)
        if found is not None:
            (external_id, method), problem = found, None
    ua = request.headers.get("user-agent", "")[:1000]
    return PageVisitor(
        ip=client_ip(request.scope, runtime.settings.trusted_proxies), user_agent=ua,
        visitor_id=new_visitor_id() if new else cookie, new_visitor=new,
        platform=classify_cached(ua).platform, external_id=external_id, token_error=problem,
        method=method,
    )  # fmt: skip


def _finish(response: Response, request: Request, who: PageVisitor) -> Response:
    if who.new_visitor:
        set_visitor_cookie(response, who.visitor_id, secure=request.url.scheme == "https")
    return response


def set_visitor_cookie(response: Response, visitor_id: str, *, secure: bool) -> None:
    """The device cookie of a first visit (shared with the lean path)."""
    response.set_cookie(
        VISITOR_COOKIE, visitor_id, max_age=VISITOR_MAX_AGE, httponly=True, samesite="lax",
        secure=secure,
    )  # fmt: skip


def _take_token(request: Request, runtime: Runtime, workspace_id: str) -> Response | None:
    """``?t=<token>``: check it, keep it in an HttpOnly cookie and reload without it (so the
    address a participant copies never carries their sign-in)."""
    token = request.query_params.get("t")
    if token is None:
        return None
    try:
        participant_token.verify(
            participant_token.workspace_key(runtime.secret, workspace_id), token
        )
    except Unauthorized as exc:
        return error_page(exc.code)
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "t"])
    response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), status_code=303)
    response.set_cookie(
        IDENTITY_COOKIE, token, httponly=True, samesite="lax", secure=request.url.scheme == "https",
        max_age=7 * 24 * 3600,
    )  # fmt: skip
    return response


def _signed_in(who: PageVisitor) -> str:
    if who.external_id is None:
        raise Unauthorized("sign in first", code=who.token_error or "sign_in_required")
    return who.external_id


def _view_event(
    runtime: Runtime, campaign: Campaign, who: PageVisitor, page: str, **extra: Any
) -> None:
    fission_events.emit_now(
        runtime, workspace_id=campaign.workspace_id, event="page_view", event_id=new_id("evt"),
        campaign_id=campaign.id, user_id=who.external_id, visitor_id=who.visitor_id,
        platform=who.platform, properties={"page": page}, **extra,
    )  # fmt: skip


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _guarded(request: Request, work: Callable[[Runtime], Response]) -> Response:
    """Run a page; a refusal becomes its Chinese page (the transaction already rolled back)."""
    try:
        return work(_runtime(request))
    except _Answer as answer:
        return answer.response
    except DomainError as exc:
        return error_page(exc.code)


def _campaign(session: Session, campaign_id: str) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("no such campaign", code="campaign_not_found")
    return campaign


def _base(session: Session, runtime: Runtime, workspace_id: str) -> str:
    return public_base_url(session, workspace_id, runtime.settings.base_url)


# ── the campaign entry, the invite landing and my page ────────────────────────────────────


def campaign_context(session: Session, runtime: Runtime, campaign: Campaign) -> dict[str, Any]:
    config = service.config_of(campaign)
    return {
        # How a visitor signs in here (participants/): read with the campaign, so the lean
        # path's cached pages follow a change within its TTL.
        "sign_in": sign_in.offer(session, campaign.workspace_id, campaign.id),
        "campaign": campaign, "config": config, "tiers": getattr(config, "tiers", []),
        "invitee_reward": getattr(config, "invitee_reward", None),
        "status_zh": _STATUS_ZH.get(campaign.status, campaign.status),
        "ends": _local(campaign.ends_at, runtime.settings.default_timezone) if campaign.ends_at else None,
    }  # fmt: skip


def _me(session: Session, campaign: Campaign, external_id: str | None) -> Participant | None:
    if external_id is None:
        return None
    contact = by_external_id(session, campaign.workspace_id, external_id)
    return repository.participant_by_contact(session, campaign.id, contact.id) if contact else None


def entry_html(
    context: dict[str, Any], who: PageVisitor, me: Participant | None, channel: str | None
) -> str:
    """The campaign entry page. One function for this route and the lean path
    (campaigns/page_fast_path.py), so both render the same bytes from the same state."""
    campaign = context["campaign"]
    return _env.get_template("fission_entry.html").render(
        title=campaign.name, me=me, who=who, channel=channel, referrer_code=None, inviter=None,
        here=f"/p/{campaign.id}" + (f"?{urlencode({'ch': channel})}" if channel else ""),
        **context,
    )  # fmt: skip


def invite_html(
    context: dict[str, Any], participant: Participant, inviter: str, progress: dict[str, object],
    who: PageVisitor, me: Participant | None, *, is_owner: bool,
) -> str:  # fmt: skip
    """The invite landing (shared with the lean path, as :func:`entry_html`)."""
    campaign = context["campaign"]
    counted = int(progress["counted"])  # type: ignore[call-overload]
    nxt = progress["next"]
    return _env.get_template("fission_invite.html").render(
        title=campaign.name, inviter=inviter, counted=counted, next_tier=nxt,
        percent=_percent(counted, getattr(nxt, "invites", 0) or 0),
        invite_code=participant.invite_code, status=campaign.status, me=me, who=who,
        is_owner=is_owner, channel=participant.channel,
        here=f"/p/{campaign.id}/{participant.invite_code}", **context,
    )  # fmt: skip


# Who the lean path renders for: a visitor with no sign-in. The templates read nothing of
# ``who`` but ``external_id`` (tests/campaigns/test_page_fast_path.py holds them to it).
ANONYMOUS = PageVisitor(
    ip="",
    user_agent="",
    visitor_id="",
    new_visitor=False,
    platform="",
    external_id=None,
    token_error=None,
)


# GET pages read through read-only sessions: on SQLite they never wait for the writer lock
# (decision 0013); a page that writes after all upgrades safely.
@router.get("/p/{campaign_id}", response_class=HTMLResponse)
def entry_page(campaign_id: str, request: Request) -> Response:
    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.read_sessions) as session:
            campaign = _campaign(session, campaign_id)
            who = _arrive(request, runtime, campaign.workspace_id)
            channel = (request.query_params.get("ch") or "")[:64] or None
            me = _me(session, campaign, who.external_id)
            _view_event(runtime, campaign, who, "entry", channel=channel)
            page = _page(entry_html(campaign_context(session, runtime, campaign), who, me, channel))
        return _finish(page, request, who)

    return _guarded(request, work)


@router.get("/p/{campaign_id}/me", response_class=HTMLResponse)
def my_page(campaign_id: str, request: Request) -> Response:
    """自助查询: my invite link and poster, my progress, and each reward's state."""

    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.read_sessions) as session:
            campaign = _campaign(session, campaign_id)
            who = _arrive(request, runtime, campaign.workspace_id)
            external_id = _signed_in(who)
            me = _me(session, campaign, external_id)
            if me is None:
                return _finish(RedirectResponse(f"/p/{campaign.id}", status_code=303), request, who)
            progress = referrals.progress(session, campaign, me)
            counted = int(progress["counted"])  # type: ignore[call-overload]
            nxt = progress["next"]
            entries = ledger.list_entries(
                session, campaign.workspace_id, campaign_id=campaign.id, contact_id=me.contact_id,
                limit=100,
            )  # fmt: skip
            base = _base(session, runtime, campaign.workspace_id)
            _view_event(runtime, campaign, who, "me", channel=me.channel, participant_id=me.id)
            page = _html(
                "fission_me.html", title=f"我的 · {campaign.name}", me=me, counted=counted,
                who=who, csrf=form_token(runtime.secret, who.visitor_id),
                next_tier=nxt, percent=_percent(counted, getattr(nxt, "invites", 0) or 0),
                invite_url=f"{base}/p/{campaign.id}/{me.invite_code}",
                rewards=[{"name": e.name, "kind": e.kind, "amount": e.amount, "status": e.status,
                          "status_zh": _REWARD_STATUS_ZH.get(e.status, e.status),
                          "reason": e.reversal_reason} for e in entries[:100]],
                **campaign_context(session, runtime, campaign),
            )  # fmt: skip
        return _finish(page, request, who)

    return _guarded(request, work)


@router.get("/p/{campaign_id}/me/poster", response_class=HTMLResponse)
def my_poster_page(campaign_id: str, request: Request) -> Response:
    """The share kit: my poster to long-press and save (opening it is a 分享 action)."""

    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.read_sessions) as session:
            campaign = _campaign(session, campaign_id)
            who = _visitor(request, runtime, campaign.workspace_id)
            me = _me(session, campaign, _signed_in(who))
            if me is None:
                return RedirectResponse(f"/p/{campaign.id}", status_code=303)
            fission_events.emit_now(
                runtime, workspace_id=campaign.workspace_id, event="share", event_id=new_id("evt"),
                campaign_id=campaign.id, user_id=who.external_id, visitor_id=who.visitor_id,
                channel=me.channel, participant_id=me.id, platform=who.platform,
                properties={"via": "poster"},
            )  # fmt: skip
            base = _base(session, runtime, campaign.workspace_id)
            page = _html(
                "fission_poster.html", title=f"我的海报 · {campaign.name}", campaign=campaign,
                invite_url=f"{base}/p/{campaign.id}/{me.invite_code}",
            )  # fmt: skip
        return _finish(page, request, who)

    return _guarded(request, work)


@router.get("/p/{campaign_id}/me/poster.png")
def my_poster_png(campaign_id: str, request: Request) -> Response:
    from liebian.campaigns.design import render_for

    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.read_sessions) as session:
            campaign = _campaign(session, campaign_id)
            who = _visitor(request, runtime, campaign.workspace_id)
            me = _me(session, campaign, _signed_in(who))
            if me is None:
                raise NotFound("not a participant", code="sign_in_required")
            contact = session.get(Contact, me.contact_id)
            url = (
                f"{_base(session, runtime, campaign.workspace_id)}/p/{campaign.id}/{me.invite_code}"
            )
            nickname = runtime.cipher.decrypt(contact.nickname_enc) if contact else None
            # The operator's poster design (campaigns/design.py), as the console previews it.
            png = render_for(
                campaign, runtime.settings.data_dir, url=url, nickname=nickname,
                font_path=runtime.settings.poster_font or None,
            )  # fmt: skip
        return Response(
            png, media_type="image/png", headers={"cache-control": "private, max-age=300"}
        )

    return _guarded(request, work)


@router.get("/p/{campaign_id}/{invite_code}", response_class=HTMLResponse)
def invite_page(campaign_id: str, invite_code: str, request: Request) -> Response:
    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.read_sessions) as session:
            campaign = session.get(Campaign, campaign_id)
            participant = (
                repository.participant_by_code(session, campaign_id, invite_code)
                if campaign
                else None
            )
            if campaign is None or participant is None:
                raise NotFound("this invite link is not valid", code="invite_not_found")
            who = _arrive(request, runtime, campaign.workspace_id)
            owner = session.get(Contact, participant.contact_id)
            inviter = contacts.public_nickname(runtime.cipher, owner)
            is_owner = owner is not None and who.external_id == owner.external_id
            progress = referrals.progress(session, campaign, participant)
            me = _me(session, campaign, who.external_id)
            common = {"channel": participant.channel, "participant_id": participant.id}
            _view_event(runtime, campaign, who, "invite", **common)
            if not is_owner:
                fission_events.emit_now(
                    runtime, workspace_id=campaign.workspace_id, event="invite_click",
                    event_id=new_id("evt"), campaign_id=campaign.id, user_id=who.external_id,
                    visitor_id=who.visitor_id, platform=who.platform,
                    referrer=owner.external_id if owner else None, **common,
                )  # fmt: skip
            page = _page(
                invite_html(
                    campaign_context(session, runtime, campaign), participant, inviter,
                    progress, who, me, is_owner=is_owner,
                )
            )  # fmt: skip
        return _finish(page, request, who)

    return _guarded(request, work)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: str(v)[:128] for k, v in form.items() if isinstance(v, str)}


@router.post("/p/{campaign_id}/join")
async def join_action(campaign_id: str, request: Request) -> Response:
    """参与活动 from a page: the signed-in person joins (through the invite they came by)
    and lands on their own page with their invite link."""
    form = await _form(request)

    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.sessions) as session:
            campaign = _campaign(session, campaign_id)
            who = _visitor(request, runtime, campaign.workspace_id)
            external_id = _signed_in(who)
            code = form.get("referrer_code") or None
            if code and repository.participant_by_code(session, campaign.id, code) is None:
                raise NotFound("unknown invite", code="invite_not_found")
            referrals.join(
                session, runtime.cipher, campaign.workspace_id, campaign.id,
                referrals.JoinInput(
                    external_id=external_id, referrer_code=code, visitor_id=who.visitor_id,
                    device_id=who.visitor_id, ip=who.ip or None, user_agent=who.user_agent or None,
                    channel=(form.get("ch") or None),
                ),
            )  # fmt: skip
        return _finish(RedirectResponse(f"/p/{campaign_id}/me", status_code=303), request, who)

    return await _in_thread(request, work)


async def _in_thread(request: Request, work: Callable[[Runtime], Response]) -> Response:
    from fastapi.concurrency import run_in_threadpool

    return await run_in_threadpool(_guarded, request, work)


# ── group buy ─────────────────────────────────────────────────────────────────────────────


def _activity_page(
    request: Request, model: type[Group | Assist], row_id: str, missing: str, page: str,
    render: Callable[[Session, Runtime, Any, Campaign, PageVisitor], str],
) -> Response:  # fmt: skip
    """The /g and /a pages' one preamble: the group or assist (or its Chinese 404), its
    campaign, a ``?t=`` token taken, who is asking, the page_view event; ``render`` writes
    the page."""

    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.read_sessions) as session:
            row = session.get(Group, row_id) if model is Group else session.get(Assist, row_id)
            if row is None:
                raise NotFound("this activity does not exist", code=missing)
            campaign = _campaign(session, row.campaign_id)
            who = _arrive(request, runtime, campaign.workspace_id)
            fission_events.emit_now(
                runtime, workspace_id=campaign.workspace_id, event="page_view", event_id=new_id("evt"),
                campaign_id=campaign.id, user_id=who.external_id, visitor_id=who.visitor_id,
                platform=who.platform, properties={"page": page, f"{page}_id": row.id},
            )  # fmt: skip
            body = _page(render(session, runtime, row, campaign, who))
        return _finish(body, request, who)

    return _guarded(request, work)


def group_html(
    session: Session, runtime: Runtime, group: Group, campaign: Campaign, who: PageVisitor
) -> str:
    config = service.config_of(campaign)
    assert isinstance(config, GroupBuyConfig)
    members = repository.group_members(session, group.id)
    people = repository.by_ids(session, Contact, {m.contact_id for m in members})
    mine = who.external_id is not None and any(
        people.get(m.contact_id) is not None and people[m.contact_id].external_id == who.external_id
        for m in members
    )
    return _env.get_template("fission_group.html").render(
        title=f"{config.product_name} · {group.size}人团", group=group, campaign=campaign,
        product_name=config.product_name, price=_yuan(group.price),
        original_price=_yuan(config.original_price), who=who, mine=mine,
        status_zh=_STATUS_ZH.get(group.status, group.status),
        percent=_percent(group.member_count, group.size),
        deadline=_local(group.expires_at, runtime.settings.default_timezone),
        members=[{"name": contacts.public_nickname(runtime.cipher, people.get(m.contact_id)),
                  "is_leader": m.is_leader} for m in members],
        sign_in=sign_in.offer(session, campaign.workspace_id, campaign.id), here=f"/g/{group.id}",
    )  # fmt: skip


@router.get("/g/{group_id}", response_class=HTMLResponse)
def group_page(group_id: str, request: Request) -> Response:
    return _activity_page(request, Group, group_id, "group_not_found", "group", group_html)


async def _workspace_of(
    runtime: Runtime, model: type[Group | Assist], row_id: str, code: str
) -> str:
    """The workspace of a group or assist, read in a worker thread (never on the event loop)."""
    from fastapi.concurrency import run_in_threadpool

    def read() -> str:
        with session_scope(runtime.sessions) as session:
            row = session.get(Group, row_id) if model is Group else session.get(Assist, row_id)
            if row is None:
                raise NotFound("no such activity", code=code)
            return row.workspace_id

    return await run_in_threadpool(read)


def _page_principal(workspace_id: str) -> Principal:
    # The page acts inside the campaign's workspace for the signed-in person; the person's
    # rights are the campaign's rules, checked by the domain code.
    return Principal(workspace_id=workspace_id, role=Role.operator)


@router.post("/g/{group_id}/join")
async def group_join_action(group_id: str, request: Request) -> Response:
    runtime = _runtime(request)
    try:
        workspace_id = await _workspace_of(runtime, Group, group_id, "group_not_found")
        who = _visitor(request, runtime, workspace_id)
        external_id = _signed_in(who)
        await writes.run(
            runtime, writes.join_work(runtime, _page_principal(workspace_id), group_id, external_id)
        )
    except DomainError as exc:
        return error_page(exc.code, back=f"/g/{group_id}")
    return _finish(RedirectResponse(f"/g/{group_id}", status_code=303), request, who)


@router.post("/p/{campaign_id}/groups")
async def group_open_action(campaign_id: str, request: Request) -> Response:
    """开团: the signed-in person opens their own group and lands on its page."""

    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.sessions) as session:
            campaign = _campaign(session, campaign_id)
            who = _visitor(request, runtime, campaign.workspace_id)
            group = groups.open_group(
                session, runtime.cipher, campaign.workspace_id, campaign.id, _signed_in(who)
            )
            gid = group.id
        return _finish(RedirectResponse(f"/g/{gid}", status_code=303), request, who)

    return await _in_thread(request, work)


# ── assist / bargain ──────────────────────────────────────────────────────────────────────


def assist_html(
    session: Session, runtime: Runtime, assist: Assist, campaign: Campaign, who: PageVisitor
) -> str:
    config = service.config_of(campaign)
    assert isinstance(config, AssistConfig)
    helps = repository.assist_helps(session, assist.id)
    people = repository.by_ids(
        session, Contact, {h.helper_contact_id for h in helps} | {assist.owner_contact_id}
    )
    owner = people.get(assist.owner_contact_id)
    is_owner = owner is not None and who.external_id == owner.external_id
    helped = who.external_id is not None and any(
        people.get(h.helper_contact_id) is not None
        and people[h.helper_contact_id].external_id == who.external_id
        for h in helps
    )
    return _env.get_template("fission_assist.html").render(
        title=campaign.name, campaign=campaign, assist=assist,
        owner=contacts.public_nickname(runtime.cipher, owner), who=who,
        is_owner=is_owner, helped=helped, config=config,
        price_now=_yuan(assist.price_now), status_zh=_STATUS_ZH.get(assist.status, assist.status),
        percent=_percent(assist.helpers_count, assist.helpers_required),
        helpers=[{"name": contacts.public_nickname(runtime.cipher, people.get(h.helper_contact_id)),
                  "cut": _yuan(h.cut) if h.cut else ""} for h in helps],
        mini_program=campaign.template is not None and _is_mini_program(campaign.template),
        sign_in=sign_in.offer(session, campaign.workspace_id, campaign.id), here=f"/a/{assist.id}",
    )  # fmt: skip


@router.get("/a/{assist_id}", response_class=HTMLResponse)
def assist_page(assist_id: str, request: Request) -> Response:
    return _activity_page(request, Assist, assist_id, "assist_not_found", "assist", assist_html)


@router.post("/a/{assist_id}/help")
async def help_action(assist_id: str, request: Request) -> Response:
    runtime = _runtime(request)
    try:
        workspace_id = await _workspace_of(runtime, Assist, assist_id, "assist_not_found")
        who = _visitor(request, runtime, workspace_id)
        external_id = _signed_in(who)
        await writes.run(
            runtime,
            writes.help_work(
                runtime, _page_principal(workspace_id), assist_id, external_id,
                visitor_id=who.visitor_id, ip=who.ip or None, user_agent=who.user_agent or None,
            ),
        )  # fmt: skip
    except DomainError as exc:
        return error_page(exc.code, back=f"/a/{assist_id}")
    return _finish(RedirectResponse(f"/a/{assist_id}", status_code=303), request, who)


@router.post("/p/{campaign_id}/assists")
async def assist_start_action(campaign_id: str, request: Request) -> Response:
    """发起助力: the signed-in person starts (or gets back) their own activity."""

    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.sessions) as session:
            campaign = _campaign(session, campaign_id)
            who = _visitor(request, runtime, campaign.workspace_id)
            assist = assists.start(
                session, runtime.cipher, campaign.workspace_id, campaign.id, _signed_in(who),
                visitor_id=who.visitor_id, ip=who.ip or None, user_agent=who.user_agent or None,
            )  # fmt: skip
            aid = assist.id
        return _finish(RedirectResponse(f"/a/{aid}", status_code=303), request, who)

    return await _in_thread(request, work)


def _is_mini_program(template_key: str) -> bool:
    from liebian.campaigns.templates import get_template

    try:
        return get_template(template_key).channel == "mini_program"
    except Exception:  # a template removed since the campaign was made
        return False
