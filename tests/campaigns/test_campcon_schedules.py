"""Campaigns that start and end by themselves: a scheduled launch in the workspace's time
zone, the scheduler's job ending a campaign past its end, and weekly rhythms (周三秒杀) whose
copies go live once per occurrence even with two runners — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fission_helpers import INVITE, create


def _draft(client: Any, owner: dict[str, str], name: str = "秒杀") -> str:
    resp = client.post(
        "/api/v1/campaigns",
        json={"type": "invite", "name": name, "config": INVITE, "status": "draft"},
        headers=owner,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _jobs(runtime: Any, now: datetime) -> Any:
    from liebian.campaigns.tasks import run_fission_jobs

    return run_fission_jobs(runtime.sessions, now)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def test_scheduled_launch_goes_live_and_ends_by_itself(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    cid = _draft(client, owner)
    base = f"/api/v1/campaigns/{cid}"
    # Typed without a zone: the workspace's (Asia/Shanghai, UTC+8).
    launched = client.post(
        base + "/launch",
        json={"starts_at": "2030-03-06T10:00", "ends_at": "2030-03-06T22:00"},
        headers=owner,
    )
    assert launched.status_code == 200, launched.text
    body = launched.json()
    assert _ts(body["starts_at"]) == datetime(2030, 3, 6, 2, 0, tzinfo=UTC)
    assert _ts(body["ends_at"]) == datetime(2030, 3, 6, 14, 0, tzinfo=UTC)
    early = client.post(f"{base}/participants", json={"external_id": "u1"}, headers=owner)
    assert early.status_code == 409 and early.json()["error"]["code"] == "campaign_not_started"
    bad = client.post(
        f"/api/v1/campaigns/{_draft(client, owner)}/launch",
        json={"starts_at": "2030-03-06T10:00", "ends_at": "2030-03-06T09:00"},
        headers=owner,
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_ends_at"

    # The job before the end leaves it alone; after the end, it ends it once.
    assert _jobs(runtime, datetime(2030, 3, 6, 13, 59, tzinfo=UTC)).campaigns_ended == 0
    assert _jobs(runtime, datetime(2030, 3, 6, 14, 0, 1, tzinfo=UTC)).campaigns_ended == 1
    assert _jobs(runtime, datetime(2030, 3, 6, 14, 0, 2, tzinfo=UTC)).campaigns_ended == 0
    assert client.get(base, headers=owner).json()["status"] == "ended"
    log = client.get(base + "/changes", headers=owner).json()["items"]
    assert [c["action"] for c in log][:2] == ["auto_end", "launch"]
    assert log[0]["actor"] is None


def test_scheduled_launch_opens_to_participants_at_its_start(
    client: Any, owner: dict[str, str]
) -> None:
    cid = _draft(client, owner)
    start = datetime.now(UTC) + timedelta(seconds=2)
    launched = client.post(
        f"/api/v1/campaigns/{cid}/launch", json={"starts_at": start.isoformat()}, headers=owner
    )
    assert launched.status_code == 200, launched.text
    deadline = time.monotonic() + 30
    while True:  # nobody acts: the start passing is what opens it
        resp = client.post(
            f"/api/v1/campaigns/{cid}/participants", json={"external_id": "u1"}, headers=owner
        )
        if resp.status_code == 201 or time.monotonic() > deadline:
            break
        assert resp.json()["error"]["code"] == "campaign_not_started"
        time.sleep(0.2)
    assert resp.status_code == 201, resp.text


def test_weekly_rhythm_starts_each_occurrence_once(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    source = create(client, owner, "invite", INVITE, name="秒杀模板")
    client.put(f"/api/v1/campaigns/{source}/poster", json={"headline": "周三秒杀"}, headers=owner)
    made = client.post(
        f"/api/v1/campaigns/{source}/schedules",
        json={"name": "周三秒杀", "weekday": 2, "start_time": "10:00", "duration_minutes": 720},
        headers=owner,
    )
    assert made.status_code == 201, made.text
    schedule = made.json()
    assert schedule["description"] == "每周三 10:00 开始，持续 12 小时"
    first = _ts(schedule["next_run_at"])
    assert first.weekday() == 2 and (first.hour, first.minute) == (2, 0)  # 10:00 +08:00

    # Two runners at the same moment: one copy.
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        results.append(_jobs(runtime, first + timedelta(minutes=1)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.campaigns_started for r in results) == [0, 1]
    listed = client.get(f"/api/v1/campaign-schedules?campaign_id={source}", headers=owner).json()[
        "items"
    ]
    assert len(listed) == 1 and len(listed[0]["runs"]) == 1
    run_ = listed[0]["runs"][0]
    assert _ts(listed[0]["next_run_at"]) == first + timedelta(days=7)
    copy = client.get(f"/api/v1/campaigns/{run_['campaign_id']}", headers=owner).json()
    assert copy["status"] == "active" and copy["name"].startswith("周三秒杀 ")
    assert _ts(copy["starts_at"]) == first
    assert _ts(copy["ends_at"]) == first + timedelta(hours=12)
    poster = client.get(f"/api/v1/campaigns/{copy['id']}/poster", headers=owner).json()
    assert poster["design"]["headline"] == "周三秒杀"
    # It ends by itself; the source is untouched.
    assert _jobs(runtime, first + timedelta(hours=12, seconds=1)).campaigns_ended == 1
    assert client.get(f"/api/v1/campaigns/{copy['id']}", headers=owner).json()["status"] == "ended"
    assert client.get(f"/api/v1/campaigns/{source}", headers=owner).json()["status"] == "active"

    # A week missed entirely (server down) is not made up; the rhythm moves on.
    late = first + timedelta(days=7, hours=13)
    assert _jobs(runtime, late).campaigns_started == 0
    listed = client.get("/api/v1/campaign-schedules", headers=owner).json()["items"]
    assert _ts(listed[0]["next_run_at"]) == first + timedelta(days=14)
    # Paused: nothing starts.
    sid = schedule["id"]
    off = client.patch(f"/api/v1/campaign-schedules/{sid}", json={"enabled": False}, headers=owner)
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert _jobs(runtime, first + timedelta(days=14, minutes=1)).campaigns_started == 0
    assert client.delete(f"/api/v1/campaign-schedules/{sid}", headers=owner).status_code == 204
    assert client.get("/api/v1/campaign-schedules", headers=owner).json()["items"] == []


def test_schedule_input_is_checked(client: Any, owner: dict[str, str]) -> None:
    source = create(client, owner, "invite", INVITE)
    url = f"/api/v1/campaigns/{source}/schedules"
    ok = {"name": "周五拼团", "weekday": 4, "start_time": "19:30", "duration_minutes": 60}
    for bad in ({"weekday": 7}, {"start_time": "24:00"}, {"duration_minutes": 0},
                {"timezone": "Mars/Olympus"}):  # fmt: skip
        resp = client.post(url, json={**ok, **bad}, headers=owner)
        assert resp.status_code == 422, (bad, resp.text)
    dirty = client.post(
        "/api/v1/campaigns",
        json={"type": "invite", "name": "活动", "config": INVITE, "status": "draft",
              "share_text": "转发到三个微信群即可参与"},
        headers=owner,
    )  # fmt: skip
    assert dirty.status_code == 201, dirty.text
    refused = client.post(
        f"/api/v1/campaigns/{dirty.json()['id']}/schedules", json=ok, headers=owner
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "copy_lint_error"
    assert (
        client.post("/api/v1/campaigns/cmp_nope/schedules", json=ok, headers=owner).status_code
        == 404
    )
    assert client.patch("/api/v1/campaign-schedules/csc_nope", json={"enabled": True},
                        headers=owner).status_code == 404  # fmt: skip
