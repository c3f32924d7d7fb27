"""0007_people on a database that already holds contacts: columns get their defaults, the new
tables exist, and a downgrade back to 0004 keeps the contacts — on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from liebian.migrations import downgrade, upgrade

PG_URL = os.environ.get("LIEBIAN_TEST_DATABASE_URL", "")
PEOPLE_TABLES = {
    "contact_aliases",
    "tag_groups",
    "tags",
    "contact_tags",
    "tag_changes",
    "attribute_defs",
    "contact_attributes",
    "contact_audit",
}


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/people.db"
        return
    admin = make_url(PG_URL)
    name = f"liebian_m_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def test_people_migration_keeps_existing_contacts(empty_url: str) -> None:
    upgrade(empty_url, "0004_campaigns")
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO workspaces (id, name, timezone, created_at) "
                    "VALUES ('ws_1', 'w', 'Asia/Shanghai', CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO contacts (id, workspace_id, external_id, created_at, updated_at)"
                    " VALUES ('ctc_1', 'ws_1', 'u1', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        upgrade(empty_url, "0007_people")
        assert set(inspect(engine).get_table_names()) >= PEOPLE_TABLES
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT orders_count, gmv_cents, invites_made, invites_qualified, erased_at "
                    "FROM contacts WHERE id = 'ctc_1'"
                )
            ).one()
        assert tuple(row) == (0, 0, 0, 0, None)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO contact_aliases (workspace_id, kind, value, contact_id, created_at)"
                    " VALUES ('ws_1', 'visitor_id', 'v1', 'ctc_1', CURRENT_TIMESTAMP)"
                )
            )
        with pytest.raises(IntegrityError), engine.begin() as conn:  # one person per alias
            conn.execute(
                text(
                    "INSERT INTO contact_aliases (workspace_id, kind, value, contact_id, created_at)"
                    " VALUES ('ws_1', 'visitor_id', 'v1', 'ctc_1', CURRENT_TIMESTAMP)"
                )
            )
        engine.dispose()
        downgrade(empty_url, "0004_campaigns")
        assert not PEOPLE_TABLES & set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            assert conn.execute(text("SELECT external_id FROM contacts")).scalar() == "u1"
    finally:
        engine.dispose()
