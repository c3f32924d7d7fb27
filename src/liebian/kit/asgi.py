"""What the framework-free ASGI paths (ingestion, joins and helps) share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from liebian.kit.errors import DomainError

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def drain(receive: Receive, limit: int) -> bool:
    """Read and drop the request's body, at most ``limit`` bytes of it: True when it was all
    read (or the client went away), False when it is larger.

    For refusals made before the body is read (a bad key, say). Answered at once, the server
    would have to drop the keep-alive connection while the body is still arriving, and a
    client reusing it sees its next request fail unanswered
    (tests/events/test_ingest_keepalive.py)."""
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return True
        size += len(message.get("body", b""))
        if size > limit:
            return False
        if not message.get("more_body", False):
            return True


async def send_json(
    send: Send, status: int, body: bytes, extra: dict[str, str] | None = None
) -> None:
    """Answer with ``body``, already JSON-encoded, in one start and one body message."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if extra:
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_domain_error(send: Send, exc: DomainError, *, close: bool = False) -> None:
    """A domain error in the API's shape, with its headers (``Retry-After`` for 429/503).

    ``close`` when the request's body was left unread (over the size limit): the server
    cannot reuse the connection then, and says so, so a keep-alive client opens a new one
    instead of sending its next request into a connection about to be dropped (see
    ``drain``)."""
    headers = exc.headers()
    if close:
        headers = {**(headers or {}), "connection": "close"}
    await send_json(send, exc.status, orjson.dumps(exc.to_body()), headers)
