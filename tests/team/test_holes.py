"""The holes issue 15 names, each reproduced: an admin key revoking the owner's key, a
viewer's poster showing the nickname in clear, payouts.csv with no extra step."""

from __future__ import annotations

from typing import Any

import pytest

from liebian.campaigns import design as design_mod
from liebian.campaigns import poster as poster_mod
from testkit import make_key

INVITE = {
    "tiers": [{"invites": 1, "reward": {"kind": "coupon", "name": "5元券", "amount": 500}}],
    "qualifying_action": "signup",
}


def test_issue_15_holes(
    client: Any, owner: dict[str, str], runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = client.get("/api/v1/workspace", headers=owner).json()["id"]
    owner_key_id = client.get("/api/v1/keys", headers=owner).json()["items"][0]["id"]
    _, admin = make_key(runtime, "admin", ws)

    # 1. An admin key cannot revoke the owner's key (it was 200, then the owner got 401).
    refused = client.delete(f"/api/v1/keys/{owner_key_id}", headers=admin)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "insufficient_role"
    assert client.get("/api/v1/workspace", headers=owner).status_code == 200
    # ... while it still revokes keys of its own rank or below.
    made = client.post("/api/v1/keys", json={"role": "operator"}, headers=owner).json()
    assert client.delete(f"/api/v1/keys/{made['id']}", headers=admin).status_code == 200

    # 2. A viewer's or analyst's poster masks the nickname like every other reply.
    drawn: list[str | None] = []
    real = poster_mod.render_poster

    def spy(template: Any, content: Any, **kw: Any) -> bytes:
        drawn.append(content.nickname)
        return real(template, content, **kw)

    monkeypatch.setattr(poster_mod, "render_poster", spy)
    # The campaign's designed poster draws through campaigns/design.py's own reference.
    monkeypatch.setattr(design_mod, "render_poster", spy)
    made = client.post(
        "/api/v1/campaigns",
        json={"type": "invite", "name": "活动", "config": INVITE},
        headers=owner,
    )
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    joined = client.post(
        f"/api/v1/campaigns/{cid}/participants",
        json={"external_id": "alice", "nickname": "王小明"},
        headers=owner,
    )
    pid = joined.json()["participant_id"]
    path = f"/api/v1/campaigns/{cid}/participants/{pid}/poster.png"
    for role in ("viewer", "analyst"):
        _, headers = make_key(runtime, role, ws)
        assert client.get(path, headers=headers).status_code == 200
    assert client.get(path, headers=owner).status_code == 200
    assert drawn == ["王**", "王**", "王小明"]

    # 3. Payout export and marking paid need the extra step: an admin key (no second factor)
    # is refused with a clear code; the installation's owner key (made sensitive) is not.
    path = "/api/v1/payouts/batches/pob_01JAAAAAAAAAAAAAAAAAAAAAAA"
    export = client.get(f"{path}/export.csv", headers=admin)
    assert export.status_code == 403 and export.json()["error"]["code"] == "step_up_required"
    paid = client.post(
        f"{path}/outcomes", json={"all_pending": "paid"}, headers={**admin, "Idempotency-Key": "k"}
    )
    assert paid.status_code == 403 and paid.json()["error"]["code"] == "step_up_required"
    # (the owner key gets past the check: 404 for the batch that does not exist)
    assert client.get(f"{path}/export.csv", headers=owner).status_code == 404
    # A key made by an admin key without a second factor: refused too (creating keys is
    # sensitive); the owner key may make a sensitive key.
    assert client.post("/api/v1/keys", json={"role": "viewer"}, headers=admin).status_code == 403
    sensitive = client.post(
        "/api/v1/keys", json={"role": "admin", "sensitive": True}, headers=owner
    ).json()
    assert sensitive["sensitive"] is True
    batch_path = f"{path}/export.csv"
    headers = {"Authorization": f"Bearer {sensitive['key']}"}
    assert client.get(batch_path, headers=headers).status_code == 404
