from __future__ import annotations

from datetime import timedelta
from typing import Any

from fission_helpers import ASSIST_UNLOCK, BARGAIN, GROUP_BUY, create, rewards, workspace_id

from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope


def _open(client: Any, owner: dict[str, str], cid: str, leader: str = "leader") -> str:
    resp = client.post(
        f"/api/v1/campaigns/{cid}/groups", json={"leader_external_id": leader}, headers=owner
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["share_url"].endswith(f"/g/{resp.json()['group_id']}")
    return str(resp.json()["group_id"])


def _join(client: Any, owner: dict[str, str], gid: str, who: str) -> Any:
    return client.post(f"/api/v1/groups/{gid}/join", json={"external_id": who}, headers=owner)


def test_group_fills_succeeds_and_pays_leader(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "group_buy", {**GROUP_BUY, "tiers": [{"size": 3, "price": 19_900}]})
    gid = _open(client, owner, cid)
    assert _join(client, owner, gid, "leader").json()["error"]["code"] == "already_member"
    assert _join(client, owner, gid, "a").status_code == 200
    assert _join(client, owner, gid, "a").status_code == 409
    done = _join(client, owner, gid, "b")
    assert done.status_code == 200 and done.json()["status"] == "success"
    full = _join(client, owner, gid, "c")
    assert full.status_code == 409
    view = client.get(f"/api/v1/groups/{gid}", headers=owner).json()
    assert view["size"] == 3 and len(view["members"]) == 3
    assert {m["order_status"] for m in view["members"]} == {"confirmed"}
    leader = rewards(client, owner, campaign_id=cid, external_id="leader")
    assert [(r["kind"], r["amount"], r["status"]) for r in leader] == [("coupon", 2_000, "issued")]


def test_unknown_group_and_bad_size(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "group_buy", GROUP_BUY)
    assert _join(client, owner, "grp_01JAAAAAAAAAAAAAAAAAAAAAAA", "x").status_code == 404
    resp = client.post(
        f"/api/v1/campaigns/{cid}/groups",
        json={"leader_external_id": "l", "size": 7},
        headers=owner,
    )
    assert resp.status_code == 422
    invite = create(client, owner, "assist", ASSIST_UNLOCK)
    wrong = client.post(
        f"/api/v1/campaigns/{invite}/groups", json={"leader_external_id": "l"}, headers=owner
    )
    assert wrong.status_code == 409


def test_expired_group_refuses_joins_and_job_voids_orders(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    from liebian.campaigns import groups
    from liebian.campaigns.models import CampaignEvent, GroupMember

    cid = create(client, owner, "group_buy", GROUP_BUY)
    ws = workspace_id(client, owner)
    past = utcnow() - timedelta(hours=30)
    with session_scope(runtime.sessions) as session:
        group = groups.open_group(session, runtime.cipher, ws, cid, "leader", now=past)
        groups.join_group(
            session, runtime.cipher, ws, group.id, "early", now=past + timedelta(hours=1)
        )
        gid = group.id
    resp = _join(client, owner, gid, "late")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "group_expired"

    seen: list[Any] = []
    runtime.bus.subscribe(groups.GROUP_FAILED, seen.append)
    with session_scope(runtime.sessions) as session:
        failed = groups.expire_groups(session, utcnow())
        assert seen == []  # published only after commit
    assert failed == [gid]
    assert len(seen) == 1 and seen[0]["group_id"] == gid
    with session_scope(runtime.sessions) as session:
        members = session.query(GroupMember).filter_by(group_id=gid).all()
        assert {m.order_status for m in members} == {"voided"} and len(members) == 2
        voided = session.query(CampaignEvent).filter_by(subject_id=gid, kind="order_voided").count()
        assert voided == 2
        assert groups.expire_groups(session, utcnow()) == []  # idempotent
    view = client.get(f"/api/v1/groups/{gid}", headers=owner).json()
    assert view["status"] == "failed"
    assert _join(client, owner, gid, "later").status_code == 409


def _assist(client: Any, owner: dict[str, str], cid: str, who: str = "owner", **extra: Any) -> str:
    resp = client.post(
        f"/api/v1/campaigns/{cid}/assists", json={"external_id": who, **extra}, headers=owner
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["assist_id"])


def _help(client: Any, owner: dict[str, str], aid: str, who: str, **extra: Any) -> Any:
    return client.post(
        f"/api/v1/assists/{aid}/help", json={"external_id": who, **extra}, headers=owner
    )


def test_assist_unlock_flow_and_refusals(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "assist", ASSIST_UNLOCK)
    aid = _assist(client, owner, cid, visitor_id="owner-phone")
    assert _assist(client, owner, cid) == aid  # one running activity per owner
    self_help = _help(client, owner, aid, "owner")
    assert self_help.status_code == 409 and self_help.json()["error"]["code"] == "self_help"
    same_device = _help(client, owner, aid, "sock-puppet", visitor_id="owner-phone")
    assert same_device.status_code == 409 and same_device.json()["error"]["code"] == "self_help"
    assert _help(client, owner, aid, "h1").status_code == 200
    second = _help(client, owner, aid, "h1")
    assert second.status_code == 409 and second.json()["error"]["code"] == "already_helped"
    assert _help(client, owner, aid, "h2").status_code == 200
    last = _help(client, owner, aid, "h3")
    assert last.status_code == 200 and last.json()["unlocked"] is True
    assert _help(client, owner, aid, "h4").status_code == 409
    view = client.get(f"/api/v1/assists/{aid}", headers=owner).json()
    assert view["status"] == "unlocked" and [h["external_id"] for h in view["helpers"]] == [
        "h1",
        "h2",
        "h3",
    ]
    got = rewards(client, owner, campaign_id=cid, external_id="owner")
    assert [(r["kind"], r["status"]) for r in got] == [("gift", "issued")]
    assert (
        client.post(
            "/api/v1/assists/ast_01JAAAAAAAAAAAAAAAAAAAAAAA/help",
            json={"external_id": "x"},
            headers=owner,
        ).status_code
        == 404
    )


def test_bargain_cuts_reach_floor_at_last_helper(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "assist", BARGAIN)
    aid = _assist(client, owner, cid)
    assert client.get(f"/api/v1/assists/{aid}", headers=owner).json()["price_now"] == 10_000
    prices = []
    for i in range(5):
        resp = _help(client, owner, aid, f"h{i}")
        assert resp.status_code == 200
        assert resp.json()["cut"] >= 1
        prices.append(resp.json()["price_now"])
    assert prices == sorted(prices, reverse=True) and prices[-1] == 100
    assert _help(client, owner, aid, "h9").status_code == 409


def test_help_limit_per_day(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "assist", {**ASSIST_UNLOCK, "max_helps_per_helper_per_day": 2})
    ids = [_assist(client, owner, cid, who=f"o{i}") for i in range(3)]
    assert _help(client, owner, ids[0], "busy").status_code == 200
    assert _help(client, owner, ids[1], "busy").status_code == 200
    third = _help(client, owner, ids[2], "busy")
    assert third.status_code == 409 and third.json()["error"]["code"] == "help_limit_reached"


def test_group_stock_sells_out(client: Any, owner: dict[str, str]) -> None:
    cid = create(
        client,
        owner,
        "group_buy",
        {**GROUP_BUY, "tiers": [{"size": 2, "price": 19_900}], "stock": 3},
    )
    gid = _open(client, owner, cid, "l1")
    assert _join(client, owner, gid, "a").status_code == 200
    gid2 = _open(client, owner, cid, "l2")  # third unit
    sold_out = _join(client, owner, gid2, "b")
    assert sold_out.status_code == 409 and sold_out.json()["error"]["code"] == "sold_out"
    assert (
        client.post(
            f"/api/v1/campaigns/{cid}/groups", json={"leader_external_id": "l3"}, headers=owner
        ).status_code
        == 409
    )
    assert client.get(f"/api/v1/campaigns/{cid}", headers=owner).json()["stock_used"] == 3


def test_fission_jobs_run_together(client: Any, owner: dict[str, str], runtime: Any) -> None:
    from liebian.campaigns import assists, groups
    from liebian.campaigns.tasks import run_fission_jobs

    gcid = create(client, owner, "group_buy", GROUP_BUY)
    acid = create(client, owner, "assist", ASSIST_UNLOCK)
    ws = workspace_id(client, owner)
    past = utcnow() - timedelta(days=2)
    with session_scope(runtime.sessions) as session:
        groups.open_group(session, runtime.cipher, ws, gcid, "leader", now=past)
        assists.start(session, runtime.cipher, ws, acid, "owner", now=past)
    result = run_fission_jobs(runtime.sessions, utcnow())
    assert (result.groups_failed, result.assists_expired) == (1, 1)
    again = run_fission_jobs(runtime.sessions, utcnow())
    assert (again.groups_failed, again.assists_expired) == (0, 0)


def test_join_and_help_replies_follow_domain_changes(client: Any, owner: dict[str, str]) -> None:
    # The join/help replies remember each workspace's base URL; a domain change drops it.
    gid = _open(client, owner, create(client, owner, "group_buy", GROUP_BUY))
    aid = _assist(client, owner, create(client, owner, "assist", BARGAIN))
    first = _join(client, owner, gid, "a").json()
    assert first["share_url"] == f"http://sho.rt/g/{gid}"
    assert first["expires_at"].endswith("Z") and first["members"][1]["joined_at"].endswith("Z")
    assert _help(client, owner, aid, "h1").json()["share_url"] == f"http://sho.rt/a/{aid}"
    domain = client.post(
        "/api/v1/domains", json={"host": "go.example.com", "is_primary": True}, headers=owner
    )
    assert domain.status_code == 201, domain.text
    assert _join(client, owner, gid, "b").json()["share_url"] == f"https://go.example.com/g/{gid}"
    helped = _help(client, owner, aid, "h2").json()
    assert helped["share_url"] == f"https://go.example.com/a/{aid}"
    assert helped["helper_index"] == 1 and [h["index"] for h in helped["helpers"]] == [0, 1]
    client.post(f"/api/v1/domains/{domain.json()['id']}/block", json={"reason": "x"}, headers=owner)
    assert _join(client, owner, gid, "c").json()["share_url"] == f"http://sho.rt/g/{gid}"
