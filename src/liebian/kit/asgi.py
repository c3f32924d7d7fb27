"""What the framework-free ASGI paths (ingestion, joins and helps) share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from liebian.kit.errors import DomainError

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


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


async def send_domain_error(send: Send, exc: DomainError) -> None:
    """A domain error in the API's shape, with its headers (``Retry-After`` for 429/503)."""
    await send_json(send, exc.status, orjson.dumps(exc.to_body()), exc.headers())
