"""kit.db.raise_sqlite_cache: a transaction's SQLite connection keeps more pages while it runs
and has its own cache size back once it returns to the pool (the hooks worker's batches,
decision 0057); elsewhere nothing changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from liebian.kit.db import make_engine, make_session_factory, raise_sqlite_cache, session_scope


def _cache_size(session: Any) -> int:
    return int(session.connection().exec_driver_sql("PRAGMA cache_size").scalar())


def test_the_raised_cache_lasts_until_the_connection_goes_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}", pool_size=1, max_overflow=0)
    sessions = make_session_factory(engine)
    try:
        with session_scope(sessions) as session:
            default = _cache_size(session)
        assert default != -65536
        with session_scope(sessions) as session:
            raise_sqlite_cache(session, 65536)
            raise_sqlite_cache(session, 65536)  # twice: the size to go back to is kept once
            assert _cache_size(session) == -65536
            session.execute(text("CREATE TABLE t (n INTEGER)"))
        # pool_size=1: the same connection again, its cache back to what it was.
        with session_scope(sessions) as session:
            assert _cache_size(session) == default
        # A transaction that fails gives the connection back with its size too.
        with pytest.raises(RuntimeError), session_scope(sessions) as session:
            raise_sqlite_cache(session, 32768)
            assert _cache_size(session) == -32768
            raise RuntimeError("rolled back")
        with session_scope(sessions) as session:
            assert _cache_size(session) == default
    finally:
        engine.dispose()


def test_the_hooks_worker_raises_the_cache_of_its_batches(runtime: Any) -> None:
    """On SQLite the batch's connection has the hooks' cache while the consumers run; on
    PostgreSQL the call changes nothing (no PRAGMA is sent)."""
    from liebian.events import hooks

    seen: list[int | None] = []

    class Probe:
        name = "probe"
        events = frozenset({"signup"})

        def __call__(self, session: Any, events: Any) -> None:
            if session.get_bind().dialect.name == "sqlite":
                seen.append(_cache_size(session))
            else:
                seen.append(None)

    worker = runtime.extras.get("event_hooks_worker")
    registry = hooks.HookRegistry()
    registry.register(Probe())
    queue = hooks.open_hooks(runtime.settings.spool_dir / "probe", registry)
    probe_worker = hooks.HookWorker(queue, runtime.sessions)
    from liebian.kit.clock import utcnow
    from liebian.workspaces.service import bootstrap

    with session_scope(runtime.sessions) as session:
        workspace, _key = bootstrap(session, "缓存")
    event = {"event": "signup", "event_id": "s1", "user_id": "u1", "ts": utcnow()}
    queue.spool.append_line(queue.lines(workspace.id, [event], utcnow()))
    assert probe_worker.drain() == 1
    dialect = runtime.engine.dialect.name
    assert seen == ([-hooks.BATCH_CACHE_KIB] if dialect == "sqlite" else [None])
    assert worker is None or worker is not probe_worker
