"""FastAPI dependencies: the request boundary owns the transaction and the principal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from liebian.app.runtime import Runtime
from liebian.kit.auth import Principal
from liebian.kit.errors import RateLimited, Unauthorized
from liebian.workspaces import service as workspaces
from liebian.workspaces.key_cache import KeyCache


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


# Methods whose routes only read: their session never waits for the SQLite writer lock.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """Commit when the handler returns, roll back when it raises: nothing half-written.

    A GET/HEAD request gets a read-only session (kit/db.py): on SQLite it reads a snapshot
    without the writer lock, so a page view never queues behind writers; should such a route
    write after all, the session upgrades safely (decision 0013)."""
    runtime = get_runtime(request)
    factory = runtime.read_sessions if request.method in READ_METHODS else runtime.sessions
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def bearer_token(header: str) -> str:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send your API key as 'Authorization: Bearer lb_…'")
    return token


def lookup_key(runtime: Runtime) -> Callable[[str], Principal]:
    """The database look-up of a key (a read-only session: never the writer lock), for
    ``KeyCache.resolve``; call it from a worker thread."""

    def lookup(token: str) -> Principal:
        with runtime.read_sessions() as session:
            return workspaces.authenticate(session, token)

    return lookup


def get_principal(request: Request) -> Principal:
    token = bearer_token(request.headers.get("authorization", ""))
    runtime = get_runtime(request)
    cache: KeyCache = runtime.extras["key_cache"]
    # A short session of its own: authentication must not share the handler's transaction.
    principal = cache.resolve(token, lookup_key(runtime))
    request.state.principal = principal
    return principal


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
# scope="function": commit before the response is sent, so a client that reads right after a
# write sees it, and a failed commit is an error reply rather than a lie.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


class ParticipantPageLimited(RateLimited):
    """Too many participant-page requests: answered as a Chinese HTML page (app/errors.py)."""


async def participant_rate_limit(request: Request) -> None:
    """The public rate limits (per IP, per returning visitor; kit/ratelimit.py) for the
    participant pages /p /g /a, shared with the redirect and /collect."""
    import time

    from liebian.kit.client_ip import client_ip
    from liebian.kit.ratelimit import limiter_for

    runtime = get_runtime(request)
    limiter = runtime.extras.get("limiter") or runtime.extras.setdefault(
        "limiter", limiter_for(runtime.settings)
    )
    ip = client_ip(request.scope, runtime.settings.trusted_proxies)
    wait = await limiter.visit(ip, request.cookies.get("lb_vid"), time.time())
    if wait:
        raise ParticipantPageLimited("访问太频繁，请稍后再试", retry_after=int(wait) + 1)
