"""The WeCom server API (qyapi) over httpx, for one corp's agent secret.

Why httpx and not wechatpy's ``WeChatClient`` (decision 0023): wechatpy fetches the token from
a hard-coded ``https://qyapi.weixin.qq.com/cgi-bin/gettoken`` whatever ``API_BASE_URL`` says,
so the client cannot be pointed at another base URL without overriding its internals; its
token lives in a per-instance session (every process and every new client fetches again), and
the version here (1.8.18) has no join-way endpoints. wechatpy stays the implementation of the
callback crypto (callbacks.py), which is the part with real protocol work in it.

Protocol, as documented by WeCom:
- ``GET /cgi-bin/gettoken?corpid=…&corpsecret=…`` → ``{"errcode":0,"access_token":…,
  "expires_in":7200}``; every other call carries ``?access_token=…``.
- Every answer is JSON with ``errcode`` (0 = success) and ``errmsg``.
- 40014 (invalid access_token), 42001 (access_token expired) and 40001 (invalid credential)
  mean the token we hold is no longer good: drop it, fetch a new one, retry the call once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from liebian.kit.errors import DomainError, Unavailable

# The token we hold is stale: refetch and retry once.
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# Refetch this many seconds before WeCom says the token expires (clock skew, slow calls).
TOKEN_MARGIN = 300.0


class WecomApiError(DomainError):
    """WeCom answered with a non-zero errcode: shown to the caller with WeCom's code."""

    status = 502
    code = "wecom_error"

    def __init__(self, path: str, errcode: int, errmsg: str) -> None:
        super().__init__(
            f"WeCom refused {path}: errcode {errcode} ({errmsg})",
            details={"errcode": errcode, "errmsg": errmsg, "path": path},
        )
        self.path = path
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass(slots=True)
class _Token:
    value: str
    refresh_at: float


class TokenCache:
    """Access tokens by connection (and secret version), shared by every client of the
    process, refreshed shortly before WeCom's ``expires_in``. ``clock`` is injectable so
    expiry is tested without waiting."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._fetch_locks: dict[str, threading.Lock] = {}
        self.fetches = 0

    def get(self, key: str) -> str | None:
        token = self._tokens.get(key)
        if token is None or self.clock() >= token.refresh_at:
            return None
        return token.value

    def put(self, key: str, value: str, expires_in: float) -> None:
        margin = min(TOKEN_MARGIN, expires_in / 10)
        self._tokens[key] = _Token(value, self.clock() + expires_in - margin)

    def drop(self, key: str, value: str) -> None:
        """Forget ``value`` (if it is still the cached one: another thread may have
        refreshed meanwhile)."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.value == value:
                del self._tokens[key]

    def fetch_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._fetch_locks.setdefault(key, threading.Lock())


class WecomClient:
    def __init__(
        self,
        *,
        base_url: str,
        corp_id: str,
        secret: str,
        cache_key: str,
        tokens: TokenCache,
        http: httpx.Client,
    ) -> None:
        self.base = base_url.rstrip("/") + "/cgi-bin/"
        self.corp_id = corp_id
        self._secret = secret
        self.cache_key = cache_key
        self.tokens = tokens
        self.http = http

    # -- token -----------------------------------------------------------------------------

    def access_token(self) -> str:
        token = self.tokens.get(self.cache_key)
        if token is not None:
            return token
        # One fetch per connection at a time: WeCom rate-limits gettoken.
        with self.tokens.fetch_lock(self.cache_key):
            token = self.tokens.get(self.cache_key)
            if token is not None:
                return token
            body = self._send(
                "GET", "gettoken", {"corpid": self.corp_id, "corpsecret": self._secret}
            )
            value = str(body.get("access_token") or "")
            if not value:
                raise WecomApiError("gettoken", -1, "no access_token in the answer")
            self.tokens.fetches += 1
            self.tokens.put(self.cache_key, value, float(body.get("expires_in") or 7200))
            return value

    # -- calls -----------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call; a stale token is refreshed and the call retried once."""
        token = self.access_token()
        try:
            return self._send(method, path, {**(query or {}), "access_token": token}, payload)
        except WecomApiError as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise
            self.tokens.drop(self.cache_key, token)
        return self._send(
            method, path, {**(query or {}), "access_token": self.access_token()}, payload
        )

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        payload: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            response = self.http.request(method, self.base + path, params=params, json=payload)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Unavailable(
                f"WeCom did not answer {path} ({type(exc).__name__}); try again shortly",
                code="wecom_unavailable",
                retry_after=5,
            ) from exc
        if not isinstance(body, dict):
            raise WecomApiError(path, -1, "answer is not a JSON object")
        errcode = int(body.get("errcode") or 0)
        if errcode != 0:
            raise WecomApiError(path, errcode, str(body.get("errmsg") or ""))
        return body

    # -- the endpoints liebian uses --------------------------------------------------------

    def add_contact_way(
        self, *, state: str, users: list[str], remark: str = "", skip_verify: bool = True
    ) -> dict[str, Any]:
        """联系我 with a QR code (type 1 = one staff member, 2 = several; scene 2 = QR)."""
        return self.call("POST", "externalcontact/add_contact_way", {
            "type": 1 if len(users) == 1 else 2, "scene": 2, "state": state, "user": users,
            "remark": remark, "skip_verify": skip_verify,
        })  # fmt: skip

    def add_join_way(self, *, state: str, chat_ids: list[str], remark: str = "") -> dict[str, Any]:
        """加入群聊 with a QR code (scene 2) over up to 5 customer groups."""
        return self.call("POST", "externalcontact/groupchat/add_join_way", {
            "scene": 2, "state": state, "chat_id_list": chat_ids, "remark": remark,
            "auto_create_room": 0,
        })  # fmt: skip

    def get_join_way(self, config_id: str) -> dict[str, Any]:
        return self.call("POST", "externalcontact/groupchat/get_join_way", {"config_id": config_id})

    def send_welcome_msg(self, *, welcome_code: str, text: str) -> dict[str, Any]:
        return self.call("POST", "externalcontact/send_welcome_msg", {
            "welcome_code": welcome_code, "text": {"content": text},
        })  # fmt: skip

    def add_msg_template(
        self, *, external_userids: list[str], text: str, sender: str | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "chat_type": "single", "external_userid": external_userids,
            "text": {"content": text},
        }  # fmt: skip
        if sender:
            payload["sender"] = sender
        return self.call("POST", "externalcontact/add_msg_template", payload)

    def add_group_msg_template(
        self, *, sender: str, chat_ids: list[str], text: str
    ) -> dict[str, Any]:
        """企业群发 to customer groups: ``sender`` (the groups' owner) gets a task in the WeCom
        app and confirms it; ``chat_id_list`` names the groups (at most 2,000), so the owner
        does not pick them again. Answers ``msgid`` (and ``fail_list``)."""
        return self.call("POST", "externalcontact/add_msg_template", {
            "chat_type": "group", "sender": sender, "chat_id_list": chat_ids,
            "allow_select": False, "text": {"content": text},
        })  # fmt: skip

    def get_groupmsg_task(self, msgid: str, cursor: str = "") -> dict[str, Any]:
        """Each sender of a mass send and whether they sent it (``task_list[]``: userid,
        status 0 not sent / 1 sent, send_time), paged by ``next_cursor``."""
        payload: dict[str, Any] = {"msgid": msgid, "limit": 1000}
        if cursor:
            payload["cursor"] = cursor
        return self.call("POST", "externalcontact/get_groupmsg_task", payload)

    def get_groupmsg_send_result(self, msgid: str, userid: str, cursor: str = "") -> dict[str, Any]:
        """One sender's result per customer / group (``send_list[]``: external_userid or
        chat_id, status 0 not sent, 1 sent, 2 not a customer / not in the group, 3 the
        customer already received a mass message (the limit)), paged by ``next_cursor``.
        errcode 41063: WeCom is still dispatching the task; ask again later."""
        payload: dict[str, Any] = {"msgid": msgid, "userid": userid, "limit": 1000}
        if cursor:
            payload["cursor"] = cursor
        return self.call("POST", "externalcontact/get_groupmsg_send_result", payload)

    def get_external_contact(self, external_userid: str) -> dict[str, Any]:
        """A customer and each staff member's follow of them, with the tags each follow
        carries (``follow_user[].tags[]``: ``type`` 1 = corp tag, with its ``tag_id``)."""
        return self.call("GET", "externalcontact/get", query={"external_userid": external_userid})

    def get_corp_tag_list(self) -> dict[str, Any]:
        return self.call("POST", "externalcontact/get_corp_tag_list", {})

    def mark_tag(
        self,
        *,
        userid: str,
        external_userid: str,
        add_tag: list[str] | None = None,
        remove_tag: list[str] | None = None,
    ) -> dict[str, Any]:
        return self.call("POST", "externalcontact/mark_tag", {
            "userid": userid, "external_userid": external_userid,
            "add_tag": add_tag or [], "remove_tag": remove_tag or [],
        })  # fmt: skip
