"""Group mass posts (企业群发, add_msg_template chat_type group) to a community's WeCom customer
groups, against the loopback WeCom (tests/connectors/wecom_fake.py): one task per group owner
(sender = the owner's WeCom userid), recorded once per key (a retry, a second dispatcher or the
recovery pass never makes a second WeCom task), WeCom's monthly cap per group respected and
shown, the results (pending confirmation / sent / failed) polled and shown; the content
calendar's slot to a WeCom group goes the same way. SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "connectors"))

from wecom_fake import AES_KEY, CORP_ID, SECRET, TOKEN, fake_wecom

from liebian.communities import calendar
from liebian.connectors.wecom import group_sends, repository
from liebian.connectors.wecom import service as wecom
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.workspaces.service import bootstrap
from testkit import errors_in_threads

SH = ZoneInfo("Asia/Shanghai")


def _workspace(runtime: Any, fake: Any, *, connect: bool = True) -> tuple[str, dict[str, str]]:
    runtime.settings.wecom_api_base = fake.url
    with session_scope(runtime.sessions) as session:
        ws, key = bootstrap(session, "企微社群")
        if connect:
            wecom.connect(session, Principal(ws.id, Role.owner), runtime.cipher,
                          wecom.ConnectionInput(CORP_ID, SECRET, TOKEN, AES_KEY))  # fmt: skip
        return ws.id, {"Authorization": f"Bearer {key}"}


def _group(client: Any, h: dict[str, str], cid: str, **body: Any) -> dict[str, Any]:
    r = client.post(f"/api/v1/communities/{cid}/groups", json=body, headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_operator_group_post_once_per_owner_with_cap_and_results(client: Any, runtime: Any) -> None:
    with fake_wecom() as fake:
        ws, h = _workspace(runtime, fake)
        fake.chats.update({"wrA": "zhangsan", "wrB": "zhangsan", "wrC": "lisi", "wrD": "wangwu"})
        cid = client.post("/api/v1/communities", json={"name": "福利群", "kind": "welfare"},
                          headers=h).json()["id"]  # fmt: skip
        # Bad input: a WeCom userid WeCom would not have — 422 naming the field, nothing made.
        r = client.post(f"/api/v1/communities/{cid}/groups", headers=h,
                        json={"name": "x", "platform": "wecom", "owner_wecom_userid": "张 三"})  # fmt: skip
        assert r.status_code == 422 and "owner_wecom_userid" in r.text
        a = _group(client, h, cid, name="福利1群", platform="wecom", chat_id="wrA",
                   owner="张三", owner_wecom_userid="zhangsan")  # fmt: skip
        b = _group(client, h, cid, name="福利2群", platform="wecom", chat_id="wrB",
                   owner="张三", owner_wecom_userid="zhangsan")  # fmt: skip
        c = _group(client, h, cid, name="福利3群", platform="wecom", chat_id="wrC",
                   owner="李四", owner_wecom_userid="lisi")  # fmt: skip
        no_owner = _group(client, h, cid, name="福利4群", platform="wecom", chat_id="wrX")
        _group(client, h, cid, name="个人微信群", platform="wechat", owner="王五")
        assert a["owner_wecom_userid"] == "zhangsan"

        # Bad input: a group not of this community — 422, WeCom not asked.
        r = client.post(f"/api/v1/communities/{cid}/wecom-posts", headers=h,
                        json={"idempotency_key": "k0", "text": "hi", "group_ids": ["cgp_nope"]})  # fmt: skip
        assert r.status_code == 422 and r.json()["error"]["code"] == "group_not_found"
        assert fake.tasks == {}

        body = {"idempotency_key": "wk-1", "text": "周三秒杀，今晚 8 点开抢"}
        r = client.post(f"/api/v1/communities/{cid}/wecom-posts", json=body, headers=h)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["monthly_cap"] == 4
        assert out["skipped"] == [
            {"group_id": no_owner["id"], "name": "福利4群", "reason": "no_owner_wecom_userid"}
        ]
        by_sender = {t["sender"]: t for t in out["items"]}
        assert set(by_sender) == {"zhangsan", "lisi"}
        assert {t["progress"] for t in out["items"]} == {"pending_confirmation"}
        sent = {b_["sender"]: b_ for b_ in fake.group_templates()}
        assert sent["zhangsan"]["chat_id_list"] == ["wrA", "wrB"]
        assert sent["zhangsan"]["chat_type"] == "group"
        assert sent["zhangsan"]["text"] == {"content": body["text"]}
        assert sent["lisi"]["chat_id_list"] == ["wrC"]
        # A retry (the same key) returns the recorded tasks: WeCom is not asked again.
        again = client.post(f"/api/v1/communities/{cid}/wecom-posts", json=body, headers=h).json()
        assert {t["id"] for t in again["items"]} == {t["id"] for t in out["items"]}
        assert len(fake.tasks) == 2

        # The owner zhangsan confirms in WeCom; the results pass reads them.
        zs = by_sender["zhangsan"]
        fake.confirm(next(m for m, t in fake.tasks.items() if t["sender"] == "zhangsan"))
        assert group_sends.poll(runtime, min_age=timedelta(0)) == 2
        listing = client.get(f"/api/v1/communities/{cid}/wecom-posts", headers=h).json()
        items = {t["id"]: t for t in listing["items"]}
        assert items[zs["id"]]["progress"] == "sent"
        assert {(g["name"], g["status"]) for g in items[zs["id"]]["groups"]} == {
            ("福利1群", "sent"), ("福利2群", "sent")}  # fmt: skip
        assert items[by_sender["lisi"]["id"]]["progress"] == "pending_confirmation"
        assert items[by_sender["lisi"]["id"]]["groups"][0]["group_id"] == c["id"]
        # The connector's own view of the task.
        task = client.get(f"/api/v1/connectors/wecom/mass-sends/{zs['id']}", headers=h).json()
        assert task["chat_type"] == "group" and task["msgid"]
        # 41063 (WeCom still dispatching): results kept, asked again later — no error.
        lisi_msg = next(m for m, t in fake.tasks.items() if t["sender"] == "lisi")
        fake.dispatching.add(lisi_msg)
        r = client.post(
            f"/api/v1/connectors/wecom/mass-sends/{by_sender['lisi']['id']}/refresh", headers=h
        )
        assert r.status_code == 200 and r.json()["progress"] == "pending_confirmation"

        # WeCom's cap: a group receives at most 4 of the corp's mass messages a month. wrA
        # has 1 now; three more reach the cap; the fifth leaves wrA out (over_cap) and sends
        # wrB's… wrB has reached it too, so zhangsan's task is refused and WeCom not asked.
        for i in range(3):
            client.post(f"/api/v1/communities/{cid}/wecom-posts", headers=h,
                        json={"idempotency_key": f"wk-cap-{i}", "text": f"第{i}条",
                              "group_ids": [a["id"], b["id"]]})  # fmt: skip
        before = len(fake.tasks)
        r = client.post(f"/api/v1/communities/{cid}/wecom-posts", headers=h,
                        json={"idempotency_key": "wk-over", "text": "第五条",
                              "group_ids": [a["id"], b["id"], c["id"]]})  # fmt: skip
        over = {t["sender"]: t for t in r.json()["items"]}
        assert over["zhangsan"]["progress"] == "refused"
        assert {g["status"] for g in over["zhangsan"]["groups"]} == {"over_cap"}
        assert over["lisi"]["progress"] == "pending_confirmation"  # wrC had 1 (lisi's first)
        assert len(fake.tasks) == before + 1
        with runtime.read_sessions() as session:
            counts = repository.receipts(
                session, ws, ["wrA", "wrB", "wrC"], wecom.month_of(utcnow())
            )
        assert counts == {"wrA": 4, "wrB": 4, "wrC": 2}

        # WeCom refuses the sender (not a member of the corp): failed with WeCom's errcode,
        # the group's count given back.
        d = _group(client, h, cid, name="福利5群", platform="wecom", chat_id="wrD",
                   owner_wecom_userid="wangwu")  # fmt: skip
        r = client.post(f"/api/v1/communities/{cid}/wecom-posts", headers=h,
                        json={"idempotency_key": "wk-bad", "text": "hi", "group_ids": [d["id"]]})  # fmt: skip
        failed = r.json()["items"][0]
        assert failed["progress"] == "failed" and failed["errcode"] == 40003
        with runtime.read_sessions() as session:
            assert repository.receipts(session, ws, ["wrD"], wecom.month_of(utcnow())) == {"wrD": 0}


def test_calendar_slot_to_a_wecom_group_is_one_wecom_task(client: Any, runtime: Any) -> None:
    with fake_wecom() as fake:
        ws, h = _workspace(runtime, fake)
        fake.chats["wrA"] = "zhangsan"
        cid = client.post("/api/v1/communities", json={"name": "快闪群", "kind": "welfare"},
                          headers=h).json()["id"]  # fmt: skip
        g = _group(client, h, cid, name="企微1群", platform="wecom", chat_id="wrA", owner="张三",
                   owner_wecom_userid="zhangsan")  # fmt: skip
        plain = _group(
            client, h, cid, name="企微2群", platform="wecom", chat_id="wrB", owner="李四"
        )
        tomorrow = (datetime.now(SH) + timedelta(days=1)).date()
        at = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 20, 0, tzinfo=SH)
        post = client.post(f"/api/v1/communities/{cid}/posts", headers=h,
                           json={"title": "周五拼团", "text": "三人成团",
                                 "link_url": "https://shop.example/g", "at": "20:00"}).json()  # fmt: skip
        assert calendar.send_due(runtime, at + timedelta(minutes=1)) == 2
        assert calendar.send_due(runtime, at + timedelta(minutes=5)) == 0
        sends = {s["group_id"]: s for s in client.get(
            f"/api/v1/community-posts/{post['id']}/sends", headers=h).json()}  # fmt: skip
        through = sends[g["id"]]
        assert through["wecom_progress"] == "pending_confirmation" and through["task_id"] is None
        assert sends[plain["id"]]["task_status"] == "open"  # no owner userid: the owner task
        [task] = fake.group_templates()
        assert task["sender"] == "zhangsan" and task["chat_id_list"] == ["wrA"]
        assert task["text"]["content"] == f"三人成团\n{through['short_url']}"
        listed = client.get(f"/api/v1/communities/{cid}/wecom-posts", headers=h).json()["items"]
        assert [t["id"] for t in listed] == [through["wecom_mass_send_id"]]
        fake.confirm(next(iter(fake.tasks)))
        group_sends.refresh(runtime, ws, through["wecom_mass_send_id"])
        sends = client.get(f"/api/v1/community-posts/{post['id']}/sends", headers=h).json()
        assert {s["wecom_progress"] for s in sends if s["group_id"] == g["id"]} == {"sent"}


def test_a_recorded_group_task_is_sent_to_wecom_once(runtime: Any) -> None:
    """Four dispatchers race for one recorded task, then the recovery pass runs: one WeCom
    task. A task recorded by a caller that crashed before dispatching is sent by the pass."""
    with fake_wecom() as fake:
        ws, _h = _workspace(runtime, fake)
        fake.chats.update({"wrA": "zhangsan", "wrB": "zhangsan"})
        with session_scope(runtime.sessions) as session:
            row_id, fresh = group_sends.record_group_send(
                session, ws, idempotency_key="race", sender="zhangsan", chat_ids=["wrA"],
                text="一次",
            )  # fmt: skip
        assert fresh

        errors = errors_in_threads(lambda: group_sends.dispatch(runtime, ws, row_id), 4)
        assert errors == []
        group_sends.poll(runtime, utcnow() + timedelta(minutes=5), min_age=timedelta(0))
        assert len(fake.group_templates()) == 1

        # A caller that committed its record and crashed: the pass sends it once it is stale.
        with session_scope(runtime.sessions) as session:
            crashed, _ = group_sends.record_group_send(
                session, ws, idempotency_key="crashed", sender="zhangsan", chat_ids=["wrB"],
                text="恢复",
            )  # fmt: skip
        group_sends.poll(runtime, min_age=timedelta(0))
        assert len(fake.group_templates()) == 1  # not yet stale: its caller may be calling
        group_sends.poll(runtime, utcnow() + timedelta(minutes=2), min_age=timedelta(0))
        group_sends.poll(runtime, utcnow() + timedelta(minutes=3), min_age=timedelta(0))
        assert [t["chat_id_list"] for t in fake.group_templates()] == [["wrA"], ["wrB"]]
        with runtime.read_sessions() as session:
            assert group_sends.view(session.get(group_sends.WecomMassSend, crashed)).progress == (
                "pending_confirmation"
            )
