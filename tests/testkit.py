"""Helpers shared by test modules (imported as ``testkit``: a unique top-level name, unlike the
several ``conftest`` modules pytest loads)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from liebian.app.runtime import Runtime

TEST_SECRET = "11" * 32


def make_key(
    runtime: Runtime, role: str, workspace_id: str | None = None
) -> tuple[str, dict[str, str]]:
    """A key of ``role`` in a new (or the given) workspace: (workspace_id, headers)."""
    from liebian.kit.auth import Role
    from liebian.kit.db import session_scope
    from liebian.workspaces.service import create_api_key, create_workspace

    with session_scope(runtime.sessions) as session:
        ws_id = workspace_id or create_workspace(session, "another").id
        _key, plaintext = create_api_key(session, ws_id, Role(role))
    return ws_id, {"Authorization": f"Bearer {plaintext}"}


def errors_in_threads(
    call: Callable[[], object], n: int, *, timeout: float = 60.0
) -> list[BaseException]:
    """Run ``call`` in ``n`` threads at once; what they raised (an assert in a thread must fail
    the test, not vanish into the thread's own traceback)."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors
