"""Real receivers on 127.0.0.1 speaking each channel's protocol: a signed-webhook receiver, a
WeCom group robot, an SMS provider, and fixtures for a workspace, contacts and channels."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from liebian.app.runtime import Runtime
from liebian.channels.adapters import sms_signature
from liebian.kit.db import session_scope
from liebian.webhooks import signing


@dataclass
class Hit:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[["Server", Hit], tuple[int, Any]]


@dataclass
class Server:
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    # Accepted messages by their dedupe key (Idempotency-Key / out_id): what a person sees.
    accepted: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    state: dict[str, Any] = field(default_factory=dict)

    def count(self, method: str = "POST") -> int:
        with self.lock:
            return sum(1 for h in self.hits if h.method == method)


@contextmanager
def serve(respond: Responder, path: str = "/") -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body go in two writes: no delayed-ACK wait

        def _handle(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            hit = Hit(method, parts.path, query, dict(self.headers.items()), body)
            with state.lock:
                state.hits.append(hit)
                status, reply = respond(state, hit)
            raw = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            self._handle("POST")

        def do_GET(self) -> None:
            self._handle("GET")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# -- the counterparts -------------------------------------------------------------------------


def webhook_receiver(secret_of: Callable[[], str | None]) -> Responder:
    """Verifies Liebian-Signature (when the secret is known) and dedupes by Idempotency-Key."""

    def respond(server: Server, hit: Hit) -> tuple[int, Any]:
        secret = secret_of()
        if secret and not signing.verify(
            secret, hit.headers.get("Liebian-Signature", ""), hit.body
        ):
            return 401, {"error": "bad signature"}
        fail = server.state.get("fail_next", 0)
        if fail:
            server.state["fail_next"] = fail - 1
            return 503, {"error": "busy"}
        key = hit.headers["Idempotency-Key"]
        server.accepted.setdefault(key, hit.json())
        return 200, {"ok": True}

    return respond


def wecom_robot(key: str) -> Responder:
    """The 群机器人 webhook: POST /cgi-bin/webhook/send?key=…, errcode JSON answers."""

    def respond(server: Server, hit: Hit) -> tuple[int, Any]:
        if hit.path != "/cgi-bin/webhook/send" or hit.query.get("key") != key:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        try:
            msg = hit.json()
        except ValueError:
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        kind = msg.get("msgtype")
        if kind in ("text", "markdown"):
            ok = isinstance(msg.get(kind, {}).get("content"), str)
        elif kind == "image":
            raw = base64.b64decode(msg["image"]["base64"])
            ok = hashlib.md5(raw).hexdigest() == msg["image"]["md5"]
        elif kind == "news":
            ok = 1 <= len(msg["news"]["articles"]) <= 8
        else:
            ok = False
        if not ok:
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        if server.state.get("rate_limited"):
            return 200, {"errcode": 45009, "errmsg": "api freq out of limit"}
        server.accepted[str(len(server.accepted))] = msg
        return 200, {"errcode": 0, "errmsg": "ok"}

    return respond


def sms_provider(secret: str) -> Responder:
    """POST / sends (signed body, out_id dedupe); GET /lookup?out_id=… answers what was sent."""

    def respond(server: Server, hit: Hit) -> tuple[int, Any]:
        t = hit.headers.get("X-Sms-Timestamp", "")
        if hit.method == "GET":
            out_id = hit.query.get("out_id", "")
            if hit.headers.get("X-Sms-Signature") != sms_signature(secret, t, out_id.encode()):
                return 401, {"code": "BAD_SIGNATURE"}
            if out_id in server.accepted:
                return 200, {"code": "OK", "message_id": server.accepted[out_id]["message_id"]}
            return 404, {"code": "NOT_FOUND"}
        if hit.headers.get("X-Sms-Signature") != sms_signature(secret, t, hit.body):
            return 401, {"code": "BAD_SIGNATURE"}
        if server.state.get("fail_next"):
            server.state["fail_next"] -= 1
            return 503, {"code": "BUSY"}
        msg = hit.json()
        out_id = msg["out_id"]
        if out_id not in server.accepted:
            server.accepted[out_id] = {**msg, "message_id": f"sms-{len(server.accepted) + 1}"}
        return 200, {"code": "OK", "message_id": server.accepted[out_id]["message_id"]}

    return respond


# -- data -------------------------------------------------------------------------------------


def workspace(runtime: Runtime, tz: str = "Asia/Shanghai") -> str:
    from liebian.workspaces.service import create_workspace

    with session_scope(runtime.sessions) as session:
        return create_workspace(session, "渠道测试", tz).id


def contact(
    runtime: Runtime, ws: str, external_id: str, *, email: str | None = None,
    phone: str | None = None,
) -> str:  # fmt: skip
    from liebian.contacts.service import ContactInput, upsert

    with session_scope(runtime.sessions) as session:
        return upsert(session, runtime.cipher, ws,
                      ContactInput(external_id=external_id, email=email, phone=phone)).id  # fmt: skip


def channel(runtime: Runtime, ws: str, kind: str, config: dict[str, Any], **kw: Any) -> str:
    from liebian.channels.config import ChannelInput, create_channel

    with session_scope(runtime.sessions) as session:
        created, _ = create_channel(session, runtime, ws,
                                    ChannelInput(kind=kind, name=kind, config=config, **kw))  # fmt: skip
        return created.id


def quiet_off(runtime: Runtime, ws: str) -> None:
    from liebian.channels.config import set_guard_settings

    with session_scope(runtime.sessions) as session:
        set_guard_settings(session, ws, enabled=False, start="21:00", end="09:00")
