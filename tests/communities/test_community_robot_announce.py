"""The community's welcome and announcement through a WeCom group robot (a loopback robot
speaking its protocol, tests/channels/channel_fakes.py): the content is what the robot adapter
takes (text only — it refuses any other field, such as an email subject, with a 422), so both
reach the group; through a staff channel the subject becomes the task's title. SQLite and PG."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "channels"))

from channel_fakes import serve, wecom_robot

from liebian.channels.adapters import StaffAdapter, WeComRobotAdapter
from liebian.communities.welcome import channel_content


def test_announcement_and_welcome_reach_a_wecom_group_robot(
    client: Any, owner: dict[str, str]
) -> None:
    h = owner
    with serve(wecom_robot("K3Y-9")) as robot:
        chn = client.post("/api/v1/channels", headers=h, json={
            "kind": "wecom_robot", "name": "群机器人",
            "config": {"url": f"{robot.url}/cgi-bin/webhook/send?key=K3Y-9"}})  # fmt: skip
        assert chn.status_code == 201, chn.text
        cmy = client.post("/api/v1/communities", headers=h, json={
            "name": "福利群", "channel_id": chn.json()["id"],
            "welcome_template": "欢迎加入{{ group.name }}！",
            "announcement_template": "【群公告】{{ group.name }} 禁止广告"}).json()  # fmt: skip
        grp = client.post(f"/api/v1/communities/{cmy['id']}/groups", headers=h,
                          json={"name": "福利1群"}).json()  # fmt: skip
        sent = client.post(f"/api/v1/community-groups/{grp['id']}/announcement", headers=h,
                           json={"idempotency_key": "2026-12-03"})  # fmt: skip
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "sent"
        joined = client.post(f"/api/v1/community-groups/{grp['id']}/members", headers=h,
                             json={"external_id": "mom-9"})  # fmt: skip
        assert joined.status_code == 200, joined.text
        deadline = time.monotonic() + 10  # the welcome is sent after the join's commit
        while len(robot.hits) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        texts = [hit.json()["text"]["content"] for hit in robot.hits if hit.json().get("text")]
        assert "【群公告】福利1群 禁止广告" in texts
        assert "欢迎加入福利1群！" in texts


def test_channel_content_is_what_each_adapter_takes() -> None:
    # The robot refuses a subject; the content built for it passes its own check.
    robot = channel_content("wecom_robot", "公告", "1 群 群公告")
    assert WeComRobotAdapter.check_content(robot)["text"] == {"content": "公告"}
    staff = StaffAdapter.check_content(channel_content("personal_wechat", "公告", "1 群 群公告"))
    assert staff == {"text": "公告", "title": "1 群 群公告"}
    try:
        WeComRobotAdapter.check_content({"text": "公告", "subject": "x"})
    except Exception as exc:  # the failure the announcement used to meet
        assert "subject" in str(exc)
    else:
        raise AssertionError("the robot adapter took a subject")
