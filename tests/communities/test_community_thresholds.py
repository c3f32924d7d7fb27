"""The activity (joined a named campaign) and purchase (ordered at least once) thresholds:
refused with the reason until the person qualifies, nothing taken; then a place. An
invitation code that belongs to no member is refused too. SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "campaigns"))

from fission_helpers import INVITE, create, join

from liebian.communities import service
from liebian.communities.models import Community, CommunityGroup, CommunityMember
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact
from liebian.contacts.repository import by_external_id
from liebian.kit.db import session_scope


def _entrant(contact_id: str | None, n: int) -> service.Entrant:
    return service.Entrant(contact_id or f"v:visitor{n}", contact_id, None, f"visitor{n}", "wechat")


def test_activity_and_purchase_thresholds(client: Any, owner: dict[str, str], runtime: Any) -> None:
    h = owner
    campaign = create(client, h, "invite", INVITE)
    assert join(client, h, campaign, "mom-in").status_code in (200, 201)
    ids = {}
    for kind, config in (("activity", {"campaign_id": campaign}), ("purchase", {"min_orders": 1}),
                         ("invitation", {})):  # fmt: skip
        cid = client.post("/api/v1/communities", headers=h, json={
            "name": kind, "threshold": kind, "threshold_config": config}).json()["id"]  # fmt: skip
        client.post(f"/api/v1/communities/{cid}/groups", headers=h, json={"name": f"{kind}群"})
        ids[kind] = cid
    with session_scope(runtime.sessions) as session:
        ws = session.get(Community, ids["activity"]).workspace_id  # type: ignore[union-attr]
        for external in ("mom-out", "buyer"):
            contacts.upsert(session, runtime.cipher, ws, contacts.ContactInput(external))
        who = {e: by_external_id(session, ws, e) for e in ("mom-in", "mom-out", "buyer")}
        contact = {e: c.id for e, c in who.items() if c is not None}
        assert set(contact) == {"mom-in", "mom-out", "buyer"}

    def enter(kind: str, external: str | None, n: int, code: str | None = None) -> Any:
        with session_scope(runtime.sessions) as session:
            community = session.get(Community, ids[kind])
            assert community is not None
            return service.check_threshold(
                session, community, _entrant(contact.get(external or ""), n), code
            )

    refusals = [
        ("activity", None, "sign_in_required"), ("activity", "mom-out", "activity_required"),
        ("purchase", None, "sign_in_required"), ("purchase", "buyer", "purchase_required"),
        ("invitation", "mom-out", "invite_required"),
    ]  # fmt: skip
    for n, (kind, external, code) in enumerate(refusals):
        with pytest.raises(service.EntryRefused) as refused:
            enter(kind, external, n, "NOPE" if kind == "invitation" else None)
        assert refused.value.code == code
    assert enter("activity", "mom-in", 10) is None  # joined the campaign: may enter
    with session_scope(runtime.sessions) as session:
        buyer = session.get(Contact, contact["buyer"])
        assert buyer is not None
        buyer.orders_count = 1
    assert enter("purchase", "buyer", 11) is None
    with session_scope(runtime.sessions) as session:  # refusals took no place
        assert session.query(CommunityMember).count() == 0
        assert {g.members for g in session.query(CommunityGroup)} == {0}
