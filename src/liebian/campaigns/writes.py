"""How a group join or an assist help reaches the database: the fission write hot path.

Both the FastAPI routes (campaigns/api.py) and the lean ASGI path (campaigns/fast_path.py)
come here with a validated request and an authenticated principal. The unit of work —
``groups.join_group`` / ``assists.help_assist`` plus the workspace's base URL — is the same on
every database; what differs is how it is committed:

- **SQLite**: through the process's group commit (``kit.group_commit``): one writer thread
  runs queued joins and helps back to back in one transaction, a savepoint each, and commits
  once per batch. Writes are serialized by SQLite anyway; this saves each of them a
  transaction of its own. Decision 0009.
- **PostgreSQL**: a transaction per request in a worker thread (row locks let joins of
  different groups run side by side).

Either way the caller is answered only after the commit that made its answer true.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from sqlalchemy.orm import Session

from liebian.app.runtime import Runtime
from liebian.campaigns import assists, groups
from liebian.kit.auth import Principal
from liebian.kit.db import session_scope
from liebian.kit.group_commit import GroupCommit
from liebian.links.domains import DOMAINS_CHANGED, public_base_url

T = TypeVar("T")


async def run(runtime: Runtime, work: Callable[[Session], T]) -> T:
    """``work(session)`` committed, from the event loop."""
    committer = _group_commit(runtime)
    if committer is not None:
        return await committer.run(work)
    return await anyio.to_thread.run_sync(_in_own_transaction, runtime, work)


def _in_own_transaction(runtime: Runtime, work: Callable[[Session], T]) -> T:
    with session_scope(runtime.sessions) as session:
        return work(session)


_SETUP_LOCK = threading.Lock()


def _group_commit(runtime: Runtime) -> GroupCommit | None:
    if runtime.engine.dialect.name != "sqlite":
        return None
    committer = runtime.extras.get("campaigns.group_commit")
    if committer is None:
        with _SETUP_LOCK:  # one writer per runtime (per database file and process)
            committer = runtime.extras.setdefault(
                "campaigns.group_commit", GroupCommit(runtime.sessions)
            )
    return committer


def join_work(
    runtime: Runtime, principal: Principal, group_id: str, external_id: str
) -> Callable[[Session], tuple[groups.GroupView, str]]:
    """The unit of work of ``POST /groups/{id}/join``: the group after the join, and the
    workspace's public base URL (for its share link)."""

    def work(session: Session) -> tuple[groups.GroupView, str]:
        group = groups.join_group(
            session, runtime.cipher, principal.workspace_id, group_id, external_id
        )
        return group, _base_urls(runtime).get(session, principal.workspace_id)

    return work


def help_work(
    runtime: Runtime,
    principal: Principal,
    assist_id: str,
    external_id: str,
    *,
    visitor_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> Callable[[Session], tuple[assists.AssistView, str]]:
    """The unit of work of ``POST /assists/{id}/help``."""

    def work(session: Session) -> tuple[assists.AssistView, str]:
        assist = assists.help_assist(
            session, runtime.cipher, principal.workspace_id, assist_id, external_id,
            visitor_id=visitor_id, ip=ip, user_agent=user_agent,
        )  # fmt: skip
        return assist, _base_urls(runtime).get(session, principal.workspace_id)

    return work


class _BaseUrls:
    """Each workspace's public base URL (``links.domains.public_base_url``), remembered until a
    domain of that workspace changes (``domains.changed``, which scale mode relays between
    processes) and for a minute at most: the hot path does not re-read the domains table for
    every reply."""

    TTL = 60.0

    def __init__(self, runtime: Runtime) -> None:
        self.default = runtime.settings.base_url
        self._entries: dict[str, tuple[str, float]] = {}
        # Bumped by every change: a value read before a change is not stored after it.
        self._generation = 0
        self._lock = threading.Lock()
        runtime.bus.subscribe(DOMAINS_CHANGED, self.drop)

    def get(self, session: Session, workspace_id: str) -> str:
        hit = self._entries.get(workspace_id)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        generation = self._generation
        base = public_base_url(session, workspace_id, self.default)
        with self._lock:  # compare and store in one step: a drop lands before or after both
            if generation == self._generation:
                self._entries[workspace_id] = (base, time.monotonic() + self.TTL)
        return base

    def drop(self, workspace_id: object) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(str(workspace_id), None)


def _base_urls(runtime: Runtime) -> _BaseUrls:
    cache = runtime.extras.get("campaigns.base_urls")
    if cache is None:
        with _SETUP_LOCK:  # one cache (and one bus subscription) per runtime
            cache = runtime.extras.setdefault("campaigns.base_urls", _BaseUrls(runtime))
    return cache
