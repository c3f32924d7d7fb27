"""The participant-facing answer for a live code's slug, called by the redirect hot path.

Unlike a link, a scan must write (claim a place on a target), so it goes to the database; the
claim runs in a worker thread so the event loop keeps serving redirects meanwhile.

Answers:
- URL target: 302 to it.
- Image target: a small mobile page with the group QR and "长按识别二维码加入群聊"; the image
  comes from ``/api/v1/live-codes/{id}/targets/{tid}/image?sig=…`` (cacheable, signed so no
  key is needed, and the page stays a few hundred bytes on a weak network).
- No usable target: HTTP 200 with a "群已满，请联系客服" page. Not 410: the live code is not
  gone, it is waiting for the operator to add a group, and the same URL will work again;
  not 5xx: nothing is broken, and monitors (ours and WeChat's) should not read it as an
  outage of the domain. ``X-Liebian-Live-Code: exhausted`` tells machines apart.
- Unknown live code (deleted since the slug was cached): 404 page.

Every answer carries ``Cache-Control: no-store``: the next scan may get another target.

Scan recording: when the redirect wires ``runtime.extras["record_click"]``, it is called once
per answered human scan, before the response is sent (so a click the visitor saw is already in
the spool), as ``record_click(workspace_id=…, link_id=<live code id>, channel=…,
visitor=<Visitor>, is_qr=<bool>, properties={"kind": "live_code", "target_id": …})``.
Bots and HEAD requests see the current target without taking a place and are not recorded
here (the redirect may still record bot traffic itself).
"""

from __future__ import annotations

import hashlib
import hmac
import html
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import anyio.to_thread

from liebian.kit.db import session_scope
from liebian.kit.page_security import PAGE_HEADERS_RAW
from liebian.kit.visitor import Visitor, visitor_cookie
from liebian.links.live_codes import service
from liebian.links.qr import has_qr_flag

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Runtime(Protocol):
    # What this module needs of ``liebian.app.runtime.Runtime`` (kept structural so the hot
    # path does not import the app layer).
    sessions: Any
    secret: bytes
    extras: dict[str, Any]


async def serve_live_code(
    runtime: _Runtime,
    live_code_id: str,
    visitor: Visitor,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    method = scope.get("method", "GET")
    is_qr = has_qr_flag(scope.get("query_string", b""))
    # Link-preview fetchers (WeChat, QQ…) and HEAD probes must not use up a group's places.
    count = method != "HEAD" and not visitor.is_bot
    result = await anyio.to_thread.run_sync(
        _scan, runtime, live_code_id, count, _holders(runtime.secret, visitor)
    )
    head_only = method == "HEAD"

    if result is None:
        await _page(send, 404, _not_found_page(), head_only)
        return
    if (result.counted or result.rescan) and result.target is not None:
        record = runtime.extras.get("record_click")
        if record is not None:
            record(
                workspace_id=result.live_code.workspace_id,
                link_id=result.live_code.id,
                channel=result.live_code.channel,
                visitor=visitor,
                is_qr=is_qr,
                properties={"kind": "live_code", "target_id": result.target.id},
            )
    target = result.target
    # A phone without the visitor cookie gets it, so its next scan keeps the same place.
    cookie = (
        [(b"set-cookie", visitor_cookie(visitor.visitor_id, secure=scope.get("scheme") == "https"))]
        if visitor.new_visitor and not visitor.is_bot
        else []
    )
    if target is None:
        await _page(
            send, 200, _full_page(result.live_code.name), head_only, exhausted=True, extra=cookie
        )
    elif target.url is not None:
        await _redirect(send, target.url, cookie)
    else:
        sig = service.image_signature(runtime.secret, target.id)
        src = f"/api/v1/live-codes/{result.live_code.id}/targets/{target.id}/image?sig={sig}"
        await _page(
            send,
            200,
            _image_page(result.live_code.name, target.label, src),
            head_only,
            extra=cookie,
        )


def _holders(secret: bytes, visitor: Visitor) -> tuple[str, ...]:
    """Who keeps a place, the one a new place is recorded under first: the visitor id when
    the phone sent its cookie, and a keyed hash of IP and user agent, so a cookie-less
    re-scan from the same phone, and its first scan with the cookie it was given, find the
    place again (two identical phones behind one NAT share a place: a group loses one seat
    at most)."""
    digest = hmac.new(
        secret, f"seat|{visitor.ip}|{visitor.user_agent}".encode(), hashlib.sha256
    ).hexdigest()
    anonymous = "anon:" + digest[:40]
    return (anonymous,) if visitor.new_visitor else (visitor.visitor_id, anonymous)


def _scan(
    runtime: _Runtime, live_code_id: str, count: bool, holders: tuple[str, ...]
) -> service.ScanResult | None:
    with session_scope(runtime.sessions) as session:
        return service.scan(session, live_code_id, count=count, holders=holders)


_HEADERS = [(b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer")]
_PAGE_HEADERS = [h for h in PAGE_HEADERS_RAW if h[0] != b"referrer-policy"]


async def _redirect(
    send: Send, location: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [
                (b"location", location.encode("utf-8")),
                (b"content-length", b"0"),
                *_HEADERS,
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _page(
    send: Send,
    status: int,
    body: str,
    head_only: bool,
    *,
    exhausted: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    data = body.encode("utf-8")
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(data)).encode()),
        *_HEADERS,
        *_PAGE_HEADERS,
    ]
    if exhausted:
        headers.append((b"x-liebian-live-code", b"exhausted"))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head_only else data})


# Plain HTML and inline CSS: no script, no external resource, renders the same in WeChat, QQ
# and Alipay's webviews. Every operator-supplied string goes through html.escape.
_STYLE = (
    "body{margin:0;font-family:-apple-system,BlinkMacSystemFont,'PingFang SC',"
    "'Microsoft YaHei',sans-serif;background:#f5f6f7;color:#222;text-align:center}"
    ".card{max-width:420px;margin:24px auto;padding:24px 16px;background:#fff;border-radius:12px}"
    "h1{font-size:20px;margin:0 0 8px}p{font-size:15px;color:#555;margin:8px 0}"
    "img{width:80%;max-width:320px;height:auto;margin:12px auto;display:block}"
    ".tip{font-size:17px;color:#07c160;font-weight:600}"
)


def _document(title: str, inner: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><div class="card">{inner}</div></body></html>'
    )


def _image_page(name: str, label: str, src: str) -> str:
    caption = f"<p>{html.escape(label)}</p>" if label else ""
    return _document(
        name,
        f"<h1>{html.escape(name)}</h1>{caption}"
        f'<img src="{html.escape(src)}" alt="群二维码">'
        '<p class="tip">长按识别二维码加入群聊</p>',
    )


def _full_page(name: str) -> str:
    return _document(
        name,
        f"<h1>{html.escape(name)}</h1><p>群已满，请联系客服</p>"
        "<p>The group is full; please contact customer service.</p>",
    )


def _not_found_page() -> str:
    return _document("链接不存在", "<h1>链接不存在</h1><p>This link does not exist.</p>")
