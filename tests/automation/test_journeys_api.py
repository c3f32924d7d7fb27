"""The journeys API in one flow: create, 422s that name the field, publish, enrol, pause,
roles."""

from __future__ import annotations

from typing import Any

from testkit import make_key


def test_journey_api_flow(client: Any, owner: dict[str, str], runtime: Any) -> None:
    tag = client.post("/api/v1/tags", json={"name": "新人"}, headers=owner).json()
    from liebian.contacts.models import Tag
    from liebian.contacts.service import ensure_ids
    from liebian.kit.db import session_scope

    with session_scope(runtime.sessions) as session:
        ws = session.get(Tag, tag["id"]).workspace_id
        ensure_ids(session, ws, {"a1", "a2"})
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "t", "type": "add_tag", "tag_ids": [tag["id"]]},
            {"id": "w", "type": "wait", "duration": {"days": 1}},
        ],
    }
    r = client.post("/api/v1/journeys", json={"name": "新人旅程", "definition": definition},
                    headers=owner)  # fmt: skip
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    assert r.json()["status"] == "draft"
    bad_cases = [
        ({"steps": [{"id": "t", "type": "add_tag", "tag_ids": ["tag_nope"]}]}, "unknown_tag"),
        ({"steps": [{"id": "x", "type": "branch", "condition": {"type": "segment",
                     "segment_id": "seg_nope"}}]}, "unknown_segment"),
        ({"steps": [{"id": "h", "type": "webhook", "url": "http://10.0.0.1/x"}]},
         "private_webhook_url"),
        ({"steps": [{"id": "s", "type": "send", "channel_id": "chn_1",
                     "content": {"text": "{{ contact.secret }}"}}]}, "template_unknown_field"),
        ({"steps": [{"id": "a", "type": "wait", "duration": {"hours": 1}, "next": "a"}]},
         "journey_loop"),
    ]  # fmt: skip
    runtime.settings.allow_private_webhooks = False
    for steps, code in bad_cases:
        r = client.patch(f"/api/v1/journeys/{jid}",
                         json={"definition": {"trigger": {"type": "manual"}, **steps}},
                         headers=owner)  # fmt: skip
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == code, r.text
        assert r.json()["error"]["details"]["field"].startswith("steps[0]"), r.text
    runtime.settings.allow_private_webhooks = True
    r = client.post("/api/v1/journeys", json={"name": "新人旅程", "definition": definition},
                    headers=owner)  # fmt: skip
    assert r.status_code == 409
    r = client.post("/api/v1/journeys", json={"name": "x", "definition": definition, "z": 1},
                    headers=owner)  # fmt: skip
    assert r.status_code == 422
    # enrolment needs a live journey
    r = client.post(f"/api/v1/journeys/{jid}/enrol", json={"external_ids": ["a1"]}, headers=owner)
    assert r.status_code == 409
    r = client.post(f"/api/v1/journeys/{jid}/publish", headers=owner)
    assert r.json() == {"id": jid, "version": 1, "status": "live"}
    r = client.post(f"/api/v1/journeys/{jid}/enrol", json={"external_ids": ["a1", "zz"]},
                    headers=owner)  # fmt: skip
    assert r.status_code == 422 and r.json()["error"]["details"]["missing"] == ["zz"]
    r = client.post(f"/api/v1/journeys/{jid}/enrol", json={"external_ids": ["a1", "a2"]},
                    headers=owner)  # fmt: skip
    assert r.json() == {"entered": 2, "skipped": 0}
    r = client.post(f"/api/v1/journeys/{jid}/enrol", json={"external_ids": ["a1"]}, headers=owner)
    assert r.json() == {"entered": 0, "skipped": 1}
    assert client.post(f"/api/v1/journeys/{jid}/pause", headers=owner).json()["status"] == "paused"
    assert client.post(f"/api/v1/journeys/{jid}/pause", headers=owner).status_code == 409
    assert client.post(f"/api/v1/journeys/{jid}/resume", headers=owner).json()["status"] == "live"
    _ws, viewer = make_key(runtime, "analyst", ws)
    assert client.get("/api/v1/journeys", headers=viewer).json()[0]["id"] == jid
    assert client.post(f"/api/v1/journeys/{jid}/pause", headers=viewer).status_code == 403
    # run the steps, then explain, dry run and stats
    from liebian.automation.executor import Executor

    ex = Executor(runtime.sessions, runtime=runtime)
    try:
        assert ex.run_until_idle() == 4
    finally:
        ex.close()
    r = client.get("/api/v1/journeys/explain", params={"contact": "a1"}, headers=viewer)
    assert r.status_code == 200, r.text
    (run,) = r.json()["runs"]
    assert run["status"] == "completed"
    assert [(x["step_id"], x["status"]) for x in run["steps"]] == [("t", "done"), ("w", "done")]
    r = client.post(f"/api/v1/journeys/{jid}/dry-run", json={"contact": "a2"}, headers=viewer)
    assert [x["step_id"] for x in r.json()["steps"]] == ["t", "w"], r.text
    assert r.json()["would_exit"] is False
    r = client.post(f"/api/v1/journeys/{jid}/dry-run", json={"contact": "nobody"}, headers=viewer)
    assert r.status_code == 422
    stats = client.get(f"/api/v1/journeys/{jid}/stats", headers=viewer).json()
    assert (stats["entered"], stats["completed"]) == (2, 2)
    assert [(x["step_id"], x["reached"], x["conversion"]) for x in stats["steps"]] == [
        ("t", 2, 1.0),
        ("w", 2, 1.0),
    ]
    templates = client.get("/api/v1/journey-templates", headers=viewer).json()
    assert {t["id"] for t in templates} >= {"warmup_7day", "birthday"}
    from liebian.channels.config import ChannelInput, create_channel

    with session_scope(runtime.sessions) as session:
        chn, _ = create_channel(
            session,
            runtime,
            ws,
            ChannelInput(kind="webhook", name="h", config={"url": "http://127.0.0.1:9/x"}),
        )
        chn_id = chn.id
    r = client.post(
        "/api/v1/journeys/from-template",
        json={"template": "birthday", "channel_id": chn_id, "publish": True},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["name"]) == ("live", "生日关怀")
    r = client.post(
        "/api/v1/journeys/from-template",
        json={"template": "nope", "channel_id": chn_id},
        headers=owner,
    )
    assert r.json()["error"]["code"] == "unknown_template"
    r = client.post(f"/api/v1/journeys/{jid}/archive", headers=owner)
    assert r.json() == {"id": jid, "status": "archived", "runs_exited": 0}
