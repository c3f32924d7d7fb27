"""首日任务: the group page shows the member's signed task links; a tap within the first day is
recorded for that member (once) and opens the task; the metrics count it. SQLite and PG."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from community_helpers import PNG, WECHAT_UA

from liebian.kit.clock import utcnow


def test_first_day_task_links_are_tracked_per_member(client: Any, owner: dict[str, str]) -> None:
    h = owner
    tasks = [
        {"key": "profile", "label": "填资料", "url": "https://shop.example/profile"},
        {"key": "coupon", "label": "领新人券", "url": "https://shop.example/coupon"},
    ]
    body = {"name": "新人群", "kind": "welfare"}
    r = client.post(
        "/api/v1/communities",
        json={**body, "first_day_tasks": [{**tasks[0], "url": "javascript:alert(1)"}]},
        headers=h,
    )
    assert r.status_code == 422
    r = client.post("/api/v1/communities", json={**body, "first_day_tasks": tasks}, headers=h)
    assert r.status_code == 201 and [t["key"] for t in r.json()["first_day_tasks"]] == [
        "profile",
        "coupon",
    ]
    cid = r.json()["id"]
    client.post(
        f"/api/v1/communities/{cid}/groups", json={"name": "新人1群", "qr_image": PNG}, headers=h
    )

    page = client.post(
        f"/c/{cid}", data={}, cookies={"lb_vid": "visitor00000000001"},
        headers={"user-agent": WECHAT_UA},
    )  # fmt: skip
    assert page.status_code == 200 and "首日任务" in page.text and "领新人券" in page.text
    import re

    links = dict(re.findall(r'id="task-(\w+)" href="([^"]+)"', page.text))
    assert set(links) == {"profile", "coupon"}
    href = links["coupon"].replace("&amp;", "&")

    # A forged or altered link: a Chinese page, nothing recorded.
    bad = client.get(href[:-1] + ("0" if href[-1] != "0" else "1"))
    assert bad.status_code == 404 and "社群不存在" in bad.text
    # The member's tap opens the task (twice: recorded once).
    for _ in range(2):
        r = client.get(href)
        assert r.status_code == 302 and r.headers["location"] == "https://shop.example/coupon"

    start = (utcnow() - timedelta(days=1)).isoformat()
    deadline = time.monotonic() + 20
    while True:
        out = client.get(
            f"/api/v1/communities/{cid}/metrics",
            params={"by": "community", "from": start, "to": (utcnow() + timedelta(hours=1)).isoformat()},
            headers=h,
        ).json()  # fmt: skip
        summary = out["summary"][0] if out["summary"] else {}
        if summary.get("first_day_done") == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert summary["first_day_done"] == 1 and summary["joins"] == 1
    assert summary["first_day_rate"] == 1.0
