"""Every fission action lands in the event store once, with campaign, channel, participant and
referrer; the 数据 page's rates then come from those actions (SQLite and PostgreSQL OLTP, the
real DuckDB file)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fission_helpers import ASSIST_UNLOCK, GROUP_BUY, INVITE, create, join

ONE_INVITE = {**INVITE, "new_users_only": False, "risk": {"mode": "allow"}}


def _events(runtime: Any, campaign_id: str) -> list[tuple[Any, ...]]:
    runtime.flush_events()
    assert runtime.event_store is not None
    return runtime.event_store.query(
        "SELECT event, user_id, channel, properties, event_id, revenue FROM events"
        " WHERE campaign_id = $c ORDER BY ts, event",
        {"c": campaign_id},
    )


def test_invite_actions_are_events_once(client: Any, owner: dict[str, str], runtime: Any) -> None:
    cid = create(client, owner, "invite", ONE_INVITE)
    alice = join(client, owner, cid, "alice", channel="wechat_group").json()
    join(client, owner, cid, "bob", referrer_code=alice["invite_code"], channel="moments")
    join(client, owner, cid, "bob")  # a repeat join is no new action
    poster = client.get(
        f"/api/v1/campaigns/{cid}/participants/{alice['participant_id']}/poster.png", headers=owner
    )
    assert poster.status_code == 200
    rows = _events(runtime, cid)
    names = sorted(r[0] for r in rows)
    assert names == sorted([
        "campaign_join", "campaign_join", "invite", "invite_qualified", "share",
        "reward_issued", "reward_issued",  # alice's tier reward, bob's invitee coupon
    ])  # fmt: skip
    by = {(r[0], r[1]): r for r in rows}
    bob_join = by[("campaign_join", "bob")]
    assert bob_join[2] == "moments" and json.loads(bob_join[3])["referrer"] == "alice"
    assert by[("campaign_join", "alice")][2] == "wechat_group"
    invite = by[("invite", "alice")]
    assert json.loads(invite[3])["referee"] == "bob"
    assert by[("share", "alice")][2] == "wechat_group"
    assert len({r[4] for r in rows}) == len(rows)
    # Loading the spool again (a replay) stores nothing twice.
    assert len(_events(runtime, cid)) == len(rows)


def test_group_and_assist_actions(client: Any, owner: dict[str, str], runtime: Any) -> None:
    gid_campaign = create(
        client, owner, "group_buy", {**GROUP_BUY, "tiers": [{"size": 2, "price": 19_900}]}
    )
    group = client.post(
        f"/api/v1/campaigns/{gid_campaign}/groups",
        json={"leader_external_id": "lead"},
        headers=owner,
    ).json()
    joined = client.post(
        f"/api/v1/groups/{group['group_id']}/join", json={"external_id": "g2"}, headers=owner
    )
    assert joined.status_code == 200 and joined.json()["status"] == "success"
    rows = _events(runtime, gid_campaign)
    names = [r[0] for r in rows]
    assert sorted(names) == sorted(
        ["group_open", "join_group", "join_group", "group_success", "reward_issued"]
    )
    success = next(r for r in rows if r[0] == "group_success")
    assert success[1] == "lead" and success[5] == 2 * 19_900

    aid_campaign = create(client, owner, "assist", ASSIST_UNLOCK)
    assist = client.post(
        f"/api/v1/campaigns/{aid_campaign}/assists", json={"external_id": "owner"}, headers=owner
    ).json()
    for helper in ("h1", "h2", "h3"):
        resp = client.post(
            f"/api/v1/assists/{assist['assist_id']}/help",
            json={"external_id": helper},
            headers=owner,
        )
        assert resp.status_code == 200, resp.text
    refused = client.post(
        f"/api/v1/assists/{assist['assist_id']}/help", json={"external_id": "h1"}, headers=owner
    )
    assert refused.status_code == 409
    rows = _events(runtime, aid_campaign)
    names = sorted(r[0] for r in rows)
    assert names == sorted(
        [
            "assist_start",
            "assist_help",
            "assist_help",
            "assist_help",
            "assist_unlock",
            "reward_issued",
        ]
    )
    helps = [r for r in rows if r[0] == "assist_help"]
    assert {json.loads(r[3])["referrer"] for r in helps} == {"owner"}


def test_data_page_rates_come_from_real_actions(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    cid = create(client, owner, "invite", ONE_INVITE)
    alice = join(client, owner, cid, "alice").json()
    join(client, owner, cid, "bob", referrer_code=alice["invite_code"])
    join(client, owner, cid, "carol")
    client.get(
        f"/api/v1/campaigns/{cid}/participants/{alice['participant_id']}/poster.png", headers=owner
    )
    runtime.flush_events()
    now = datetime.now(UTC)
    resp = client.post(
        "/api/v1/analytics/metrics",
        json={
            "from": (now - timedelta(hours=1)).isoformat(),
            "to": (now + timedelta(hours=1)).isoformat(),
        },
        headers=owner,
    )
    assert resp.status_code == 200, resp.text
    m = resp.json()
    # alice, bob, carol act; alice invited and shared.
    assert m["active_users"] == 3
    assert m["invite_rate"] == round(1 / 3, 4) or abs(m["invite_rate"] - 1 / 3) < 1e-3
    assert abs(m["share_rate"] - 1 / 3) < 1e-3


def test_rejected_join_writes_no_event(client: Any, owner: dict[str, str], runtime: Any) -> None:
    cid = create(client, owner, "invite", ONE_INVITE)
    client.post(f"/api/v1/campaigns/{cid}/pause", headers=owner)
    assert join(client, owner, cid, "alice").status_code == 409
    assert _events(runtime, cid) == []
