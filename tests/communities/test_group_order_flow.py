"""Messages against the rules (violations, ladder tasks, alerts), WeCom group joins and leaves
through the connector's real callback endpoint (signed and encrypted as WeCom does), and a
date-derived tier that moves."""

from __future__ import annotations

import base64
import time
from typing import Any

import xmltodict
from community_helpers import WECHAT_UA, mother_baby
from sqlalchemy import select
from wechatpy.enterprise.crypto import WeChatCrypto

from liebian.channels.models import StaffTask

CORP_ID, SECRET, TOKEN = "ww0123456789abcdef", "agent-secret-0123456789", "CallbackToken42"
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")


def _chat_event(change: str, chat_id: str, detail: str = "", members: tuple[str, ...] = ()) -> str:
    extra = f"<UpdateDetail><![CDATA[{detail}]]></UpdateDetail>" if detail else ""
    if members:
        extra += f"<MemChangeCnt>{len(members)}</MemChangeCnt><MemChangeList>"
        extra += "".join(f"<Item>{m}</Item>" for m in members) + "</MemChangeList>"
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]>"
        f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]>"
        "</MsgType><Event><![CDATA[change_external_chat]]></Event>"
        f"<ChatId><![CDATA[{chat_id}]]></ChatId><ChangeType><![CDATA[{change}]]></ChangeType>"
        f"{extra}</xml>"
    )


def _post_callback(client: Any, url: str, xml: str) -> Any:
    now = str(int(time.time()))
    nonce = f"n{time.perf_counter_ns()}"
    sealed = xmltodict.parse(WeChatCrypto(TOKEN, AES_KEY, CORP_ID).encrypt_message(xml, nonce, now))
    body = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID>"
        f"<Encrypt><![CDATA[{sealed['xml']['Encrypt']}]]></Encrypt></xml>"
    )
    params = {"msg_signature": sealed["xml"]["MsgSignature"], "timestamp": now, "nonce": nonce}
    return client.post(url, params=params, content=body, headers={"content-type": "text/xml"})


def test_rules_ladder_wecom_joins_and_tier_moves(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    h = owner
    rules = {"banned_keywords": ["代购"], "block_links": True, "flood_per_minute": 3,
             "alert_keywords": ["多少钱"]}  # fmt: skip
    client.post(
        "/api/v1/contact-attributes", json={"key": "baby_birthday", "type": "date"}, headers=h
    )
    cid = client.post("/api/v1/communities", json=mother_baby(rules=rules), headers=h).json()["id"]
    grp = client.post(
        f"/api/v1/communities/{cid}/groups",
        json={"name": "北京群", "tier": "bj", "platform": "wecom", "owner": "zhangsan", "chat_id": "wrG1", "capacity": 2},
        headers=h,
    ).json()  # fmt: skip
    client.post(
        f"/api/v1/communities/{cid}/groups", json={"name": "0–3 群", "tier": "t03"}, headers=h
    )
    client.post(
        f"/api/v1/communities/{cid}/groups",
        json={"name": "3–8 群", "tier": "t38", "owner": "lisi"},
        headers=h,
    )

    # -- WeCom: the connection, then joins and leaves through the signed, encrypted callback.
    conn = client.put("/api/v1/connectors/wecom", headers=h, json={
        "corp_id": CORP_ID, "agent_secret": SECRET, "token": TOKEN, "encoding_aes_key": AES_KEY})  # fmt: skip
    assert conn.status_code == 200, conn.text
    callback = "/api/v1/connectors/wecom/callback/" + conn.json()["id"]
    for xml in (
        _chat_event("update", "wrG1", "add_member", ("wmMom1", "wmMom2", "wmMom3", "zhangsan")),
        _chat_event("update", "wrG1", "del_member", ("wmMom2",)),
        _chat_event("update", "wrOther", "add_member", ("wmMom9",)),  # not one of our groups
    ):
        assert _post_callback(client, callback, xml).status_code == 200
    members = client.get(
        f"/api/v1/communities/{cid}/members?group_id={grp['id']}", headers=h
    ).json()["items"]
    assert sorted((m["scene"], m["status"]) for m in members) == [
        ("wecom", "joined"),
        ("wecom", "joined"),
        ("wecom", "left"),
    ]  # the staff member is not one
    g = next(
        x
        for x in client.get(f"/api/v1/communities/{cid}/groups", headers=h).json()
        if x["id"] == grp["id"]
    )
    assert g["members"] == 2 and g["status"] == "full"  # three joined (counted past 2), one left

    # -- Messages: a violation steps the ladder; each action is an owner task.
    def send(mid: str, text: str, who: str = "wecom:wmMom1") -> dict[str, Any]:
        r = client.post("/api/v1/community-messages", headers=h, json={
            "messages": [{"message_id": mid, "chat_id": "wrG1", "external_id": who, "text": text}]})  # fmt: skip
        assert r.status_code == 200, r.text
        return dict(r.json()["results"][0])

    assert send("m1", "早上好")["violation"] is None
    first = send("m2", "有代购吗")["violation"]
    assert (first["rule"], first["step"], first["action"]) == ("keyword", 1, "warn")
    assert send("m2", "有代购吗")["duplicate"] is True  # re-sent: counted once
    second = send("m3", "看 https://x.example/a")["violation"]
    assert (second["rule"], second["action"]) == ("link", "mute")
    alert = send("m4", "这个多少钱")
    assert alert["violation"] is None and alert["alert_words"] == ["多少钱"]
    third = send("m5", "www.spam.cn 代购")["violation"]
    assert third["action"] == "remove"
    # Flood: the 4th message within a minute from one sender is one violation (3 allowed).
    flood = [send(f"f{i}", "哈哈", who="wecom:wmMom3")["violation"] for i in range(5)]
    assert [v and v["rule"] for v in flood] == [None, None, None, "flood", None]
    with runtime.read_sessions() as session:
        tasks = session.scalars(
            select(StaffTask).where(StaffTask.source == "community").order_by(StaffTask.id)
        ).all()
        assert [t.kind for t in tasks] == [
            "community_warn",
            "community_mute",
            "community_keyword",
            "community_remove",
            "community_warn",
        ]
        assert (
            tasks[1].assignee == "zhangsan"
            and "禁言" in tasks[1].title
            and "https://x.example/a" in tasks[1].body
        )
    removed = client.get(
        f"/api/v1/communities/{cid}/members?group_id={grp['id']}", headers=h
    ).json()["items"]
    assert sorted(m["status"] for m in removed) == ["joined", "left", "removed"]
    kinds = [
        a["kind"]
        for a in client.get(f"/api/v1/communities/{cid}/alerts", headers=h).json()["items"]
    ]
    assert kinds.count("violation") == 4 and kinds.count("keyword") == 1
    bad = client.post("/api/v1/community-messages", headers=h, json={"messages": [
        {"message_id": "x", "chat_id": "wrG1", "external_id": "a", "text": "ok"},
        {"message_id": "y", "chat_id": "nope", "external_id": "a", "text": "ok"}]})  # fmt: skip
    assert bad.status_code == 404 and bad.json()["error"]["details"]["field"] == "messages[1]"

    # -- A date-derived tier moves: a baby born 2023-12-20 is offered the 3–8 group at 3.
    page = client.get(f"/c/{cid}", headers={"user-agent": WECHAT_UA})
    r = client.post(f"/c/{cid}", data={"q_birthday": "2023-12-20", "q_city": "上海"},
                    headers={"user-agent": WECHAT_UA}, cookies={"lb_vid": page.cookies["lb_vid"]})  # fmt: skip
    assert r.status_code == 200 and "0–3 群" in r.text
    assert (
        client.get(f"/api/v1/communities/{cid}/tier-moves?as_of=2026-12-19", headers=h).json() == []
    )
    due = client.post(f"/api/v1/communities/{cid}/tier-moves?as_of=2026-12-20", headers=h).json()
    assert [(m["from_tier"], m["to_tier"]) for m in due] == [("t03", "t38")] and due[0]["task_id"]
    again = client.post(f"/api/v1/communities/{cid}/tier-moves?as_of=2026-12-21", headers=h).json()
    assert again[0]["task_id"] == due[0]["task_id"]  # offered once

    # -- Metrics over the events those actions wrote through the spool (the flusher loads them).
    deadline = time.monotonic() + 20
    while True:
        r = client.get(f"/api/v1/communities/{cid}/metrics?by=group", headers=h)
        assert r.status_code == 200, r.text
        summary = {row["key"]: row for row in r.json()["summary"]}
        if summary.get(grp["id"], {}).get("messages") == 10 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    g1 = summary[grp["id"]]
    assert (g1["joins"], g1["leaves"], g1["messages"], g1["violations"]) == (3, 2, 10, 4)
    assert (
        client.get(
            f"/api/v1/communities/{cid}/metrics?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
            headers=h,
        ).status_code
        == 422
    )
