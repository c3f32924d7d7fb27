"""The lean participant pages (campaigns/page_fast_path.py): an anonymous friend gets, byte
for byte, what the FastAPI routes render for the same state, a change shows on the next view
(or within the 2 s bound for progress), and every other request is the routes' to answer."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

from fastapi.testclient import TestClient
from fission_helpers import INVITE, create, join

from liebian.campaigns.page_fast_path import (
    HARD_TTL,
    ParticipantPagesApp,
    RefreshingCache,
    page_target,
)
from liebian.kit.ratelimit import limiter_for

UA_WECHAT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.44(0x18002c2f) NetType/WIFI Language/zh_CN"
)
UA_PHONE = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Mobile Safari/537.36"
VID = re.compile(rb"lb_vid=[A-Za-z0-9_-]+")


def test_paths_served() -> None:
    assert page_target("/p/cmp_1") == ("cmp_1", None)
    assert page_target("/p/cmp_1/AbC123") == ("cmp_1", "AbC123")
    for other in ("/p/", "/p/cmp_1/", "/p/cmp_1/me", "/p/cmp_1/me/poster", "/p/c/a/b", "/g/grp_1",
                  "/p/c%20x", "/p/" + "x" * 65, "/api/v1/p/c"):  # fmt: skip
        assert page_target(other) is None, other


def test_now_text_is_the_record_time(monkeypatch: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from liebian.campaigns import fission_events
    from liebian.events.store.base import record_time

    # Across seconds, at their edges, and back in time (a clock step): the record's text.
    for ns in (1_796_289_119_000_000_000, 1_796_289_119_999_999_999, 1_796_289_120_000_400_000,
               1_796_289_120_500_000_000, 1_700_000_000_123_000_000, 1_796_289_120_250_999_000,
               1_000_000):  # fmt: skip
        monkeypatch.setattr(fission_events.time, "time_ns", lambda ns=ns: ns)
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
        assert fission_events.now_text() == record_time(at), ns


def test_refreshing_cache() -> None:
    async def scenario() -> None:
        reads: list[str] = []
        gate = threading.Event()

        def load(value: str) -> Any:
            def read() -> str:
                gate.wait(5)
                reads.append(value)
                return value

            return read

        cache: RefreshingCache[str, str] = RefreshingCache(2)
        # Concurrent misses share one read.
        first = asyncio.ensure_future(cache.get("a", load("a1")))
        second = asyncio.ensure_future(cache.get("a", load("a2")))
        await asyncio.sleep(0)
        gate.set()
        assert await first == "a1" and await second == "a1" and reads == ["a1"]
        assert await cache.get("a", load("a3")) == "a1"  # fresh: no read
        # Past the hard bound, the request waits for a new read.
        cache._entries["a"].loaded_at -= HARD_TTL
        assert await cache.get("a", load("a4")) == "a4"
        # A read overtaken by an invalidation is answered but not kept.
        gate.clear()
        pending = asyncio.ensure_future(cache.get("b", load("b-old")))
        await asyncio.sleep(0.01)
        cache.invalidate("b")
        gate.set()
        assert await pending == "b-old" and cache.peek("b") is None
        assert await cache.get("b", load("b-new")) == "b-new"
        # Nothing is cached for "no such thing"; the LRU keeps its bound.
        assert await cache.get("c", lambda: None) is None and cache.peek("c") is None
        assert await cache.get("d", load("d")) == "d"
        assert len(cache) == 2 and cache.peek("a") is None

        # With a batch reader, misses are read together: 100 codes asked for at once (a
        # campaign's pages coming back after a quiet spell) are one batch, not 100 reads.
        batches: list[list[str]] = []
        hold = threading.Event()
        hold.set()

        def refresh(keys: list[str]) -> dict[str, str | None]:
            hold.wait(5)
            batches.append(sorted(keys))
            if "boom" in keys:
                raise RuntimeError("the database went away")
            return {k: None if k == "gone" else k + "!" for k in keys if k != "skip"}

        def alone(key: str) -> Any:
            return lambda: key + " alone"

        # (Long bounds: nothing goes stale unless the test says so, however slow the machine.)
        batched: RefreshingCache[str, str] = RefreshingCache(400, soft=30, hard=60, refresh=refresh)
        keys = [f"k{i}" for i in range(100)]
        got = await asyncio.gather(*(batched.get(k, alone(k)) for k in keys))
        assert got == [k + "!" for k in keys] and batches == [sorted(keys)]
        assert (batched.loads, batched.batches) == (0, 1)
        # Left out of the batch's answer, or the batch failed: read on its own.
        assert await batched.get("skip", alone("skip")) == "skip alone"
        assert await batched.get("boom", alone("boom")) == "boom alone"
        assert await batched.get("gone", alone("gone")) is None and batched.peek("gone") is None
        assert batched.loads == 2
        # A request for a key the running batch reads waits for that batch; one for another
        # key, for the next batch.
        batches.clear()
        hold.clear()
        first = asyncio.ensure_future(batched.get("p", alone("p")))
        await asyncio.sleep(0.01)
        joined = asyncio.ensure_future(batched.get("p", alone("p")))
        later = asyncio.ensure_future(batched.get("q", alone("q")))
        await asyncio.sleep(0.01)
        hold.set()
        assert [await first, await joined, await later] == ["p!", "p!", "q!"]
        assert batches == [["p"], ["q"]]
        # Soft-stale hits are served as they are and re-read together, in one batch.
        batches.clear()
        now = time.monotonic()
        for key in ("x", "y"):
            batched._entries[key] = type(batched._entries["p"])(key, now - 40)
        assert [await batched.get(k, alone(k)) for k in ("x", "y")] == ["x", "y"]
        while batched._batch is not None:
            await asyncio.sleep(0.01)
        assert batches == [["x", "y"]]
        assert (batched.peek("x"), batched.peek("y")) == ("x!", "y!")
        # The pages come back after a quiet spell (all past the hard bound): the first
        # request's batch reads every recently used page past the soft bound with its own,
        # and the requests for them meanwhile wait for that one batch.
        batches.clear()
        batched.invalidate("boom")
        batched.invalidate("skip")
        for slot in batched._entries.values():
            slot.loaded_at = now - 90
        batched._entries["k5"].loaded_at = now  # fresh: not read again
        hold.clear()
        first = asyncio.ensure_future(batched.get("k0", alone("k0")))
        await asyncio.sleep(0.01)
        meanwhile = asyncio.ensure_future(batched.get("k99", alone("k99")))
        await asyncio.sleep(0.01)
        hold.set()
        assert (await first, await meanwhile) == ("k0!", "k99!")
        assert len(batches) == 1 and "k5" not in batches[0]
        assert set(batches[0]) == {k for k in batched._entries if k != "k5"}
        assert all(now < batched._entries[k].loaded_at < time.monotonic() for k in batches[0])

    asyncio.run(scenario())


def _same_answer(lean: Any, full: Any) -> None:
    assert lean.status_code == full.status_code, lean.text
    assert lean.content == full.content
    headers = [(k, VID.sub(b"lb_vid=<id>", v)) for k, v in lean.headers.raw if k.lower() != b"date"]
    assert headers == [
        (k, VID.sub(b"lb_vid=<id>", v)) for k, v in full.headers.raw if k.lower() != b"date"
    ]


def _events(runtime: Any, visitor: str) -> list[dict[str, Any]]:
    runtime.flush_events()
    columns = ("event", "campaign_id", "channel", "user_id", "platform", "properties")
    rows = runtime.event_store.query(
        f"SELECT {', '.join(columns)} FROM events WHERE visitor_id = $v ORDER BY event",
        {"v": visitor},
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_lean_pages_match_the_routes(
    client: Any, owner: dict[str, str], runtime: Any, settings: Any
) -> None:
    lean_app: ParticipantPagesApp = client.app.pages
    full = TestClient(client.app.api, base_url="http://sho.rt", follow_redirects=False)
    cid = create(client, owner, "invite", INVITE, name="邀请有礼 <b>")
    code = join(client, owner, cid, "alice", nickname="王小明").json()["invite_code"]
    join(client, owner, cid, "bob", referrer_code=code, visitor_id="vb")
    invite, entry = f"/p/{cid}/{code}", f"/p/{cid}?ch=wechat_group"

    def both(path: str, **kwargs: Any) -> tuple[Any, Any]:
        client.cookies.clear()
        full.cookies.clear()
        served = lean_app.served
        lean = client.get(path, **kwargs)
        assert lean_app.served == served + 1, f"{path} was not served by the lean path"
        return lean, full.get(path, **kwargs)

    # A friend, in a browser and in WeChat: the same page, and the routes' bytes and headers.
    pages = {}
    for ua in (UA_PHONE, UA_WECHAT):
        for path in (invite, entry):
            lean, direct = both(path, headers={"user-agent": ua})
            _same_answer(lean, direct)
            assert "set-cookie" in lean.headers and 'id="sign-in"' in lean.text
            pages[ua, path] = lean.content
    assert pages[UA_PHONE, invite] == pages[UA_WECHAT, invite]
    assert '<b id="counted">1</b>' in pages[UA_PHONE, invite].decode()
    # A returning visitor keeps their device cookie (none is set).
    returning = {"cookie": "lb_vid=returning-visitor-1"}
    lean, direct = both(invite, headers=returning)
    _same_answer(lean, direct)
    assert "set-cookie" not in lean.headers

    # The events, as the routes write them (ids and times aside).
    client.cookies.clear()
    full.cookies.clear()
    client.get(invite, headers={"cookie": "lb_vid=lean-visitor-01", "user-agent": UA_WECHAT})
    full.get(invite, headers={"cookie": "lb_vid=full-visitor-01", "user-agent": UA_WECHAT})
    client.get(entry, headers={"cookie": "lb_vid=lean-visitor-02"})
    full.get(entry, headers={"cookie": "lb_vid=full-visitor-02"})
    for n in ("01", "02"):
        lean_events = _events(runtime, f"lean-visitor-{n}")
        assert lean_events == _events(runtime, f"full-visitor-{n}") and lean_events
    assert [e["event"] for e in _events(runtime, "lean-visitor-01")] == [
        "invite_click", "page_view",
    ]  # fmt: skip

    # Progress: the background re-read keeps a page that is still right as it is, and reads
    # again one whose count moved; past its bound (2 s) a request waits for a fresh read.
    cache = lean_app.cache
    key = (cid, code)
    assert cache._refresh_invites([key])[key] is cache.invites.peek(key)
    join(client, owner, cid, "carol", referrer_code=code, visitor_id="vc")
    refreshed = cache._refresh_invites([key])[key]
    assert refreshed is not None and b'<b id="counted">2</b>' in refreshed.html
    for slot in cache.invites._entries.values():
        slot.loaded_at -= HARD_TTL
    lean, direct = both(invite)
    _same_answer(lean, direct)
    assert '<b id="counted">2</b>' in lean.text
    # A campaign change shows on the very next view (invalidated on commit).
    edited = client.patch(f"/api/v1/campaigns/{cid}", json={"name": "改过的名字"}, headers=owner)
    assert edited.status_code == 200, edited.text
    for path in (invite, entry):
        lean, direct = both(path)
        _same_answer(lean, direct)
        assert "改过的名字" in lean.text
    # New rules: alice keeps the terms she joined under (her next tier), the rules card shows
    # the new ones, on both paths.
    tiers = [{**INVITE["tiers"][0]}, {**INVITE["tiers"][1], "reward": {  # type: ignore[dict-item]
        "kind": "gift", "name": "新规则大礼包", "amount": 1}}]  # fmt: skip
    changed = client.patch(
        f"/api/v1/campaigns/{cid}", json={"config": {**INVITE, "tiers": tiers}}, headers=owner
    )
    assert changed.status_code == 200, changed.text
    lean, direct = both(invite)
    _same_answer(lean, direct)
    assert "新规则大礼包" in lean.text and "可得「试听课」" in lean.text
    assert client.post(f"/api/v1/campaigns/{cid}/pause", headers=owner).status_code == 200
    lean, direct = both(invite)
    _same_answer(lean, direct)
    assert 'id="closed"' in lean.text

    # Everything else is the routes': unknown code or campaign (Chinese pages), a sign-in.
    served = lean_app.served
    for path, status, title in ((f"/p/{cid}/nope1234", 404, "邀请链接无效"),
                                ("/p/cmp_unknown", 404, "活动不存在")):  # fmt: skip
        lean = client.get(path)
        _same_answer(lean, full.get(path))
        assert lean.status_code == status and title in lean.text
    assert client.get(f"{invite}?t=v1.x.1.y").status_code == 401  # the token check
    assert client.get(invite, headers={"cookie": "lb_pt=v1.x.1.y"}).status_code == 200
    assert client.head(invite).status_code == full.head(invite).status_code
    assert lean_app.served == served

    # The limits: counted once per request whichever path answers, the same 429 page.
    runtime.extras["limiter"] = limiter_for(settings.model_copy(update={"rate_limit_per_ip": 3}))
    client.cookies.clear()
    assert [client.get(p).status_code for p in (invite, f"/p/{cid}/nope1234", entry)] == [
        200, 404, 200,
    ]  # fmt: skip
    limited = client.get(invite)
    runtime.extras["limiter"] = limiter_for(settings.model_copy(update={"rate_limit_per_ip": 3}))
    assert [full.get(invite).status_code for _ in range(4)] == [200, 200, 200, 429]
    direct = full.get(invite)
    assert limited.status_code == direct.status_code == 429 and limited.content == direct.content
    assert [h for h in limited.headers.raw if h[0] not in (b"date", b"retry-after")] == [
        h for h in direct.headers.raw if h[0] not in (b"date", b"retry-after")
    ]
    assert int(limited.headers["retry-after"]) > 0
