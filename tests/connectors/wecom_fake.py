"""A WeCom server on 127.0.0.1 for the connector's tests, and a callback sender.

The fake speaks WeCom's documented protocol: ``GET /cgi-bin/gettoken?corpid&corpsecret``
answers an access token with ``expires_in``; every other call needs ``?access_token=…`` and
answers JSON with ``errcode``/``errmsg`` (40001 wrong secret, 40014 unknown token, 42001
expired token, 41051 a welcome code already used).

企业群发 (``add_msg_template``): ``chat_type`` single counts each customer against the monthly
cap (over it: ``fail_list``); ``chat_type`` group needs ``sender`` (a staff member in
``staff``: else 40003 invalid userid) and ``chat_id_list`` of groups that sender owns
(``chats``: else 40050 invalid chat id; more than 2,000 or none: 40058). Nothing reaches a
group until its owner confirms (``confirm``): each group then counts against the same monthly
cap (status 1 sent, or 3 when it already received its share); a group the task named that
was dismissed meanwhile is status 2. ``get_groupmsg_task`` / ``get_groupmsg_send_result``
report it (unknown msgid: 40049 invalid msgid; a msgid in ``dispatching``: 41063). Tokens can be expired on demand
(``expire_tokens``) to exercise the client's refetch-and-retry.

The sender encrypts and signs exactly as WeCom does, with wechatpy's WeChatCrypto (SHA1
signature over token/timestamp/nonce/Encrypt, AES-256-CBC with the EncodingAESKey).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import xmltodict
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

CORP_ID = "ww0123456789abcdef"
SECRET = "agent-secret-0123456789"
TOKEN = "CallbackToken42"
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")  # 43 characters


@dataclass
class FakeWecom:
    url: str = ""
    expires_in: int = 7200
    monthly_cap: int = 4
    issued: list[str] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    used_welcome_codes: set[str] = field(default_factory=set)
    welcomes: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    received: dict[str, int] = field(default_factory=dict)
    corp_tags: list[dict[str, Any]] = field(default_factory=list)
    marks: list[dict[str, Any]] = field(default_factory=list)
    # external_userid → staff userid → corp tag ids that follow carries (mark_tag edits it,
    # and tests edit it as a staff member would inside WeCom).
    customer_tags: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    # Staff members (userid) of the corp, and customer groups: chat id → owner userid.
    staff: set[str] = field(default_factory=lambda: {"zhangsan", "lisi"})
    chats: dict[str, str] = field(default_factory=dict)
    # msgid → {"chat_type", "sender", "targets": {target: status}, "body"}.
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    dispatching: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # gettoken answers 40001 (the secret was reset in WeCom's admin console).
    refuse_tokens: bool = False

    def expire_tokens(self) -> None:
        with self.lock:
            self.expired |= self.valid
            self.valid.clear()

    def confirm(self, msgid: str) -> None:
        """The sender confirms the task in the WeCom app: WeCom sends it now."""
        with self.lock:
            task = self.tasks[msgid]
            task["sender_status"] = 1
            for target in task["targets"]:
                if task["chat_type"] == "single":
                    task["targets"][target] = 1  # counted when the task was made
                elif target not in self.chats:
                    task["targets"][target] = 2  # the group was dismissed meanwhile
                elif self.received.get(target, 0) >= self.monthly_cap:
                    task["targets"][target] = 3
                else:
                    self.received[target] = self.received.get(target, 0) + 1
                    task["targets"][target] = 1

    def group_templates(self) -> list[dict[str, Any]]:
        return [t["body"] for t in self.tasks.values() if t["chat_type"] == "group"]

    def paths(self) -> list[str]:
        return [p for p, _ in self.calls]

    def handle(self, path: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls.append((path, body))
            if path == "/cgi-bin/gettoken":
                if query.get("corpid") != CORP_ID:
                    return {"errcode": 40013, "errmsg": "invalid corpid"}
                if query.get("corpsecret") != SECRET or self.refuse_tokens:
                    return {"errcode": 40001, "errmsg": "invalid credential"}
                token = f"tok-{len(self.issued) + 1}-{os.urandom(4).hex()}"
                self.issued.append(token)
                self.valid.add(token)
                return {"errcode": 0, "errmsg": "ok", "access_token": token,
                        "expires_in": self.expires_in}  # fmt: skip
            token = query.get("access_token", "")
            if token in self.expired:
                return {"errcode": 42001, "errmsg": "access_token expired"}
            if token not in self.valid:
                return {"errcode": 40014, "errmsg": "invalid access_token"}
            args = {k: v for k, v in query.items() if k != "access_token"}
            return self._api(path.removeprefix("/cgi-bin/"), {**args, **body})

    def _api(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        ok = {"errcode": 0, "errmsg": "ok"}
        n = len(self.calls)
        if path == "externalcontact/add_contact_way":
            if not body.get("user") or len(str(body.get("state", ""))) > 30:
                return {"errcode": 40058, "errmsg": "invalid parameter"}
            return {**ok, "config_id": f"cfg-{n}", "qr_code": f"https://wework.qpic.cn/fake/{n}"}
        if path == "externalcontact/groupchat/add_join_way":
            if not body.get("chat_id_list") or len(body["chat_id_list"]) > 5:
                return {"errcode": 40058, "errmsg": "invalid parameter"}
            return {**ok, "config_id": f"join-{n}"}
        if path == "externalcontact/groupchat/get_join_way":
            return {**ok, "join_way": {"config_id": body.get("config_id"),
                                       "qr_code": f"https://wework.qpic.cn/join/{n}"}}  # fmt: skip
        if path == "externalcontact/send_welcome_msg":
            code = str(body.get("welcome_code") or "")
            if not code or code in self.used_welcome_codes:
                return {"errcode": 41051, "errmsg": "welcome_code is used or expired"}
            self.used_welcome_codes.add(code)
            self.welcomes.append(body)
            return ok
        if path == "externalcontact/add_msg_template" and body.get("chat_type") == "group":
            sender = str(body.get("sender") or "")
            chats = body.get("chat_id_list") or []
            if not sender or sender not in self.staff:
                return {"errcode": 40003, "errmsg": "invalid userid"}
            if not chats or len(chats) > 2000 or not (body.get("text") or {}).get("content"):
                return {"errcode": 40058, "errmsg": "invalid parameter"}
            if any(self.chats.get(c) != sender for c in chats):
                return {"errcode": 40050, "errmsg": "invalid chatid"}
            msgid = f"msgGROUP-{n}"
            self.tasks[msgid] = {"chat_type": "group", "sender": sender, "sender_status": 0,
                                 "targets": dict.fromkeys(chats, 0), "body": body}  # fmt: skip
            return {**ok, "fail_list": [], "msgid": msgid}
        if path in (
            "externalcontact/get_groupmsg_task",
            "externalcontact/get_groupmsg_send_result",
        ):
            msgid = str(body.get("msgid") or "")
            if msgid not in self.tasks:
                return {"errcode": 40049, "errmsg": "invalid msgid"}
            task = self.tasks[msgid]
            if path.endswith("get_groupmsg_task"):
                return {**ok, "next_cursor": "", "task_list": [
                    {"userid": task["sender"], "status": task["sender_status"]}]}  # fmt: skip
            if msgid in self.dispatching:
                return {"errcode": 41063, "errmsg": "the msg is dispatching, please try later"}
            if body.get("userid") != task["sender"]:
                return {"send_list": [], "next_cursor": "", **ok}
            key = "chat_id" if task["chat_type"] == "group" else "external_userid"
            return {**ok, "next_cursor": "", "send_list": [
                {key: t, "userid": task["sender"], "status": st}
                for t, st in task["targets"].items()]}  # fmt: skip
        if path == "externalcontact/add_msg_template":
            fail = []
            for user in body.get("external_userid") or []:
                if self.received.get(user, 0) >= self.monthly_cap:
                    fail.append(user)
                else:
                    self.received[user] = self.received.get(user, 0) + 1
            self.templates.append(body)
            accepted = [u for u in body.get("external_userid") or [] if u not in fail]
            self.tasks[f"msg-{n}"] = {
                "chat_type": "single", "sender": str(body.get("sender") or "zhangsan"),
                "sender_status": 0, "targets": dict.fromkeys(accepted, 0), "body": body,
            }  # fmt: skip
            return {**ok, "fail_list": fail, "msgid": f"msg-{n}"}
        if path == "externalcontact/get_corp_tag_list":
            return {**ok, "tag_group": self.corp_tags}
        if path == "externalcontact/mark_tag":
            self.marks.append(body)
            have = self.customer_tags.setdefault(str(body.get("external_userid")), {})
            tags = have.setdefault(str(body.get("userid")), set())
            tags |= set(body.get("add_tag") or [])
            tags -= set(body.get("remove_tag") or [])
            return ok
        if path == "externalcontact/get":
            external = str(body.get("external_userid") or "")
            if external not in self.customer_tags:
                return {"errcode": 84061, "errmsg": "not external contact"}
            names = {t["id"]: (g["group_name"], t["name"]) for g in self.corp_tags
                     for t in g.get("tag") or []}  # fmt: skip
            return {**ok, "external_contact": {"external_userid": external, "name": "客户"},
                    "follow_user": [
                        {"userid": staff, "tags": [
                            {"group_name": names.get(t, ("", ""))[0],
                             "tag_name": names.get(t, ("", ""))[1], "tag_id": t, "type": 1}
                            for t in sorted(tags)]}
                        for staff, tags in self.customer_tags[external].items()]}  # fmt: skip
        return {"errcode": 60011, "errmsg": f"no privilege to access {path}"}


@contextmanager
def fake_wecom() -> Iterator[FakeWecom]:
    state = FakeWecom()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: dict[str, Any]) -> None:
            parsed = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
            data = json.dumps(state.handle(parsed.path, query, body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer({})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._answer(json.loads(raw or b"{}"))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# -- the callback sender ------------------------------------------------------------------


def contact_event(change: str, *, external: str, staff: str = "zhangsan", state: str = "",
                  welcome_code: str = "", create_time: int = 1764720000) -> str:  # fmt: skip
    extra = ""
    if state:
        extra += f"<State><![CDATA[{state}]]></State>"
    if welcome_code:
        extra += f"<WelcomeCode><![CDATA[{welcome_code}]]></WelcomeCode>"
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change}]]></ChangeType>"
        f"<UserID><![CDATA[{staff}]]></UserID>"
        f"<ExternalUserID><![CDATA[{external}]]></ExternalUserID>{extra}</xml>"
    )


def chat_event(change: str, *, chat_id: str, detail: str = "", members: list[str] | None = None,
               create_time: int = 1764720000) -> str:  # fmt: skip
    extra = ""
    if detail:
        extra += f"<UpdateDetail><![CDATA[{detail}]]></UpdateDetail>"
        if detail == "add_member":
            extra += "<JoinScene>3</JoinScene>"
        if detail == "del_member":
            extra += "<QuitScene>0</QuitScene>"
    if members:
        extra += f"<MemChangeCnt>{len(members)}</MemChangeCnt><MemChangeList>"
        extra += "".join(f"<Item>{m}</Item>" for m in members) + "</MemChangeList>"
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_chat]]></Event>"
        f"<ChatId><![CDATA[{chat_id}]]></ChatId>"
        f"<ChangeType><![CDATA[{change}]]></ChangeType>{extra}</xml>"
    )


@dataclass
class Envelope:
    params: dict[str, str]
    body: bytes


def seal(xml: str, *, timestamp: int, token: str = TOKEN, aes_key: str = AES_KEY,
         corp_id: str = CORP_ID) -> Envelope:  # fmt: skip
    """Encrypt and sign a callback as WeCom does (a fresh nonce each time, like its retries)."""
    nonce = os.urandom(6).hex()
    sealed = WeChatCrypto(token, aes_key, corp_id).encrypt_message(xml, nonce, str(timestamp))
    parts = xmltodict.parse(sealed)["xml"]
    body = (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
        f"<AgentID><![CDATA[1000002]]></AgentID>"
        f"<Encrypt><![CDATA[{parts['Encrypt']}]]></Encrypt></xml>"
    ).encode()
    params = {"msg_signature": parts["MsgSignature"], "timestamp": str(timestamp), "nonce": nonce}
    return Envelope(params, body)


def url_check(echo: str, *, timestamp: int, token: str = TOKEN) -> dict[str, str]:
    """The GET parameters WeCom sends to verify the callback URL."""
    nonce = os.urandom(6).hex()
    echostr = PrpCrypto(base64.b64decode(AES_KEY + "=")).encrypt(echo, CORP_ID)
    echostr = echostr.decode() if isinstance(echostr, bytes) else echostr
    signature = hashlib.sha1(
        "".join(sorted([token, str(timestamp), nonce, echostr])).encode()
    ).hexdigest()
    return {
        "msg_signature": signature,
        "timestamp": str(timestamp),
        "nonce": nonce,
        "echostr": echostr,
    }


def post_callback(http: httpx.Client, url: str, envelope: Envelope) -> httpx.Response:
    return http.post(url + "?" + urlencode(envelope.params), content=envelope.body,
                     headers={"Content-Type": "text/xml"})  # fmt: skip


def tag_event(
    change: str, *, tag_id: str, tag_type: str = "tag", create_time: int = 1764720000
) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_tag]]></Event>"
        f"<Id><![CDATA[{tag_id}]]></Id><TagType><![CDATA[{tag_type}]]></TagType>"
        f"<ChangeType><![CDATA[{change}]]></ChangeType></xml>"
    )
