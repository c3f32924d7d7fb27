"""Builders shared by the people tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from liebian.contacts import service as contacts
from liebian.events.store import EventRow
from liebian.kit.db import session_scope

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def ws_of(client: Any, headers: dict[str, str]) -> str:
    resp = client.get("/api/v1/workspace", headers=headers)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def person(runtime: Any, ws: str, external_id: str, **pii: Any) -> str:
    with session_scope(runtime.sessions) as session:
        c = contacts.upsert(session, runtime.cipher, ws, contacts.ContactInput(external_id, **pii))
        return c.id


def tag(client: Any, headers: dict[str, str], name: str, **extra: Any) -> str:
    resp = client.post("/api/v1/tags", json={"name": name, **extra}, headers=headers)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def events(runtime: Any, ws: str, user_id: str, n: int, start: datetime = T0, **kw: Any) -> None:
    runtime.event_store.insert(
        [
            EventRow(ws, f"{user_id}-{i}", "page_view", start + timedelta(minutes=i),
                     user_id=user_id, **kw)
            for i in range(n)
        ]
    )  # fmt: skip
