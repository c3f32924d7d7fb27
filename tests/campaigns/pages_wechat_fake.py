"""A loopback counterpart of WeChat web authorization (网页授权), speaking the documented
protocol: the authorize page answers as WeChat does once the person in the WeChat client
agreed (302 to ``redirect_uri?code=…&state=…``; declined: no ``code``), codes work once and
for five minutes, ``/sns/oauth2/access_token`` checks appid, secret and grant_type, and
``/sns/userinfo`` answers only for a token of the snsapi_userinfo scope."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class WeChat:
    app_id: str
    secret: str
    url: str = ""
    # The person signed in to the WeChat client that opens the authorize page.
    user: dict[str, Any] = field(default_factory=dict)
    decline: bool = False
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if query.get("appid") != self.app_id:
            return 200, {}, {"errcode": 10003, "errmsg": "redirect_uri domain mismatch"}
        scope = query.get("scope")
        if query.get("response_type") != "code" or scope not in ("snsapi_base", "snsapi_userinfo"):
            return 200, {}, {"errcode": 10005, "errmsg": "scope invalid"}
        target = query["redirect_uri"]
        sep = "&" if "?" in target else "?"
        if self.decline and scope == "snsapi_userinfo":
            return (
                302,
                {"Location": f"{target}{sep}{urlencode({'state': query.get('state', '')})}"},
                b"",
            )
        code = secrets.token_hex(16)
        self.codes[code] = {"user": dict(self.user), "scope": scope, "at": time.time()}
        params = urlencode({"code": code, "state": query.get("state", "")})
        return 302, {"Location": f"{target}{sep}{params}"}, b""

    def access_token(self, query: dict[str, str]) -> Any:
        if query.get("appid") != self.app_id or query.get("secret") != self.secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        if query.get("grant_type") != "authorization_code":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        grant = self.codes.pop(query.get("code", ""), None)
        if grant is None:
            return {"errcode": 40029, "errmsg": "invalid code"}
        if time.time() - grant["at"] > 300:
            return {"errcode": 40029, "errmsg": "code expired"}
        token = secrets.token_hex(16)
        user = grant["user"]
        self.tokens[token] = {"user": user, "scope": grant["scope"]}
        answer = {"access_token": token, "expires_in": 7200, "refresh_token": secrets.token_hex(8),
                  "openid": user["openid"], "scope": grant["scope"]}  # fmt: skip
        if user.get("unionid"):
            answer["unionid"] = user["unionid"]
        if user.get("is_snapshotuser"):
            answer["is_snapshotuser"] = 1
        return answer

    def userinfo(self, query: dict[str, str]) -> Any:
        grant = self.tokens.get(query.get("access_token", ""))
        if grant is None:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        if grant["scope"] != "snsapi_userinfo":
            return {"errcode": 48001, "errmsg": "api unauthorized"}
        user = grant["user"]
        if query.get("openid") != user["openid"]:
            return {"errcode": 40003, "errmsg": "invalid openid"}
        info = {"openid": user["openid"], "nickname": user.get("nickname", ""), "sex": 0,
                "province": "", "city": "", "country": "", "headimgurl": "", "privilege": []}  # fmt: skip
        if user.get("unionid"):
            info["unionid"] = user["unionid"]
        return info


@contextmanager
def wechat(app_id: str = "wx_test_app", secret: str = "s3cret-of-the-account") -> Iterator[WeChat]:
    state = WeChat(app_id, secret)

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            with state.lock:
                state.calls.append((parts.path, query))
                headers: dict[str, str] = {}
                if parts.path == "/connect/oauth2/authorize":
                    status, headers, reply = state.authorize(query)
                elif parts.path == "/sns/oauth2/access_token":
                    status, reply = 200, state.access_token(query)
                elif parts.path == "/sns/userinfo":
                    status, reply = 200, state.userinfo(query)
                else:
                    status, reply = 404, {"errcode": -1, "errmsg": "not found"}
            raw = (
                reply
                if isinstance(reply, bytes)
                else json.dumps(reply, ensure_ascii=False).encode()
            )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
