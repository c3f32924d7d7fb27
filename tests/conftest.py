"""Shared fixtures: every storage-backed test runs on SQLite and, when
``LIEBIAN_TEST_DATABASE_URL`` points at a server, on PostgreSQL too.

PostgreSQL: each pytest process creates its own database from that URL (so parallel runs never
collide), migrates it once, and empties the tables before each test. SQLite: migrated once into a
template file that each test copies.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from liebian.app.runtime import Runtime
from liebian.kit.settings import Settings
from testkit import TEST_SECRET

# The event stores' ``store`` fixture (DuckDB and chdb), for every directory that asks for it.
pytest_plugins = ["event_store_support"]

PG_URL = os.environ.get("LIEBIAN_TEST_DATABASE_URL", "")


def _patient(call: Any) -> Any:
    @functools.wraps(call)
    def with_time(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 60.0)
        return call(*args, **kwargs)

    return with_time


# Tests' one-off requests (``httpx.post(server + ...)`` beside a live server) wait up to 60 s,
# not httpx's 5 s: on two shared cores at load 12 a browser test's setup request timed out
# (segments/test_builder_page.py). A test that means a deadline passes its own timeout.
for _name in ("request", "get", "post", "put", "patch", "delete", "head", "options"):
    setattr(httpx, _name, _patient(getattr(httpx, _name)))
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from liebian.migrations import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[tuple[str, _Emptier]]:
    from liebian.migrations import upgrade

    admin = make_url(PG_URL)
    name = f"liebian_t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    emptier = _Emptier(url)
    try:
        yield url, emptier
    finally:
        emptier.engine.dispose()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


class _Emptier:
    """Empties every table of a test database between tests.

    DELETE in foreign-key order, not TRUNCATE: a test leaves a few rows in a few of ~50 tables,
    and TRUNCATE makes new files for every table (~0.3 s a test, against ~2 ms)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, pool_size=1)
        meta = MetaData()
        meta.reflect(self.engine)
        self.tables = [t.name for t in reversed(meta.sorted_tables) if t.name != "alembic_version"]
        with self.engine.connect() as conn:
            self.sequences = [
                row[0]
                for row in conn.execute(
                    text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
                )
            ]

    def empty(self, lock_timeout: str = "15s") -> None:
        """Empty every table. A connection an earlier test left inside a transaction (a thread
        it never stopped) would make the DELETEs wait for good: after ``lock_timeout`` the
        wait ends, the sessions of this database are printed (a test's bug to find) and
        ended, and it goes again."""
        script = " ".join(f'DELETE FROM "{name}";' for name in self.tables)
        script += " ".join(f'ALTER SEQUENCE "{name}" RESTART;' for name in self.sequences)
        try:
            self._run(script, lock_timeout)
        except OperationalError as exc:
            if "lock timeout" not in str(exc):
                raise
            self._end_other_sessions()
            self._run(script, lock_timeout)

    def _run(self, script: str, lock_timeout: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": lock_timeout})
            conn.exec_driver_sql(script)

    def _end_other_sessions(self) -> None:
        with self.engine.begin() as conn:
            others = conn.execute(
                text(
                    "SELECT pid, state, application_name, left(query, 200) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
            for pid, state, app, query in others:
                print(
                    f"\nleft behind by an earlier test, ended: pid {pid} {state} {app!r} {query!r}"
                )
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        target = tmp_path / "liebian.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url, emptier = request.getfixturevalue("_pg_database")
    emptier.empty()
    return str(url)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        secret_key=TEST_SECRET,
        base_url="http://sho.rt",
        flush_interval=0.05,
        allow_private_webhooks=True,
        # Background jobs off by default: tests that check "pending" must not race the
        # settlement job. Scheduler and webhook tests turn them on themselves.
        jobs_interval=0,
        webhook_interval=0,
        segments_rebuild_interval=0,
        journeys_interval=0,
        gc_freeze=False,
        # Large batches are prepared in the request thread; tests/events/test_ingest_pool.py
        # runs the pool of processes itself.
        ingest_processes=0,
        # No test reaches the internet: WeCom API calls go nowhere unless a test starts the
        # loopback fake (tests/connectors/wecom_fake.py) and points this at it.
        wecom_api_base="http://127.0.0.1:9",
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.build(settings)
    yield rt
    rt.close()


@pytest.fixture
def client(settings: Settings, runtime: Runtime) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from liebian.app.factory import create_app

    app = create_app(settings, runtime)
    with TestClient(app, base_url="http://sho.rt", follow_redirects=False) as tc:
        yield tc


@pytest.fixture
def owner(runtime: Runtime) -> dict[str, str]:
    """Headers carrying a fresh workspace's owner key."""
    from liebian.kit.db import session_scope
    from liebian.workspaces.service import bootstrap

    with session_scope(runtime.sessions) as session:
        _ws, key = bootstrap(session, "测试工作区")
    return {"Authorization": f"Bearer {key}"}
