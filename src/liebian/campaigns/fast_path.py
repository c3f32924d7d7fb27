"""Group joins and assist helps as a raw ASGI app: the fission write hot path, framework-free.

``POST /api/v1/groups/{group_id}/join`` and ``POST /api/v1/assists/{assist_id}/help`` are
the requests a campaign's participants send by the thousand. Through FastAPI, route matching
(every router mounted before the campaigns one is tried first), dependency solving and the
middleware stack cost several times the join itself. The dispatcher sends these two paths
here instead (as it does ingestion and redirects).

The contract stays the FastAPI routes' (campaigns/api.py, which document it in OpenAPI): this
path handles the usual request — a cached key with the role, a JSON object the model
accepts, a body within the size limit — and hands every other one, body included, to the
FastAPI app. So a key that must be looked up, a missing header, bad JSON or a field that
fails validation get exactly the framework's answers (401/403/413/422 with the same
messages), with no second copy of those rules here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from pydantic import ValidationError

from liebian.app.runtime import Runtime
from liebian.campaigns.api import GroupJoin, HelpBody, help_reply, join_reply
from liebian.kit.asgi import send_domain_error, send_json
from liebian.kit.auth import Principal, Role
from liebian.kit.errors import DomainError, Unavailable
from liebian.kit.faults import guard
from liebian.workspaces.key_cache import KeyCache

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GROUPS_PREFIX = "/api/v1/groups/"
JOIN_SUFFIX = "/join"
ASSISTS_PREFIX = "/api/v1/assists/"
HELP_SUFFIX = "/help"


def fission_write(path: str) -> tuple[str, str] | None:
    """``("join", group_id)`` or ``("help", assist_id)`` for the two paths served here."""
    for prefix, suffix, kind in (
        (GROUPS_PREFIX, JOIN_SUFFIX, "join"),
        (ASSISTS_PREFIX, HELP_SUFFIX, "help"),
    ):
        if path.startswith(prefix) and path.endswith(suffix):
            subject = path[len(prefix) : -len(suffix)]
            if subject and "/" not in subject:
                return kind, subject
    return None


class _Fallback(Exception):
    """Not the usual request: let the FastAPI route answer it."""


class FissionWritesApp:
    def __init__(self, runtime: Runtime, fallback: ASGIApp) -> None:
        self.runtime = runtime
        self.fallback = fallback
        self.keys: KeyCache = runtime.extras["key_cache"]
        self.max_body = runtime.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Anything unexpected (the database, the group-commit writer, a hook) is logged with a
        # request id and answered as JSON: 503 + Retry-After when transient (kit/faults.py).
        await guard(self._serve, scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = fission_write(scope["path"])
        if target is None or scope["method"] != "POST":
            await self.fallback(scope, receive, send)
            return
        kind, subject = target
        received = _Received()
        try:
            principal = self._principal(scope)
            raw = await self._body(receive, received)
            payload = orjson.loads(raw) if raw else None
            if not isinstance(payload, dict):
                raise _Fallback
            body = (GroupJoin if kind == "join" else HelpBody).model_validate(payload)
        except (_Fallback, orjson.JSONDecodeError, ValidationError):
            # Nothing has been done yet: the framework answers as if it had had it all along.
            await self.fallback(scope, _replay(received, receive), send)
            return
        try:
            reply = await self._write(subject, principal, body)
        except Unavailable:
            raise  # a fault, not a refusal: logged with a request id by the guard
        except DomainError as exc:
            await send_domain_error(send, exc)
            return
        await send_json(send, 200, reply)

    async def _write(self, subject: str, principal: Principal, body: GroupJoin | HelpBody) -> bytes:
        """The join or help, committed; the reply's JSON."""
        if isinstance(body, GroupJoin):
            out = await join_reply(self.runtime, principal, subject, body)
        else:
            out = await help_reply(self.runtime, principal, subject, body)
        return orjson.dumps(out, option=orjson.OPT_UTC_Z)

    def _principal(self, scope: Scope) -> Principal:
        """The cached key's principal when it may write; anything else is the framework's
        to answer (a key to look up in the database, 401, 403)."""
        content_type: bytes | None = None
        token = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    raise _Fallback
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length" and (not value.isdigit() or int(value) > self.max_body):
                raise _Fallback
        # FastAPI reads the body as JSON when it is declared so, or not declared at all.
        if content_type is not None and not content_type.lower().startswith(b"application/json"):
            raise _Fallback
        principal = self.keys.get(token.strip()) if token.strip() else None
        # A custom role (permissions not None) is gated by area in the framework's principal
        # dependency (app/deps.py); its rank alone does not say it may write campaigns.
        if principal is None or principal.permissions is not None:
            raise _Fallback
        if not principal.at_least(Role.operator):
            raise _Fallback
        return principal

    async def _body(self, receive: Receive, received: _Received) -> bytes:
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                raise _Fallback
            chunk = message.get("body", b"")
            received.chunks.append(chunk)
            size += len(chunk)
            received.complete = not message.get("more_body", False)
            if size > self.max_body:
                raise _Fallback  # the framework's size limit answers 413
            if received.complete:
                return b"".join(received.chunks)


class _Received:
    """The body read so far, to hand on to the framework when it is to answer."""

    __slots__ = ("chunks", "complete")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.complete = False


def _replay(received: _Received, receive: Receive) -> Receive:
    """``receive`` as if nothing had been read yet: what was read comes first, in one
    message, then whatever the client still sends."""
    pending = [b"".join(received.chunks)] if received.chunks else []
    more = not received.complete

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": more}
        return await receive()

    return replay
