"""Small builders for the segments tests: a workspace with a key, contacts, tags, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from liebian.app.runtime import Runtime
from liebian.events.store import EventRow
from liebian.kit.db import session_scope
from liebian.kit.ids import new_id

_n = count()


def workspace(runtime: Runtime, role: str = "owner") -> tuple[str, dict[str, str]]:
    from liebian.kit.auth import Role
    from liebian.workspaces.service import create_api_key, create_workspace

    with session_scope(runtime.sessions) as session:
        ws = create_workspace(session, f"ws{next(_n)}")
        _key, plaintext = create_api_key(session, ws.id, Role(role))
        return ws.id, {"Authorization": f"Bearer {plaintext}"}


def key(runtime: Runtime, ws: str, role: str) -> dict[str, str]:
    from liebian.kit.auth import Role
    from liebian.workspaces.service import create_api_key

    with session_scope(runtime.sessions) as session:
        _key, plaintext = create_api_key(session, ws, Role(role))
    return {"Authorization": f"Bearer {plaintext}"}


def contacts(runtime: Runtime, ws: str, externals: list[str], **cols: Any) -> dict[str, str]:
    """external id → contact id."""
    from liebian.contacts.models import Contact

    out = {}
    with session_scope(runtime.sessions) as session:
        for ext in externals:
            cid = new_id("ctc")
            session.add(Contact(id=cid, workspace_id=ws, external_id=ext, **cols))
            out[ext] = cid
    return out


def tag(
    runtime: Runtime,
    ws: str,
    name: str,
    members: list[str] = (),  # type: ignore[assignment]
    kind: str = "manual",
    condition: dict[str, Any] | None = None,
) -> str:
    from liebian.contacts.models import ContactTag, Tag

    tid = new_id("tag")
    with session_scope(runtime.sessions) as session:
        session.add(Tag(id=tid, workspace_id=ws, name=name, kind=kind, condition=condition))
        session.flush()
        for cid in members:
            session.add(ContactTag(workspace_id=ws, contact_id=cid, tag_id=tid, source="manual"))
    return tid


def events(runtime: Runtime, ws: str, *specs: tuple[str, str, float]) -> None:
    """(user_id, event, hours ago) rows straight into the event store."""
    now = datetime.now(UTC)
    assert runtime.event_store is not None
    runtime.event_store.insert(
        [
            EventRow(
                workspace_id=ws,
                event_id=new_id("evt"),
                event=name,
                user_id=user,
                visitor_id=f"v-{user}",
                ts=now - timedelta(hours=hours),
            )
            for user, name, hours in specs
        ]
    )
