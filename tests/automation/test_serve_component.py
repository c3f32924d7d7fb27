"""The embedded default: `liebian serve`'s app runs the journeys component — a tag added
through the API starts a journey (bus → triggers thread) and its steps run by themselves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from journey_support import counting_receiver

from liebian.kit.settings import Settings
from testkit import TEST_SECRET


def test_component_triggers_and_runs_steps(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the embedded default; the executor's storage is covered on both backends")
    from fastapi.testclient import TestClient

    from liebian.app.factory import create_app
    from liebian.app.runtime import Runtime
    from liebian.kit.db import session_scope
    from liebian.workspaces.service import bootstrap

    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key=TEST_SECRET,
                        allow_private_webhooks=True, jobs_interval=0, webhook_interval=0,
                        segments_rebuild_interval=0, gc_freeze=False, journeys_interval=0.05,
                        journeys_scan_interval=0)  # fmt: skip
    runtime = Runtime.build(settings)
    with session_scope(runtime.sessions) as s:
        _ws, key = bootstrap(s, "组件")
    owner = {"Authorization": f"Bearer {key}"}
    with counting_receiver() as rx, TestClient(create_app(settings, runtime)) as client:
        vip = client.post("/api/v1/tags", json={"name": "VIP"}, headers=owner).json()["id"]
        r = client.post("/api/v1/journeys", headers=owner, json={"name": "VIP 欢迎", "definition": {
            "trigger": {"type": "tag_added", "tag_id": vip},
            "steps": [{"id": "hi", "type": "webhook", "url": rx.url}]}})  # fmt: skip
        assert r.status_code == 201, r.text
        client.post(f"/api/v1/journeys/{r.json()['id']}/publish", headers=owner)
        from liebian.contacts.service import ensure_ids

        with session_scope(runtime.sessions) as s:
            ensure_ids(s, _ws.id, {"v1"})
        r = client.post("/api/v1/contacts/v1/tags", json={"tag_ids": [vip]}, headers=owner)
        assert r.status_code == 200, r.text
        # The receiver counts the POST before the executor marks the step sent: wait for both.
        deadline = time.monotonic() + 20
        while True:
            explained: Any = client.get("/api/v1/journeys/explain", params={"contact": "v1"},
                                        headers=owner).json()  # fmt: skip
            runs = explained.get("runs") or [{}]
            done = (runs[0].get("steps") or [{}])[0].get("result") is not None
            if (rx.total >= 1 and done) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    runtime.close()
    assert rx.total == 1, explained
    assert explained["runs"][0]["steps"][0]["result"] == "sent"
