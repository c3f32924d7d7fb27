"""Tracked short links in message templates: ``{{ links.<slug> }}`` prints the workspace's short
link with the person's token; a click on it is stored under that person's user id (their
timeline sees it), a tampered token leaves the click anonymous, and a template naming a link
the workspace does not have is refused when the journey is saved."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from journey_support import Clock, counting_receiver, workspace_with_contacts

from liebian.app.runtime import Runtime
from liebian.automation import service
from liebian.automation.executor import Executor, ExecutorConfig
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import Invalid

WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI"
)


def _link(runtime: Runtime, ws: str, slug: str) -> None:
    from liebian.links.schemas import LinkCreate
    from liebian.links.service import LinkPolicy, create_link

    with session_scope(runtime.sessions) as s:
        actor = Principal(workspace_id=ws, role=Role.owner)
        create_link(s, actor, LinkCreate(url="https://example.com/class", slug=slug), LinkPolicy())


def _clicks(runtime: Runtime, ws: str, want: int) -> list[tuple[Any, ...]]:
    """The workspace's stored clicks (user id, link slug order irrelevant), once ``want`` are in
    (the app's flusher loads them in the background)."""
    rows: list[tuple[Any, ...]] = []
    for _ in range(400):
        rows = runtime.event_store.query(
            "SELECT user_id FROM events WHERE workspace_id = $ws AND event = 'click'", {"ws": ws}
        )
        if len(rows) >= want:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{len(rows)} clicks stored, wanted {want}")


def test_tracked_links_credit_the_click_to_the_person(runtime: Runtime, client: Any) -> None:
    from liebian.channels.config import ChannelInput, create_channel

    ws, contacts = workspace_with_contacts(runtime.sessions, 1)
    other_ws, _ = workspace_with_contacts(runtime.sessions, 1)
    _link(runtime, ws, "trk1")
    _link(runtime, ws, "spring-sale")
    _link(runtime, other_ws, "theirs")
    text = "试听课：{{ links.trk1 }} 春季：{{ links['spring-sale'] }}"
    with counting_receiver() as rx:
        with session_scope(runtime.sessions) as s:
            chn, _ = create_channel(s, runtime, ws, ChannelInput(kind="webhook", name="hook",
                                                                 config={"url": rx.url}))  # fmt: skip

            def send(content: str) -> dict[str, Any]:
                return {"trigger": {"type": "manual"}, "steps": [
                    {"id": "msg", "type": "send", "channel_id": chn.id,
                     "category": "transactional", "content": {"text": content}}]}  # fmt: skip

            for bad in ("{{ links.nope }}", "{{ links.theirs }}"):
                with pytest.raises(Invalid) as err:
                    service.create(s, ws, "坏链接", send(bad))
                assert err.value.code == "unknown_link"
                assert err.value.details == {"field": "steps[0].content.text"}
            j = service.create(s, ws, "发链接", send(text))
            service.publish(s, j)
            service.enrol(s, j, contacts, trigger="manual")
        ex = Executor(runtime.sessions, clock=Clock(utcnow() + timedelta(seconds=1)),
                      config=ExecutorConfig(), runtime=runtime)  # fmt: skip
        try:
            ex.run_until_idle()
        finally:
            ex.close()
        [body] = rx.bodies
    sent = body.get("content", body)["text"]
    base = runtime.settings.base_url.rstrip("/")
    urls = re.findall(r"http\S+", sent)
    assert [u.split("?")[0] for u in urls] == [f"{base}/trk1", f"{base}/spring-sale"]
    token = urls[0].split("?lb_u=", 1)[1]
    assert token and urls[1].endswith(f"?lb_u={token}")

    headers = {"user-agent": WECHAT_UA}
    r = client.get(f"/trk1?lb_u={token}", headers=headers)
    assert r.status_code == 302
    # Someone else's phone (no visitor cookie of the person's) with an edited token.
    client.cookies.clear()
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert client.get(f"/trk1?lb_u={tampered}", headers=headers).status_code == 302
    client.cookies.clear()
    assert client.get("/spring-sale?lb_u=%%%", headers=headers).status_code == 302
    # A MAC of the right length in non-ASCII text (found by fuzzing: was an exception).
    hostile = token.split(".")[0] + "." + "%C3%A9" * 16
    assert client.get(f"/spring-sale?lb_u={hostile}", headers=headers).status_code == 302
    users = sorted((row[0] or "") for row in _clicks(runtime, ws, 4))
    assert users == ["", "", "", "u000000"]
    # The person's timeline (beside the journey's own events) shows their click, not the
    # strangers'. (Later clicks from the person's own browser are theirs too: the click tied
    # its visitor id to them.)
    events = runtime.event_store.person_events(ws, ["u000000"], [], before=None, limit=20)
    assert [e.event for e in events].count("click") == 1
