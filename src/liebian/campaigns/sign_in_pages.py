"""Signing in on a campaign page (H5), for a person the brand's server did not sign a link
for: phone + one-time SMS code, or WeChat web authorization (participants/, decision 0030).

    GET  /p/{campaign}/signin?next=…           the methods the campaign offers
    POST /p/{campaign}/signin/sms               phone → a code by SMS → the code form
    POST /p/{campaign}/signin/sms/verify        phone + code → signed in, back to ``next``
    GET  /p/{campaign}/signin/wechat?next=…     → WeChat's authorize page (state in a cookie)
    GET  /p/{campaign}/signin/wechat/callback   code + state → signed in, back to ``next``
    POST /p/{campaign}/signout

Signed in means a session cookie (``lb_ps``: signed, HttpOnly, SameSite=Lax, 7 days) naming
the contact's external id in this workspace; the pages read it beside the brand's token
(campaigns/pages.py ``_visitor``). ``next`` is only ever a participant page path on this
site (participants/session.safe_next). The forms carry a token tied to the device cookie,
so a form posted from another site is refused. IP, user agent and device come from the
request. Every refusal is a Chinese page (campaigns/pages.py ``_ERRORS``).
"""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from liebian.app.deps import participant_rate_limit
from liebian.app.runtime import Runtime
from liebian.campaigns import pages
from liebian.campaigns.models import Campaign
from liebian.kit.crypto import mask_phone
from liebian.kit.db import session_scope
from liebian.kit.errors import DomainError, Forbidden, Invalid
from liebian.participants import service as sign_in
from liebian.participants.session import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    STATE_COOKIE,
    STATE_SECONDS,
    form_token,
    form_token_ok,
    safe_next,
    session_value,
    sign,
    unsign,
)
from liebian.participants.wechat import WeChatError, authorize_url
from liebian.participants.wechat import sign_in as wechat_sign_in
from liebian.redirect.clicks import VISITOR_COOKIE

router = APIRouter(include_in_schema=False, dependencies=[Depends(participant_rate_limit)])
_HTTP_KEY = "participants.wechat_http"


def _next(request: Request | None, form: dict[str, str] | None, campaign_id: str) -> str:
    raw = (form or {}).get("next") if form is not None else None
    if raw is None and request is not None:
        raw = request.query_params.get("next")
    return safe_next(raw, f"/p/{campaign_id}")


def _sign_in_url(campaign_id: str, nxt: str) -> str:
    return f"/p/{campaign_id}/signin?{urlencode({'next': nxt})}"


def _form_page(
    request: Request, runtime: Runtime, session: Session, campaign: Campaign,
    who: pages.PageVisitor, nxt: str, *, step: str, phone: str = "", problem: str | None = None,
    tries_left: int = 0, status: int = 200,
) -> Response:  # fmt: skip
    offer = sign_in.offer(session, campaign.workspace_id, campaign.id)
    title, what, todo, _ = (
        pages._ERRORS.get(problem, pages._DEFAULT_ERROR) if problem else ("", "", "", 0)
    )
    page = pages._html(
        "fission_sign_in.html", http_status=status, title=f"登录 · {campaign.name}",
        campaign=campaign, offer=offer, step=step, next=nxt, phone=phone,
        phone_masked=mask_phone(phone) if phone else "", csrf=form_token(runtime.secret, who.visitor_id),
        in_wechat=who.platform == "wechat", minutes=sign_in.CODE_MINUTES, problem=problem,
        problem_title=title, problem_what=what, problem_todo=todo, tries_left=tries_left,
        signed_in=who.external_id is not None,
    )  # fmt: skip
    return pages._finish(page, request, who)


def _signed_in_response(
    request: Request, runtime: Runtime, workspace_id: str, method: str, external_id: str, nxt: str
) -> Response:
    response = RedirectResponse(nxt, status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE, session_value(runtime.secret, workspace_id, method, external_id),
        max_age=SESSION_SECONDS, httponly=True, samesite="lax", secure=secure,
    )  # fmt: skip
    # A brand token of someone else on this phone no longer speaks for it.
    response.delete_cookie(pages.IDENTITY_COOKIE, httponly=True, samesite="lax", secure=secure)
    return response


def _check_form(runtime: Runtime, request: Request, form: dict[str, str]) -> None:
    if not form_token_ok(runtime.secret, request.cookies.get(VISITOR_COOKIE), form.get("csrf")):
        raise Forbidden(
            "the sign-in form is not from this site or has expired", code="form_expired"
        )


@router.get("/p/{campaign_id}/signin", response_class=HTMLResponse)
def sign_in_page(campaign_id: str, request: Request) -> Response:
    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.read_sessions) as session:
            campaign = pages._campaign(session, campaign_id)
            who = pages._visitor(request, runtime, campaign.workspace_id)
            return _form_page(request, runtime, session, campaign, who,
                              _next(request, None, campaign_id), step="choose")  # fmt: skip

    return pages._guarded(request, work)


@router.post("/p/{campaign_id}/signin/sms")
async def sms_code_action(campaign_id: str, request: Request) -> Response:
    """Send a code to the phone and show the form to type it in."""
    form = await pages._form(request)

    def work(runtime: Runtime) -> Response:
        nxt = _next(None, form, campaign_id)
        back = _sign_in_url(campaign_id, nxt)
        try:
            with session_scope(runtime.sessions) as session:
                campaign = pages._campaign(session, campaign_id)
                workspace_id = campaign.workspace_id
                who = pages._visitor(request, runtime, workspace_id)
                _check_form(runtime, request, form)
                pending = sign_in.request_code(
                    session, runtime.cipher, runtime.secret, workspace_id, campaign_id,
                    form.get("phone", ""), who.ip,
                )  # fmt: skip
                phone = sign_in.china_mobile(form.get("phone", ""))
            # Committed: the code exists before the message that carries it is sent.
            with session_scope(runtime.sessions) as session:
                sent = sign_in.deliver(session, runtime, workspace_id, pending)
        except DomainError as exc:
            return pages.error_page(exc.code, back=back)
        if not sent:
            return pages.error_page("sms_send_failed", back=back)
        with session_scope(runtime.read_sessions) as session:
            campaign = pages._campaign(session, campaign_id)
            return _form_page(
                request, runtime, session, campaign, who, nxt, step="code", phone=phone
            )

    return await pages._in_thread(request, work)


@router.post("/p/{campaign_id}/signin/sms/verify")
async def sms_verify_action(campaign_id: str, request: Request) -> Response:
    form = await pages._form(request)

    def work(runtime: Runtime) -> Response:
        nxt = _next(None, form, campaign_id)
        try:
            with session_scope(runtime.sessions) as session:
                campaign = pages._campaign(session, campaign_id)
                workspace_id = campaign.workspace_id
                who = pages._visitor(request, runtime, workspace_id)
                _check_form(runtime, request, form)
                if "sms" not in sign_in.offer(session, workspace_id, campaign_id).methods:
                    raise Forbidden("SMS sign-in is off", code="sign_in_method_off")
                phone = sign_in.china_mobile(form.get("phone", ""))
                checked = sign_in.check_code(
                    session, runtime.cipher, runtime.secret, workspace_id, phone,
                    form.get("code", ""),
                )  # fmt: skip
                contact = checked.contact
                if contact is not None:
                    sign_in.remember_device(session, workspace_id, contact, who.visitor_id)
                    external_id = contact.external_id
                # The counted try is committed with a wrong code too.
        except DomainError as exc:
            return pages.error_page(exc.code, back=_sign_in_url(campaign_id, nxt))
        if checked.problem in ("sms_code_wrong", "sms_code_format"):
            with session_scope(runtime.read_sessions) as session:
                campaign = pages._campaign(session, campaign_id)
                return _form_page(
                    request, runtime, session, campaign, who, nxt, step="code", phone=phone,
                    problem=checked.problem, tries_left=checked.tries_left, status=422,
                )  # fmt: skip
        if checked.problem is not None:
            return pages.error_page(checked.problem, back=_sign_in_url(campaign_id, nxt))
        response = _signed_in_response(request, runtime, workspace_id, "sms", external_id, nxt)
        return pages._finish(response, request, who)

    return await pages._in_thread(request, work)


@router.get("/p/{campaign_id}/signin/wechat")
def wechat_start(campaign_id: str, request: Request) -> Response:
    """To WeChat's authorize page; the state (a random value, where to return) rides in a
    signed cookie of its own and must come back unchanged."""

    def work(runtime: Runtime) -> Response:
        with session_scope(runtime.read_sessions) as session:
            campaign = pages._campaign(session, campaign_id)
            if "wechat" not in sign_in.offer(session, campaign.workspace_id, campaign_id).methods:
                raise Forbidden("WeChat sign-in is off", code="sign_in_method_off")
            app_id, _secret, scope = sign_in.wechat_credentials(
                session, runtime.cipher, campaign.workspace_id
            )
        nxt = _next(request, None, campaign_id)
        state = secrets.token_urlsafe(16)
        callback = str(request.url_for("wechat_callback", campaign_id=campaign_id))
        response = RedirectResponse(
            authorize_url(runtime.settings.wechat_open_base, app_id, callback, scope, state),
            status_code=302,
        )
        response.set_cookie(
            STATE_COOKIE, sign(runtime.secret, "wechat-state", [state, campaign_id, nxt], ttl=STATE_SECONDS),
            max_age=STATE_SECONDS, httponly=True, samesite="lax",
            secure=request.url.scheme == "https", path=f"/p/{campaign_id}/signin/wechat",
        )  # fmt: skip
        return response

    return pages._guarded(request, work)


def _wechat_transport(runtime: Runtime) -> httpx.BaseTransport:
    transport: httpx.BaseTransport | None = runtime.extras.get(_HTTP_KEY)
    if transport is None:
        transport = runtime.extras.setdefault(_HTTP_KEY, httpx.HTTPTransport(retries=0))
    return transport


@router.get("/p/{campaign_id}/signin/wechat/callback", name="wechat_callback")
def wechat_callback(campaign_id: str, request: Request) -> Response:
    def work(runtime: Runtime) -> Response:
        fields = unsign(runtime.secret, "wechat-state", request.cookies.get(STATE_COOKIE), 3)
        state = request.query_params.get("state", "")
        if (
            fields is None
            or fields[1] != campaign_id
            or not secrets.compare_digest(fields[0].encode(), state.encode())
        ):
            raise Forbidden("the state does not match this browser's", code="wechat_state_invalid")
        nxt = safe_next(fields[2], f"/p/{campaign_id}")
        code = request.query_params.get("code")
        if not code:
            raise Invalid("the person declined", code="wechat_denied")
        with session_scope(runtime.read_sessions) as session:
            campaign = pages._campaign(session, campaign_id)
            workspace_id = campaign.workspace_id
            app_id, secret, scope = sign_in.wechat_credentials(
                session, runtime.cipher, workspace_id
            )
        try:
            user = wechat_sign_in(
                _wechat_transport(runtime), runtime.settings.wechat_api_base, app_id, secret,
                code[:512], scope, timeout=runtime.settings.wechat_timeout,
            )  # fmt: skip
        except WeChatError as exc:
            raise Forbidden("WeChat did not confirm who this is", code=exc.code) from exc
        with session_scope(runtime.sessions) as session:
            who = pages._visitor(request, runtime, workspace_id)
            contact = sign_in.contact_for_wechat(session, runtime.cipher, workspace_id, user)
            sign_in.remember_device(session, workspace_id, contact, who.visitor_id)
            external_id = contact.external_id
        response = _signed_in_response(request, runtime, workspace_id, "wechat", external_id, nxt)
        response.delete_cookie(STATE_COOKIE, path=f"/p/{campaign_id}/signin/wechat")
        return pages._finish(response, request, who)

    try:
        return work(pages._runtime(request))
    except DomainError as exc:  # every refusal: its Chinese page, and a way back to sign in
        return pages.error_page(exc.code, back=f"/p/{campaign_id}/signin")


@router.post("/p/{campaign_id}/signout")
async def sign_out_action(campaign_id: str, request: Request) -> Response:
    form = await pages._form(request)

    def work(runtime: Runtime) -> Response:
        _check_form(runtime, request, form)
        response = RedirectResponse(_next(None, form, campaign_id), status_code=303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax")
        return response

    return await pages._in_thread(request, work)
