"""Unexpected failures on the framework-free paths: logged with a request id, answered in shape.

The lean ASGI apps (redirect, ingestion, joins/helps) sit in front of FastAPI, so its error
handlers never see what they raise. Each wraps its request in :func:`guard`, which turns any
exception that escaped into

- one log line with the request id, the method and path, and the traceback;
- an answer in the path's own shape: ``{"error": {code, message, details: {request_id}}}`` for
  the API paths, a Chinese page for the participant-facing ones (``html_page``);
- ``503`` with ``Retry-After`` when the fault is transient (the database unreachable or busy,
  a full disk, a queue at its bound), ``500`` otherwise (a bug);
- nothing more once the answer has begun (the client then sees a cut response; the log line
  is what remains).

The request id is the client's ``X-Request-Id`` when it sent a sane one, otherwise a new
``req_…`` id, and it comes back in the answer's ``x-request-id`` header.
"""

from __future__ import annotations

import errno
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import orjson
from sqlalchemy import exc as sa_exc

from liebian.kit.errors import DomainError, Unavailable
from liebian.kit.ids import new_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("liebian.faults")

RETRY_AFTER_SECONDS: Final = 1
REQUEST_ID_HEADER: Final = b"x-request-id"
_SANE_ID: Final = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")

# A disk that is full or failing, too many open files: the next try may well succeed.
_TRANSIENT_ERRNOS: Final = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.EROFS}
)


def request_id(scope: Scope) -> str:
    """The client's ``X-Request-Id`` when sane, else a new ``req_…`` id."""
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER and _SANE_ID.match(value):
            return str(value.decode("ascii"))
    return new_id("req")


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may succeed without anyone changing anything."""
    if isinstance(exc, Unavailable):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError | TimeoutError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return _sqlite_transient(exc)
    if type(exc).__module__.startswith("psycopg") and type(exc).__name__ == "OperationalError":
        return True  # PostgreSQL unreachable or restarting (psycopg is an optional import)
    if isinstance(exc, ConnectionError):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


# SQLite's result codes for a database that is busy or briefly failing (not "no such table").
_SQLITE_TRANSIENT: Final = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_PROTOCOL",
    "SQLITE_NOMEM",
)


def _sqlite_transient(exc: sqlite3.OperationalError) -> bool:
    name = getattr(exc, "sqlite_errorname", None)
    if name is None:  # raised by us (the in-process writer queue), not by SQLite
        return "locked" in str(exc)
    return str(name).startswith(_SQLITE_TRANSIENT)


def error_answer(exc: BaseException, rid: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and extra headers for an unexpected failure."""
    headers = {"x-request-id": rid}
    if is_transient(exc):
        if isinstance(exc, DomainError):
            body = exc.to_body()
            if exc.details is None or isinstance(exc.details, dict):
                body["error"]["details"] = {**(exc.details or {}), "request_id": rid}
            return exc.status, body, {**headers, **exc.headers()}
        headers["retry-after"] = str(RETRY_AFTER_SECONDS)
        message = "the service is busy or briefly unavailable; try again in a moment"
        return 503, _body("unavailable", message, rid), headers
    return 500, _body("internal", "an unexpected error occurred; it has been logged", rid), headers


def _body(code: str, message: str, rid: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": {"request_id": rid}}}


def log_failure(exc: BaseException, scope: Scope, rid: str) -> None:
    """One line per failure: ERROR with the traceback for a bug, WARNING for a transient
    fault (a deliberate refusal such as a full queue without the traceback)."""
    level = logging.WARNING if is_transient(exc) else logging.ERROR
    cause = exc.__cause__ if isinstance(exc, DomainError) else None
    log.log(
        level,
        "request %s %s %s failed: %s: %s",
        rid,
        scope.get("method", "-"),
        scope.get("path", "-"),
        type(exc).__name__,
        exc,
        exc_info=None if isinstance(exc, DomainError) and cause is None else exc,
    )


async def guard(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    html_page: Callable[[int, str], bytes] | None = None,
) -> None:
    """Run ``app``; answer and log whatever escapes it (see the module's note)."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except Exception as exc:
        rid = request_id(scope)
        log_failure(exc, scope, rid)
        if started:
            return  # the answer has begun: nothing more can be said to this client
        status, body, extra = error_answer(exc, rid)
        if html_page is not None:
            payload = html_page(status, rid)
            content_type = b"text/html; charset=utf-8"
        else:
            payload = orjson.dumps(body)
            content_type = b"application/json"
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(payload)).encode()),
            (b"cache-control", b"no-store"),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()),
        ]
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        except Exception:
            log.warning("request %s: could not send the error answer", rid, exc_info=True)
