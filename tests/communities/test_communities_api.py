"""One flow through the API and the entry page: configure, scan, screen, route, refuse."""

from __future__ import annotations

import re
from typing import Any

from community_helpers import PNG, WECHAT_UA, mother_baby


def _form(
    client: Any, community_id: str, data: dict[str, Any], cookies: dict[str, str] | None = None
) -> Any:
    return client.post(
        f"/c/{community_id}", data=data, headers={"user-agent": WECHAT_UA}, cookies=cookies or {}
    )


def test_community_flow_from_config_to_full_groups(client: Any, owner: dict[str, str]) -> None:
    h = owner
    assert (
        client.post(
            "/api/v1/contact-attributes", json={"key": "baby_birthday", "type": "date"}, headers=h
        ).status_code
        == 201
    )
    tag = client.post("/api/v1/tags", json={"name": "北京宝妈"}, headers=h).json()["id"]
    body = mother_baby(alert_below=2)
    body["screening"][1]["tags"] = {"北京": tag}

    # Bad input: a clear 422 naming the field, and nothing written.
    bad_rule = {**body, "routing": [{"question": "city", "values": ["北京"], "tier": "sh"}]}
    r = client.post("/api/v1/communities", json=bad_rule, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_tier"
    r = client.post(
        "/api/v1/communities", json={**body, "rules": {"banned_patterns": ["(x"]}}, headers=h
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_pattern"
    r = client.post("/api/v1/communities", json={**body, "colour": "red"}, headers=h)
    assert r.status_code == 422
    # 快闪群 has a start and an end.
    r = client.post("/api/v1/communities", json={**body, "kind": "flash"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "flash_needs_dates"
    assert client.get("/api/v1/communities", headers=h).json()["items"] == []

    cmy = client.post("/api/v1/communities", json=body, headers=h)
    assert cmy.status_code == 201, cmy.text
    cid = cmy.json()["id"]
    assert cmy.json()["entry_url"].endswith(f"/c/{cid}")

    def g(**kw: Any) -> Any:
        return client.post(
            f"/api/v1/communities/{cid}/groups", json={"name": "群", **kw}, headers=h
        )

    assert g(tier="nope").json()["error"]["code"] == "unknown_tier"
    g03 = g(name="0–3 岁 1 群", tier="t03", capacity=2, qr_image=PNG).json()
    g38 = g(name="3–8 岁 1 群", tier="t38", capacity=200).json()
    gbj = g(
        name="北京群",
        tier="bj",
        platform="wecom",
        join_url="https://work.weixin.qq.com/gm/x",
        chat_id="wrOg1",
    ).json()
    assert gbj["capacity"] == 500 and g(name="dup", chat_id="wrOg1").status_code == 409

    # The entry page in WeChat's browser: Chinese, no script, the form.
    page = client.get(f"/c/{cid}", headers={"user-agent": WECHAT_UA})
    assert (
        page.status_code == 200 and "宝宝生日或预产期" in page.text and "<script" not in page.text
    )
    assert "script-src 'none'" in page.headers["content-security-policy"]
    vid = page.cookies["lb_vid"]

    # A wrong answer: the form again (422) with a Chinese reason; nothing written.
    r = _form(client, cid, {"q_birthday": "明天", "q_city": "北京"}, {"lb_vid": vid})
    assert r.status_code == 422 and "请填写日期" in r.text
    assert client.get(f"/api/v1/communities/{cid}/members", headers=h).json()["items"] == []

    # Beijing → the bj tier by rule; the answer is a custom attribute and a tag on the contact.
    r = _form(
        client,
        cid,
        {"q_birthday": "2025-03-01", "q_city": "北京", "q_topics": ["辅食", "睡眠"]},
        {"lb_vid": vid},
    )
    assert (
        r.status_code == 200
        and "北京群" in r.text
        and 'href="https://work.weixin.qq.com/gm/x"' in r.text
    )
    again = _form(client, cid, {"q_birthday": "2025-03-01", "q_city": "北京"}, {"lb_vid": vid})
    assert "北京群" in again.text
    members = client.get(f"/api/v1/communities/{cid}/members", headers=h).json()["items"]
    assert len(members) == 1 and members[0]["tier"] == "bj" and members[0]["status"] == "routed"
    assert members[0]["answers"]["topics"] == ["辅食", "睡眠"]
    profile = client.get(f"/api/v1/contacts/{members[0]['contact_id']}", headers=h).json()
    assert profile["attributes"]["baby_birthday"] == "2025-03-01"
    assert [t["name"] for t in profile["tags"]] == ["北京宝妈"]

    # Two babies under 3 fill the 2-place group (WeChat: routed is joined); the third is refused.
    shown = [
        _form(
            client,
            cid,
            {"q_birthday": "2025-01-01", "q_city": "上海"},
            {"lb_vid": f"visitor{i:011d}"},
        )
        for i in range(3)
    ]
    assert [s.status_code for s in shown] == [200, 200, 409]
    assert 'src="data:image/png;base64,' in shown[0].text and "群已满员" in shown[2].text
    groups = {x["id"]: x for x in client.get(f"/api/v1/communities/{cid}/groups", headers=h).json()}
    assert groups[g03["id"]]["members"] == 2 and groups[g03["id"]]["status"] == "full"
    alerts = client.get(f"/api/v1/communities/{cid}/alerts", headers=h).json()["items"]
    assert [a["kind"] for a in alerts] == ["low_places"] and alerts[0]["details"]["tier"] == "t03"
    joined = client.get(
        f"/api/v1/communities/{cid}/members?group_id={g03['id']}", headers=h
    ).json()["items"]
    assert {m["status"] for m in joined} == {"joined"}

    # Capacity below the members is refused; raising it reopens the group.
    r = client.patch(f"/api/v1/community-groups/{g03['id']}", json={"capacity": 1}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "capacity_below_members"
    r = client.patch(f"/api/v1/community-groups/{g03['id']}", json={"capacity": 3}, headers=h)
    assert r.json()["status"] == "open"
    assert (
        _form(
            client,
            cid,
            {"q_birthday": "2025-01-01", "q_city": "上海"},
            {"lb_vid": "visitor00000000009"},
        ).status_code
        == 200
    )

    # A leave through the API gives the place back.
    ext = "shop-user-1"
    r = client.post(
        f"/api/v1/community-groups/{g38['id']}/members", json={"external_id": ext}, headers=h
    )
    assert (
        r.status_code == 200
        and r.json()["status"] == "joined"
        and re.fullmatch(r"[\w-]{12}", r.json()["invite_code"])
    )
    r = client.post(
        f"/api/v1/community-groups/{g38['id']}/members",
        json={"external_id": ext, "event": "left"},
        headers=h,
    )
    assert r.json()["status"] == "left"
    assert client.get(f"/api/v1/communities/{cid}", headers=h).json()["places"]

    # Unknown community: a Chinese page, not JSON.
    r = client.get("/c/cmy_01JDZZZZZZZZZZZZZZZZZZZZZZ", headers={"user-agent": WECHAT_UA})
    assert r.status_code == 404 and "社群不存在" in r.text
