"""The content calendar: posts sent once per group and day at their local time, as owner
tasks with a short link per group (clicks counted per group); the material library.
On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from community_helpers import PNG
from sqlalchemy import func, select

from liebian.communities import calendar
from liebian.communities.models import CommunityPostSend
from liebian.kit.db import session_scope

SH = ZoneInfo("Asia/Shanghai")


def test_posts_go_once_per_group_and_day_with_a_link_each(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    h = owner
    cid = client.post(
        "/api/v1/communities", json={"name": "福利群", "kind": "welfare"}, headers=h
    ).json()["id"]
    gids = [
        client.post(
            f"/api/v1/communities/{cid}/groups",
            json={"name": f"福利{i}群", "owner": f"staff{i}"},
            headers=h,
        ).json()["id"]
        for i in range(3)
    ]
    client.patch(f"/api/v1/community-groups/{gids[2]}", json={"status": "archived"}, headers=h)

    # Tomorrow 20:00 in Shanghai, on tomorrow's weekday only (周三秒杀-style rhythm).
    tomorrow = (datetime.now(SH) + timedelta(days=1)).date()
    at = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 20, 0, tzinfo=SH)
    body = {
        "title": "周三秒杀", "text": "今晚 8 点秒杀，点链接进场", "image": PNG,
        "link_url": "https://shop.example/flash", "weekdays": [tomorrow.isoweekday()],
        "at": "20:00",
    }  # fmt: skip

    # Bad input: a 422 naming the field, nothing written.
    for bad, field in (
        ({"at": "25:00"}, "at"),
        ({"weekdays": [8]}, "weekdays"),
        ({"link_url": "ftp://x.example/a"}, "link_url"),
        ({"group_id": "cgp_nope"}, "group_id"),
        ({"text": "", "image": None, "link_url": None}, "text"),
    ):
        r = client.post(f"/api/v1/communities/{cid}/posts", json={**body, **bad}, headers=h)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["details"]["field"] == field
    assert client.get(f"/api/v1/communities/{cid}/posts", headers=h).json() == []

    r = client.post(f"/api/v1/communities/{cid}/posts", json=body, headers=h)
    assert r.status_code == 201, r.text
    post = r.json()

    # Not before its time, not on another weekday.
    assert calendar.send_due(runtime, at - timedelta(minutes=1)) == 0
    assert calendar.send_due(runtime, at + timedelta(days=1, minutes=1)) == 0
    # At its time, from several schedulers at once: each open group once.
    made: list[int] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        made.append(calendar.send_due(runtime, at + timedelta(minutes=1)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(made) == 2
    assert calendar.send_due(runtime, at + timedelta(hours=2)) == 0  # the same day: done
    with session_scope(runtime.read_sessions) as session:
        assert session.scalar(select(func.count()).select_from(CommunityPostSend)) == 2

    sends = client.get(f"/api/v1/community-posts/{post['id']}/sends", headers=h).json()
    assert sorted(s["group_id"] for s in sends) == sorted(gids[:2])
    assert {s["slot"] for s in sends} == {tomorrow.isoformat()}
    assert len({s["short_url"] for s in sends}) == 2 and all(
        s["task_status"] == "open" for s in sends
    )
    tasks = client.get("/api/v1/staff-tasks", headers=h).json()["items"]
    mine = [t for t in tasks if t["kind"] == "community_post"]
    assert sorted(t["assignee"] for t in mine) == ["staff0", "staff1"]
    first = next(s for s in sends if s["group_id"] == gids[0])
    task = next(t for t in mine if t["id"] == first["task_id"])
    assert "今晚 8 点秒杀" in task["body"] and first["short_url"] in task["body"]

    # A click on group 0's link is counted for group 0 only; the owner marks the post done.
    slug = first["short_url"].rsplit("/", 1)[1]
    assert client.get(f"/{slug}").status_code in (301, 302, 307)
    assert (
        client.post(
            f"/api/v1/staff-tasks/{first['task_id']}/done", json={"done_by": "staff0"}, headers=h
        ).status_code
        == 200
    )
    deadline = time.monotonic() + 20
    while True:
        now = {
            s["group_id"]: s
            for s in client.get(f"/api/v1/community-posts/{post['id']}/sends", headers=h).json()
        }
        if now[gids[0]]["clicks"] == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert now[gids[0]]["clicks"] == 1 and now[gids[1]]["clicks"] == 0
    assert now[gids[0]]["task_status"] == "done" and now[gids[1]]["task_status"] == "open"

    # Paused: the next week's slot is not sent.
    client.patch(f"/api/v1/community-posts/{post['id']}", json={"status": "paused"}, headers=h)
    assert calendar.send_due(runtime, at + timedelta(days=7, minutes=1)) == 0


def test_material_library(client: Any, owner: dict[str, str]) -> None:
    h = owner
    for kind, body in (("title", "周五拼团"), ("content", "三人成团，立减 20 元"), ("image", PNG)):
        r = client.post("/api/v1/community-materials", json={"kind": kind, "body": body}, headers=h)
        assert r.status_code == 201, r.text
    r = client.post("/api/v1/community-materials", json={"kind": "image", "body": "x"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "body"
    r = client.post("/api/v1/community-materials", json={"kind": "video", "body": "x"}, headers=h)
    assert r.status_code == 422
    titles = client.get("/api/v1/community-materials?kind=title", headers=h).json()
    assert [m["body"] for m in titles] == ["周五拼团"]
    assert len(client.get("/api/v1/community-materials", headers=h).json()) == 3
