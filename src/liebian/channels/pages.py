"""The unsubscribe page a message links to: ``/h5/unsubscribe/<signed token>``.

GET shows what will stop and a button (mail scanners and link previews follow GETs, so a GET
changes nothing); POST records the opt-out for that contact and channel. Chinese, no script,
the participant pages' security headers; a bad link is a Chinese page, never JSON."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from liebian.app.deps import get_runtime, participant_rate_limit
from liebian.channels import config
from liebian.channels.models import Channel
from liebian.channels.unsubscribe import read_token
from liebian.kit.page_security import PAGE_HEADERS

router = APIRouter(include_in_schema=False, dependencies=[Depends(participant_rate_limit)])

_STYLE = (
    "body{font-family:-apple-system,'PingFang SC','Noto Sans CJK SC',sans-serif;margin:0;"
    "background:#f6f7f9;color:#222}main{max-width:420px;margin:12vh auto;padding:28px 24px;"
    "background:#fff;border-radius:12px;text-align:center}h1{font-size:20px}"
    "p{color:#555;line-height:1.6}button{font-size:16px;padding:10px 28px;border:0;"
    "border-radius:8px;background:#e5484d;color:#fff}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _bad_link() -> HTMLResponse:
    return _page("链接无效", "<p>这个退订链接无效或已损坏，请使用消息中的完整链接。</p>", 404)


@router.get("/h5/unsubscribe/{token}")
def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    runtime = get_runtime(request)
    parts = read_token(runtime.secret, token)
    if parts is None:
        return _bad_link()
    workspace_id, _contact_id, channel_id = parts
    with runtime.read_sessions() as session:
        channel = session.get(Channel, channel_id)
        if channel is None or channel.workspace_id != workspace_id:
            return _bad_link()
        name = channel.name
    return _page(
        "退订消息",
        f"<p>确认后，您将不再通过「{escape(name)}」收到我们的营销消息。"
        "交易类通知（如订单、验证码）不受影响。</p>"
        f'<form method="post" action="/h5/unsubscribe/{escape(token)}">'
        '<button type="submit">确认退订</button></form>',
    )


@router.post("/h5/unsubscribe/{token}")
def unsubscribe(token: str, request: Request) -> HTMLResponse:
    runtime = get_runtime(request)
    parts = read_token(runtime.secret, token)
    if parts is None:
        return _bad_link()
    workspace_id, contact_id, channel_id = parts
    with runtime.sessions() as session:
        channel = session.get(Channel, channel_id)
        if channel is None or channel.workspace_id != workspace_id:
            return _bad_link()
        config.opt_out(session, workspace_id, contact_id, channel_id, via="link")
        session.commit()
    return _page("已退订", f"<p>您已退订「{escape(channel.name)}」的营销消息。</p>")
