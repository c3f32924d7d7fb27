"""Reject oversized bodies before they are read: a clear 413 instead of a slow failure.

And read what a route left unread: a route that refuses before it reads the body (a bad key
on an import, say) would otherwise leave the server to drop the keep-alive connection while
the body is still arriving, and a client reusing it would see its next request fail
unanswered (tests/events/test_ingest_keepalive.py)."""

from __future__ import annotations

import json
from typing import Any

_CLOSE = (b"connection", b"close")


class BodySizeLimit:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        # A body to come: declared with a length, or chunked.
        has_body = (declared is not None and declared != b"0") or b"transfer-encoding" in headers
        seen = 0
        too_big = False
        done = not has_body

        async def limited_receive() -> Any:
            nonlocal seen, too_big, done
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_big = True
                    raise _BodyTooLarge
                done = done or not message.get("more_body", False)
            else:  # the client went away
                done = True
            return message

        async def send_after_body(message: Any) -> None:
            nonlocal done
            if not done and message["type"] == "http.response.start":
                # Read and drop what the route left before answering: the server can only
                # keep a connection whose request it has read to the end.
                try:
                    while not done:
                        await limited_receive()
                except _BodyTooLarge:
                    done = True  # over the limit: the server drops the connection, as it must
                    message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_after_body)
        except _BodyTooLarge:
            if too_big:
                await self._reject(send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "too_large",
                    "message": f"request body is larger than {self.max_bytes} bytes; split it up",
                    "details": {"max_bytes": self.max_bytes},
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is unread: the connection cannot be reused.
                    _CLOSE,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass
