"""FastAPI dependencies: the request boundary owns the transaction and the principal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from liebian.app.runtime import Runtime
from liebian.kit.auth import Principal
from liebian.kit.client_ip import client_ip
from liebian.kit.clock import utcnow
from liebian.kit.errors import DomainError, Forbidden, RateLimited, Unauthorized
from liebian.team import permissions as team_permissions
from liebian.team import service as team
from liebian.team.audit import AUDIT_KEY, AuditContext, record_attempt
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
    reading = request.method in READ_METHODS
    factory = runtime.read_sessions if reading else runtime.sessions
    session = factory()
    # The audit hook (team/audit.py) records what this transaction changes, by whom.
    audit = audit_context(request, runtime)
    audit.force = reading and is_export(request.url.path)
    session.info[AUDIT_KEY] = audit
    try:
        yield session
        session.commit()
    except BaseException as exc:
        session.rollback()
        if isinstance(exc, DomainError) and not reading:
            record_attempt(
                runtime.sessions,
                audit,
                outcome="denied" if exc.status in (401, 403) else "failed",
                status=exc.status,
                detail={"error": exc.code},
            )
        raise
    finally:
        session.close()


def audit_context(request: Request, runtime: Runtime) -> AuditContext:
    return AuditContext(
        request=request,
        ip=client_ip(request.scope, runtime.settings.trusted_proxies),
        user_agent=request.headers.get("user-agent", "")[:300],
    )


def is_export(path: str) -> bool:
    """Downloads of data (CSV, a person's export): recorded though they change nothing."""
    return path.endswith(".csv") or path.endswith("/export")


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
    """Who is asking: an API key (``Authorization: Bearer``; programs) or a console session
    (the ``lb_session`` cookie; people), as one ``Principal``. Then the one gate every
    request passes: a custom role reaches only the areas it holds (team/permissions.py). The
    domains check ranks and PII on the principal; sensitive operations ask
    ``principal.require_step_up``."""
    runtime = get_runtime(request)
    header = request.headers.get("authorization", "")
    cookie = request.cookies.get(team.SESSION_COOKIE)
    if header or not cookie:
        token = bearer_token(header)
        cache: KeyCache = runtime.extras["key_cache"]
        # A short session of its own: authentication must not share the handler's transaction.
        ip = client_ip(request.scope, runtime.settings.trusted_proxies)
        principal = cache.resolve(token, lookup_key(runtime), ip)
    else:
        principal = session_principal(request, runtime, cookie)
    _check_area(request, principal)
    request.state.principal = principal
    return principal


def _check_area(request: Request, principal: Principal) -> None:
    """The one gate every request passes: a custom role reaches only the areas it holds."""
    if principal.permissions is not None:
        needed = team_permissions.needed(request.url.path, request.method)
        if needed is None or (needed and needed not in principal.permissions):
            raise Forbidden(
                f"your role does not include '{needed or 'this area'}'",
                code="insufficient_permission",
                details={"permission": needed},
            )


async def principal_on_loop(request: Request) -> Principal:
    """``get_principal`` without a worker-thread trip when the answer is already known: a
    cached key, or a refusal the key cache remembers (a wrong key repeated, a string not
    shaped like a key) — a dict lookup and a hash, fine on the event loop. Anything else
    (a key to look up, a console session) takes ``get_principal`` in a worker thread.

    Every API request used to hand its principal to a worker thread and back: ~0.1 ms of the
    event loop each, which the redirect waits behind under an API flood (issue 9)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        cache: KeyCache = request.app.state.runtime.extras["key_cache"]
        principal = cache.get(token)
        if principal is not None:
            _check_area(request, principal)
            request.state.principal = principal
            return principal
        runtime: Runtime = request.app.state.runtime
        ip = client_ip(request.scope, runtime.settings.trusted_proxies)
        refused = cache.refusal_for(token, ip)
        if refused is not None:
            raise refused
    return await run_in_threadpool(get_principal, request)


async def runtime_on_loop(request: Request) -> Runtime:
    """``get_runtime`` as a coroutine: an attribute read needs no worker thread."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def session_principal(request: Request, runtime: Runtime, cookie: str) -> Principal:
    """A console session, read on every request (a role change holds from the next one).
    State-changing requests must carry the session's CSRF token in ``X-CSRF-Token``."""
    with runtime.read_sessions() as session:
        principal, row = team.principal_for_session(session, cookie, utcnow())
        pending = row.pending_totp
    if request.method not in READ_METHODS:
        import hmac

        sent = request.headers.get(team.CSRF_HEADER, "")
        expected = team.csrf_for(runtime.secret, cookie)
        if not sent or not hmac.compare_digest(sent, expected):
            raise Forbidden(
                "missing or wrong CSRF token: send the lb_csrf cookie's value in X-CSRF-Token",
                code="csrf_failed",
            )
    if pending and not request.url.path.startswith("/api/v1/auth/"):
        raise Unauthorized(
            "this workspace requires your authenticator code at sign-in: "
            "POST /api/v1/auth/step-up first",
            code="totp_required",
        )
    return principal


RuntimeDep = Annotated[Runtime, Depends(runtime_on_loop)]
# scope="function": commit before the response is sent, so a client that reads right after a
# write sees it, and a failed commit is an error reply rather than a lie.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(principal_on_loop)]


# Set in the ASGI scope by a path that already applied the participant-page limits to the
# request before handing it to the routes.
LIMIT_CHECKED = "liebian.page_limit_checked"


class ParticipantPageLimited(RateLimited):
    """Too many participant-page requests: answered as a Chinese HTML page (app/errors.py)."""

    def page(self) -> HTMLResponse:
        """The answer a phone sees (the error handler's, and the lean page path's)."""
        from liebian.kit.page_security import PAGE_HEADERS
        from liebian.redirect.pages import TOO_MANY

        headers = {**self.headers(), **PAGE_HEADERS, "cache-control": "no-store"}
        return HTMLResponse(TOO_MANY, status_code=429, headers=headers)


async def participant_rate_limit(request: Request) -> None:
    """The public rate limits (per IP, per returning visitor; kit/ratelimit.py) for the
    participant pages /p /g /a, shared with the redirect and /collect."""
    import time

    from liebian.kit.client_ip import client_ip
    from liebian.kit.ratelimit import limiter_for

    if request.scope.get(LIMIT_CHECKED):
        return  # counted already by the lean page path (campaigns/page_fast_path.py)
    runtime = get_runtime(request)
    limiter = runtime.extras.get("limiter") or runtime.extras.setdefault(
        "limiter", limiter_for(runtime.settings)
    )
    ip = client_ip(request.scope, runtime.settings.trusted_proxies)
    wait = await limiter.visit(ip, request.cookies.get("lb_vid"), time.time())
    if wait:
        raise ParticipantPageLimited("访问太频繁，请稍后再试", retry_after=int(wait) + 1)
