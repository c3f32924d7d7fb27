"""FastAPI dependencies: the request boundary owns the transaction and the principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from liebian.app.runtime import Runtime
from liebian.kit.auth import Principal
from liebian.kit.errors import Unauthorized
from liebian.workspaces import service as workspaces
from liebian.workspaces.key_cache import KeyCache


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_session(request: Request) -> Iterator[Session]:
    """Commit when the handler returns, roll back when it raises: nothing half-written."""
    session = get_runtime(request).sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send your API key as 'Authorization: Bearer lb_…'")
    runtime = get_runtime(request)
    cache: KeyCache = runtime.extras["key_cache"]
    token = token.strip()
    principal = cache.get(token)
    if principal is None:
        # A short session of its own: authentication must not share the handler's transaction.
        with runtime.sessions() as session:
            principal = workspaces.authenticate(session, token)
        cache.put(token, principal)
    request.state.principal = principal
    return principal


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
# scope="function": commit before the response is sent, so a client that reads right after a
# write sees it, and a failed commit is an error reply rather than a lie.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
