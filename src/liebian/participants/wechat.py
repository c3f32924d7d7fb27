"""WeChat web authorization (网页授权) for an official account, as WeChat documents it:

1. the browser goes to ``{open}/connect/oauth2/authorize?appid=…&redirect_uri=…&response_type=
   code&scope=snsapi_base|snsapi_userinfo&state=…#wechat_redirect``; WeChat sends it back to
   ``redirect_uri?code=…&state=…`` (without ``code`` when the person declined);
2. ``GET {api}/sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`` →
   ``{access_token, expires_in, refresh_token, openid, scope, unionid?, is_snapshotuser?}``
   or ``{errcode, errmsg}`` (a code works once and for five minutes);
3. with ``snsapi_userinfo``: ``GET {api}/sns/userinfo?access_token&openid&lang=zh_CN`` →
   ``{openid, nickname, headimgurl, unionid?, …}``.

``open`` and ``api`` come from settings (LIEBIAN_WECHAT_OPEN_BASE / _API_BASE), so tests speak
this protocol with a loopback counterpart. The AppSecret goes only to the sns endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

USER_AGENT = "liebian-participant-sign-in/1"


class WeChatError(Exception):
    """The sign-in could not finish; ``code`` names the Chinese page to show."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code


@dataclass(frozen=True, slots=True)
class WeChatUser:
    openid: str
    unionid: str | None
    nickname: str | None
    avatar_url: str | None


def authorize_url(open_base: str, app_id: str, redirect_uri: str, scope: str, state: str) -> str:
    query = urlencode(
        {
            "appid": app_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": scope,
            "state": state,
        }
    )
    return f"{open_base.rstrip('/')}/connect/oauth2/authorize?{query}#wechat_redirect"


def _get(
    transport: httpx.BaseTransport, url: str, params: dict[str, str], timeout: float
) -> dict[str, Any]:
    # Straight to the transport: httpx's client logs every request's URL at INFO, and these
    # URLs carry the AppSecret, the one-time code and the access token.
    request = httpx.Request(
        "GET", url, params=params, headers={"User-Agent": USER_AGENT},
        extensions={"timeout": httpx.Timeout(timeout).as_dict()},
    )  # fmt: skip
    try:
        response = transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
    except httpx.HTTPError as exc:
        raise WeChatError("wechat_unreachable", type(exc).__name__) from exc
    if response.status_code != 200:
        raise WeChatError("wechat_unreachable", f"HTTP {response.status_code}")
    try:
        answer = response.json()
    except ValueError as exc:
        raise WeChatError("wechat_unreachable", "not JSON") from exc
    if not isinstance(answer, dict):
        raise WeChatError("wechat_unreachable", "not an object")
    if answer.get("errcode"):
        # 40029 invalid code, 40163 code used, 41008 missing code, 40125 bad secret, …
        raise WeChatError("wechat_code_invalid", f"errcode {answer.get('errcode')}")
    return answer


def sign_in(
    transport: httpx.BaseTransport,
    api_base: str,
    app_id: str,
    secret: str,
    code: str,
    scope: str,
    *,
    timeout: float = 10.0,
) -> WeChatUser:
    """The person a callback's ``code`` names (and, with snsapi_userinfo, their nickname)."""
    base = api_base.rstrip("/")
    token = _get(
        transport, f"{base}/sns/oauth2/access_token",
        {"appid": app_id, "secret": secret, "code": code, "grant_type": "authorization_code"},
        timeout,
    )  # fmt: skip
    openid = token.get("openid")
    if not isinstance(openid, str) or not 1 <= len(openid) <= 128:
        raise WeChatError("wechat_code_invalid", "no openid")
    if token.get("is_snapshotuser") == 1:
        # A 朋友圈 snapshot page: a virtual openid, not the person (WeChat's own advice: ask
        # them to open the full page).
        raise WeChatError("wechat_snapshot")
    unionid = token.get("unionid") if isinstance(token.get("unionid"), str) else None
    nickname = avatar = None
    granted = str(token.get("scope") or "")
    if scope == "snsapi_userinfo" and "snsapi_userinfo" in granted:
        info = _get(
            transport, f"{base}/sns/userinfo",
            {"access_token": str(token.get("access_token", "")), "openid": openid, "lang": "zh_CN"},
            timeout,
        )  # fmt: skip
        if info.get("openid") not in (None, openid):
            raise WeChatError("wechat_code_invalid", "userinfo of another openid")
        nickname = str(info.get("nickname") or "")[:100] or None
        avatar = str(info.get("headimgurl") or "")[:500] or None
        if isinstance(info.get("unionid"), str):
            unionid = unionid or info["unionid"]
    return WeChatUser(openid, unionid[:128] if unionid else None, nickname, avatar)
