"""Contacts: one person per (workspace, external_id), PII encrypted at rest, masked by role."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from liebian.contacts import service as contacts
from liebian.kit.db import session_scope
from liebian.kit.errors import Invalid
from testkit import make_key


def _ws(client: Any, owner: dict[str, str]) -> str:
    return str(client.get("/api/v1/workspace", headers=owner).json()["id"])


def test_upsert_is_one_person_and_pii_is_encrypted(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws = _ws(client, owner)
    with session_scope(runtime.sessions) as session:
        first = contacts.upsert(
            session, runtime.cipher, ws,
            contacts.ContactInput("u1", email="Wang.Xiao+shop@Gmail.com", phone="+86 138-1234-5678", nickname="王小明"),
        )  # fmt: skip
        again = contacts.upsert(
            session, runtime.cipher, ws, contacts.ContactInput("u1", phone="13900000000")
        )
        assert again.id == first.id
        # Known identity data is never overwritten by a later call.
        assert runtime.cipher.decrypt(again.phone_enc) == "13812345678"
        other = contacts.upsert(
            session, runtime.cipher, ws, contacts.ContactInput("u2", email="wangxiao@gmail.com")
        )
        # Same mailbox after normalization → same lookup hash (fraud checks compare these).
        assert other.email_hash == first.email_hash and other.email_hash is not None
    with runtime.engine.connect() as conn:
        raw = " ".join(str(v) for row in conn.execute(text("SELECT * FROM contacts")) for v in row)
    assert "13812345678" not in raw and "Gmail" not in raw and "王小明" not in raw


def test_bad_input_writes_nothing(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = _ws(client, owner)
    for data in (
        contacts.ContactInput(""),
        contacts.ContactInput("x" * 200),
        contacts.ContactInput("u", email="nope"),
    ):
        with pytest.raises(Invalid), session_scope(runtime.sessions) as session:
            contacts.upsert(session, runtime.cipher, ws, data)
    with runtime.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM contacts")).scalar() == 0


def test_masked_unless_role_may_see_pii(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = _ws(client, owner)
    with session_scope(runtime.sessions) as session:
        contacts.upsert(
            session, runtime.cipher, ws,
            contacts.ContactInput("u1", email="alice@example.com", phone="13812345678", nickname="王小明"),
        )  # fmt: skip
    full = client.get("/api/v1/contacts/u1", headers=owner).json()
    assert (full["phone"], full["email"], full["nickname"]) == (
        "13812345678",
        "alice@example.com",
        "王小明",
    )
    _, analyst = make_key(runtime, "analyst", ws)
    masked = client.get("/api/v1/contacts/u1", headers=analyst).json()
    assert (masked["phone"], masked["email"], masked["nickname"]) == (
        "138****5678",
        "a***@example.com",
        "王**",
    )
    _, stranger = make_key(runtime, "owner")
    assert client.get("/api/v1/contacts/u1", headers=stranger).status_code == 404
