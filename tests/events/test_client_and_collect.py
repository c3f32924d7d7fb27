from __future__ import annotations

import json
from typing import Any

from liebian.client import LiebianClient


def test_python_client_batches_and_reports_rejections(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    key = owner["Authorization"].removeprefix("Bearer ")
    with LiebianClient("http://sho.rt", key, batch_size=3, http=client) as lb:
        for i in range(4):
            lb.track("purchase", user_id="u1", event_id=f"o{i}", revenue=100 * (i + 1))
        lb.track("bad name!", user_id="u1")
        lb.identify(visitor_id="v9", user_id="u1")
    assert len(lb.rejected) == 1 and lb.rejected[0]["event"]["event"] == "bad name!"
    runtime.flush_events()
    assert runtime.event_store.query("SELECT count(*), sum(revenue) FROM events", {}) == [(4, 1000)]
    assert runtime.event_store.query("SELECT user_id FROM aliases WHERE visitor_id = 'v9'", {}) == [
        ("u1",)
    ]


def test_tracker_script_is_served(client: Any) -> None:
    resp = client.get("/t.js")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/javascript")
    assert b"sendBeacon" in resp.content and b"lb_cid" in resp.content


def test_collect_takes_visitor_events_only(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws = client.get("/api/v1/workspace", headers=owner).json()["id"]
    beacon = {
        "w": ws,
        "e": "page_view",
        "id": "b1",
        "vid": "v1",
        "cid": "c1",
        "url": "https://land.cn/?lb_cid=c1",
        "p": {"k": 1},
    }
    wechat = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2f) NetType/WIFI Language/zh_CN"
    resp = client.post(
        "/collect",
        content=json.dumps(beacon),
        headers={"content-type": "text/plain", "user-agent": wechat},
    )
    assert resp.status_code == 204
    forged = {**beacon, "id": "b2", "revenue": 999999, "user_id": "victim"}
    assert client.post("/collect", content=json.dumps(forged)).status_code == 204
    runtime.flush_events()
    rows = runtime.event_store.query(
        "SELECT event_id, visitor_id, click_id, platform, user_id, revenue FROM events ORDER BY event_id",
        {},
    )
    assert [r[0] for r in rows] == ["b1", "b2"]
    assert rows[0][:4] == ("b1", "v1", "c1", "wechat")
    assert all(r[4] is None and r[5] is None for r in rows)  # no identity or money from a browser
    assert (
        client.post("/collect", content=json.dumps({**beacon, "w": "ws_nope"})).status_code == 404
    )
    assert client.post("/collect", content=b"[1,2]").status_code == 422
