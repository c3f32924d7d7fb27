"""The ingestion hot path: ``POST /api/v1/events`` as a raw ASGI app, framework-free.

Same contract as the FastAPI route that documents it in OpenAPI (events/api.py): Bearer key,
one event or a batch, 202 with ``accepted``/``rejected``, errors as ``{"error": …}``. The
framework's per-request cost (dependency resolution, response model validation, a thread hop)
is several times the work of spooling one event, so the dispatcher sends this one path here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from liebian.app.deps import bearer_token, lookup_key
from liebian.app.runtime import Runtime
from liebian.events import service
from liebian.events.ingest_pool import POOL_BYTES, HookFilter, IngestPool
from liebian.kit.asgi import drain, send_domain_error, send_json
from liebian.kit.auth import Principal, Role
from liebian.kit.client_ip import client_ip
from liebian.kit.clock import utcnow
from liebian.kit.errors import DomainError, TooLarge, Unavailable
from liebian.kit.faults import guard
from liebian.workspaces.key_cache import KeyCache

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PATH = "/api/v1/events"
# Bodies above this are validated in a worker thread so one big batch never stalls the loop.
INLINE_BYTES = 32 * 1024


class IngestApp:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.keys: KeyCache = runtime.extras["key_cache"]
        self.max_body = runtime.settings.max_body_bytes
        self._lookup = lookup_key(runtime)
        self.trusted_proxies = runtime.settings.trusted_proxies

    async def _principal(self, scope: Scope) -> Principal:
        token = bearer_token(_header(scope, b"authorization") or "")
        principal = self.keys.get(token)
        if principal is not None:
            return principal
        # A wrong key repeated, or an address that sent too many: no database read.
        ip = client_ip(scope, self.trusted_proxies)
        refused = self.keys.refusal_for(token, ip)
        if refused is not None:
            raise refused
        # The look-up reads the database: in a worker thread, never on the event loop.
        return await asyncio.to_thread(self.keys.resolve, token, self._lookup, ip)

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise TooLarge(f"request body is larger than {self.max_body} bytes; split it up")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _accept(self, workspace_id: str, raw: bytes, key: str | None) -> service.Accepted:
        runtime = self.runtime
        assert runtime.spool is not None and runtime.event_store is not None
        return service.ingest(
            workspace_id=workspace_id,
            raw=raw,
            spool=runtime.spool,
            now=utcnow(),
            hooks=runtime.extras.get("event_hooks"),
            idempotency_key=key,
        )

    def _accept_large(self, workspace_id: str, raw: bytes, key: str | None) -> bytes:
        """A large body, in a worker thread: prepared by the ingest pool when the server has
        one (events/ingest_pool.py, decision 0058), written to the spool here; the 202's body."""
        runtime = self.runtime
        pool: IngestPool | None = runtime.extras.get("ingest_pool")
        if pool is not None and len(raw) >= POOL_BYTES:
            assert runtime.spool is not None
            hooks = runtime.extras.get("event_hooks")
            now = utcnow()
            prepared = pool.run(workspace_id, raw, now, key, HookFilter.of(hooks))
            if prepared is not None:
                service.commit(
                    runtime.spool, prepared.line, workspace_id, prepared.candidates, now, hooks
                )
                return prepared.payload
        return self._accept(workspace_id, raw, key).payload()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Whatever escapes (a database fault on a key look-up, a full disk under the spool, a
        # failing hook) is logged with a request id and answered as JSON (503 when transient).
        await guard(self._serve, scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if _declared_length(scope) > self.max_body:
                raise TooLarge(f"request body is larger than {self.max_body} bytes; split it up")
            principal = await self._principal(scope)
            principal.require(Role.operator)
            key = service.check_idempotency_key(_header(scope, b"idempotency-key"))
        except Unavailable:
            raise  # a fault, not a refusal: logged with a request id by the guard
        except DomainError as exc:
            await self._refuse(receive, send, exc)
            return
        try:
            raw = await self._body(receive)
            # Small bodies inline: a thread hop costs more than spooling one event.
            ws = principal.workspace_id
            if len(raw) > INLINE_BYTES:
                payload = await asyncio.to_thread(self._accept_large, ws, raw, key)
            else:
                payload = self._accept(ws, raw, key).payload()
        except Unavailable:
            raise
        except TooLarge as exc:
            await send_domain_error(send, exc, close=True)  # the rest of the body is unread
            return
        except DomainError as exc:
            await send_domain_error(send, exc)
            return
        await send_json(send, 202, payload)

    async def _refuse(self, receive: Receive, send: Send, exc: DomainError) -> None:
        """Answer a refusal made before the body was read, once the body is read and dropped
        (``kit.asgi.drain``): the keep-alive connection stays usable."""
        complete = not isinstance(exc, TooLarge) and await drain(receive, self.max_body)
        await send_domain_error(send, exc, close=not complete)


def _declared_length(scope: Scope) -> int:
    value = _header(scope, b"content-length")
    return int(value) if value is not None and value.isdigit() else 0


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
