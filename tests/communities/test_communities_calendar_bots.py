"""The content calendar through a group's bot: a group with ``bot_channel_id`` (the brand's
bot behind a signed webhook, on loopback) is sent the post — text, the group's own short link,
the image — once per slot with channels' key ``cps:<send>``; a group without one still gets
the owner task. A bot that is not a group channel is a 422 naming the field. SQLite and PG."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from community_helpers import PNG

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "webhooks"))

from receiver import receiver

from liebian.communities import calendar

SH = ZoneInfo("Asia/Shanghai")


def test_a_group_with_a_bot_gets_the_post_through_it(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    h = owner
    with receiver() as bot:
        chn = client.post(
            "/api/v1/channels", headers=h,
            json={"kind": "webhook", "name": "品牌机器人", "config": {"url": bot.url}},
        )  # fmt: skip
        assert chn.status_code == 201, chn.text
        staff = client.post(
            "/api/v1/channels", headers=h,
            json={"kind": "personal_wechat", "name": "顾问", "config": {"assignee": "小王"}},
        )  # fmt: skip
        assert staff.status_code == 201, staff.text
        cid = client.post(
            "/api/v1/communities", json={"name": "福利群", "kind": "welfare"}, headers=h
        ).json()["id"]
        # Bad input: no such channel, a channel that writes to a person — nothing written.
        for bot_id, code in (("chn_nope", "channel_not_found"),
                             (staff.json()["id"], "not_a_group_bot")):  # fmt: skip
            r = client.post(
                f"/api/v1/communities/{cid}/groups",
                json={"name": "x", "bot_channel_id": bot_id}, headers=h,
            )  # fmt: skip
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == code
            assert r.json()["error"]["details"]["field"] == "bot_channel_id"
        assert client.get(f"/api/v1/communities/{cid}/groups", headers=h).json() == []
        with_bot = client.post(
            f"/api/v1/communities/{cid}/groups",
            json={"name": "福利1群", "owner": "staff1", "bot_channel_id": chn.json()["id"]},
            headers=h,
        ).json()  # fmt: skip
        assert with_bot["bot_channel_id"] == chn.json()["id"]
        plain = client.post(
            f"/api/v1/communities/{cid}/groups", json={"name": "福利2群", "owner": "staff2"},
            headers=h,
        ).json()  # fmt: skip
        r = client.patch(
            f"/api/v1/community-groups/{plain['id']}", json={"bot_channel_id": staff.json()["id"]},
            headers=h,
        )  # fmt: skip
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_group_bot"

        tomorrow = (datetime.now(SH) + timedelta(days=1)).date()
        at = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 20, 0, tzinfo=SH)
        post = client.post(
            f"/api/v1/communities/{cid}/posts", headers=h,
            json={"title": "周五拼团", "text": "三人成团，立减 20 元", "image": PNG,
                  "link_url": "https://shop.example/group-buy", "at": "20:00"},
        ).json()  # fmt: skip
        assert calendar.send_due(runtime, at + timedelta(minutes=1)) == 2
        assert bot.wait_for(lambda reqs: len(reqs) >= 1)
        # A second run the same day sends nothing again.
        assert calendar.send_due(runtime, at + timedelta(minutes=30)) == 0

        sends = {
            s["group_id"]: s
            for s in client.get(f"/api/v1/community-posts/{post['id']}/sends", headers=h).json()
        }
        through_bot, by_owner = sends[with_bot["id"]], sends[plain["id"]]
        assert through_bot["send_status"] == "sent" and through_bot["task_id"] is None
        assert by_owner["task_status"] == "open" and by_owner["channel_send_id"] is None
        assert len(bot.requests) == 1
        hit = bot.requests[0]
        assert hit.headers["Idempotency-Key"] == f"cps:{through_bot['id']}"
        message = orjson.loads(hit.body)["content"]
        assert message["text"] == f"三人成团，立减 20 元\n{through_bot['short_url']}"
        assert message["image"] == PNG and message["group_id"] == with_bot["id"]
        assert through_bot["short_url"] != by_owner["short_url"]  # clicks per group
        tasks = client.get("/api/v1/staff-tasks", headers=h).json()["items"]
        assert [t["assignee"] for t in tasks if t["kind"] == "community_post"] == ["staff2"]


def test_a_wecom_group_robot_is_sent_the_text_then_the_image() -> None:
    from types import SimpleNamespace

    from liebian.channels.adapters import WeComRobotAdapter

    post = SimpleNamespace(title="周三秒杀", text="今晚 8 点", image=PNG, id="cps_1")
    group = SimpleNamespace(id="cgp_1", name="1群")
    text, image = calendar.bot_contents("wecom_robot", post, group, "https://s.example/ab")  # type: ignore[arg-type]
    assert WeComRobotAdapter.check_content(text) == {
        "msgtype": "text", "text": {"content": "今晚 8 点\nhttps://s.example/ab"}
    }  # fmt: skip
    assert WeComRobotAdapter.check_content(image)["msgtype"] == "image"
    post.image = "data:image/webp;base64,AAAA"  # the robot takes PNG and JPEG only
    assert len(calendar.bot_contents("wecom_robot", post, group, None)) == 1  # type: ignore[arg-type]
