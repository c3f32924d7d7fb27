"""The lean path for the group-buy and assist pages (/g, /a): an anonymous friend gets, byte
for byte, what the routes render (campaigns/pages.py), the same page_view event, progress
within the 2 s bound, a campaign change on the next view; a signed-in person, a ``?t=``
token, an unknown id and every other request are the routes' (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from fission_helpers import ASSIST_UNLOCK, GROUP_BUY, create

from liebian.campaigns.page_fast_path import HARD_TTL, ParticipantPagesApp, activity_target

VID = re.compile(rb"lb_vid=[A-Za-z0-9_-]+")
UA_WECHAT = "Mozilla/5.0 (iPhone) Mobile/15E148 MicroMessenger/8.0.44 NetType/WIFI"


def _same_answer(lean: Any, full: Any) -> None:
    assert lean.status_code == full.status_code, lean.text
    assert lean.content == full.content
    strip = [(k, VID.sub(b"lb_vid=<id>", v)) for k, v in lean.headers.raw if k != b"date"]
    assert strip == [(k, VID.sub(b"lb_vid=<id>", v)) for k, v in full.headers.raw if k != b"date"]


def _events(runtime: Any, visitor: str) -> list[tuple[Any, ...]]:
    runtime.flush_events()
    return [tuple(r) for r in runtime.event_store.query(
        "SELECT event, campaign_id, user_id, platform, properties FROM events"
        " WHERE visitor_id = $v ORDER BY event", {"v": visitor})]  # fmt: skip


def test_activity_paths() -> None:
    assert activity_target("/g/grp_1") == ("group", "grp_1")
    assert activity_target("/a/ast_1") == ("assist", "ast_1")
    for other in ("/g/", "/g/grp_1/join", "/a/x/help", "/p/c", "/gx/1", "/g/" + "x" * 65):
        assert activity_target(other) is None, other


def test_group_and_assist_pages_match_the_routes(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    lean_app: ParticipantPagesApp = client.app.pages
    full = TestClient(client.app.api, base_url="http://sho.rt", follow_redirects=False)
    gcid = create(client, owner, "group_buy", {**GROUP_BUY, "tiers": [{"size": 3, "price": 9_900}]},
                  name="三人团 <i>")  # fmt: skip
    group = client.post(f"/api/v1/campaigns/{gcid}/groups", headers=owner,
                        json={"leader_external_id": "lead"}).json()["group_id"]  # fmt: skip
    acid = create(client, owner, "assist", ASSIST_UNLOCK, name="助力")
    assist = client.post(f"/api/v1/campaigns/{acid}/assists", headers=owner,
                         json={"external_id": "owner"}).json()["assist_id"]  # fmt: skip
    gpath, apath = f"/g/{group}", f"/a/{assist}"

    def both(path: str, **kwargs: Any) -> tuple[Any, Any]:
        client.cookies.clear()
        full.cookies.clear()
        served = lean_app.served
        lean = client.get(path, **kwargs)
        assert lean_app.served == served + 1, f"{path} was not served by the lean path"
        return lean, full.get(path, **kwargs)

    for path in (gpath, apath):
        for ua in ("Mozilla/5.0 (Linux; Android 14) Mobile Safari/537.36", UA_WECHAT):
            lean, direct = both(path, headers={"user-agent": ua})
            _same_answer(lean, direct)
            assert 'id="sign-in"' in lean.text and "set-cookie" in lean.headers
    # The page_view lines, as the route writes them.
    for n, path in (("1", gpath), ("2", apath)):
        client.cookies.clear()
        full.cookies.clear()
        client.get(path, headers={"cookie": f"lb_vid=lean-visitor-0{n}", "user-agent": UA_WECHAT})
        full.get(path, headers={"cookie": f"lb_vid=full-visitor-0{n}", "user-agent": UA_WECHAT})
        lean_events = _events(runtime, f"lean-visitor-0{n}")
        assert lean_events == _events(runtime, f"full-visitor-0{n}") and len(lean_events) == 1

    # Progress: a join is seen once the cached page is re-read (≤ 2 s: here, made stale).
    cache = lean_app.cache
    key = ("group", group)
    assert cache._refresh_activities([key])[key] is cache.activities.peek(key)
    assert client.post(f"/api/v1/groups/{group}/join", headers=owner,
                       json={"external_id": "friend"}).status_code == 200  # fmt: skip
    refreshed = cache._refresh_activities([key])[key]
    assert refreshed is not None and b'<b id="members">2</b>' in refreshed.html
    for slot in cache.activities._entries.values():
        slot.loaded_at -= HARD_TTL
    lean, direct = both(gpath)
    _same_answer(lean, direct)
    assert '<b id="members">2</b>' in lean.text
    # A campaign change shows on the very next view.
    assert client.post(f"/api/v1/campaigns/{acid}/pause", headers=owner).status_code == 200
    lean, direct = both(apath)
    _same_answer(lean, direct)
    assert 'id="help"' not in lean.text

    # The routes': unknown ids (Chinese 404 pages), a token, a sign-in cookie.
    served = lean_app.served
    for path, title in (("/g/grp_nope", "拼团不存在"), ("/a/ast_nope", "助力活动不存在")):
        lean = client.get(path)
        _same_answer(lean, full.get(path))
        assert lean.status_code == 404 and title in lean.text
    assert client.get(f"{gpath}?t=v1.x.1.y").status_code == 401
    assert client.get(gpath, headers={"cookie": "lb_ps=v1.x"}).status_code == 200
    assert client.get(apath, headers={"cookie": "lb_pt=v1.x.1.y"}).status_code == 200
    assert lean_app.served == served
