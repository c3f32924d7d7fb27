"""Live codes: API, scans through the real redirect path, alerts, bad input, concurrency."""

from __future__ import annotations

import base64
import io
import secrets
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import segno
from PIL import Image
from sqlalchemy import func, select

from liebian.app.runtime import Runtime
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.links.live_codes import service
from liebian.links.live_codes.models import LiveCodeAlert
from liebian.links.models import LiveCode, LiveCodeTarget, Slug
from testkit import make_key

API = "/api/v1/live-codes"
PHONE = {
    "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN"
}


def _group_qr(text: str = "https://weixin.qq.com/g/AbCdEf", fmt: str = "PNG") -> bytes:
    raw = io.BytesIO()
    segno.make(text).save(raw, kind="png", scale=6)
    image = Image.open(io.BytesIO(raw.getvalue())).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _create(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    body.setdefault("name", "宝妈交流群")
    r = client.post(API, json=body, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _scan(client: Any, slug: str, headers: dict[str, str] | None = None) -> Any:
    """A scan by another phone each time (its own visitor cookie): a phone scanning again
    keeps its place (see the re-scan tests)."""
    client.cookies.clear()
    phone = {"cookie": f"lb_vid={secrets.token_urlsafe(12)}"}
    return client.get(f"/{slug}", headers={**(headers or PHONE), **phone})


def _count(runtime: Runtime, model: Any) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# -- create / read -----------------------------------------------------------------------


def test_create_returns_targets_with_scans_remaining_status(
    client: Any, owner: dict[str, str]
) -> None:
    png = _group_qr()
    out = _create(
        client,
        owner,
        slug="moms",
        channel="wx_group_01",
        alert_below=1,
        targets=[
            {"label": "1群", "image": _b64(png), "capacity": 200},
            {"label": "客服", "url": "https://work.weixin.qq.com/ca/abc", "capacity": 50},
        ],
    )
    assert out["id"].startswith("lc_") and out["slug"] == "moms"
    assert out["short_url"] == "http://sho.rt/moms"
    assert out["qr_url"] == f"http://sho.rt/api/v1/live-codes/{out['id']}/qr"
    assert out["usable_targets"] == 2 and out["total_scans"] == 0
    first, second = out["targets"]
    assert out["current_target_id"] == first["id"]
    assert (first["kind"], first["image_type"], first["url"]) == ("image", "image/png", None)
    assert first["image_url"].endswith(f"/targets/{first['id']}/image")
    assert (second["kind"], second["url"]) == ("url", "https://work.weixin.qq.com/ca/abc")
    assert [t["position"] for t in out["targets"]] == [0, 1]
    assert [t["remaining"] for t in out["targets"]] == [200, 50]
    assert {t["status"] for t in out["targets"]} == {"active"}

    got = client.get(f"{API}/{out['id']}", headers=owner).json()
    assert got == out
    listed = client.get(API, headers=owner, params={"channel": "wx_group_01"}).json()
    assert [x["id"] for x in listed["items"]] == [out["id"]]
    assert client.get(API, headers=owner, params={"channel": "nope"}).json()["items"] == []

    # The console previews the uploaded image with its key.
    image = client.get(first["image_url"], headers=owner)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == png


def test_data_uri_and_jpeg_accepted(client: Any, owner: dict[str, str]) -> None:
    jpeg = _group_qr(fmt="JPEG")
    out = _create(
        client,
        owner,
        targets=[{"image": "data:image/jpeg;base64," + _b64(jpeg), "capacity": 1}],
    )
    assert out["targets"][0]["image_type"] == "image/jpeg"


def test_list_paginates(client: Any, owner: dict[str, str]) -> None:
    ids = [_create(client, owner, name=f"c{i}")["id"] for i in range(3)]
    page1 = client.get(API, headers=owner, params={"limit": 2}).json()
    page2 = client.get(
        API, headers=owner, params={"limit": 2, "cursor": page1["next_cursor"]}
    ).json()
    assert [x["id"] for x in page1["items"] + page2["items"]] == ids[::-1]
    assert page2["next_cursor"] is None


# -- scans -------------------------------------------------------------------------------


def test_scans_fill_targets_in_order_then_show_the_full_page(
    client: Any, owner: dict[str, str]
) -> None:
    out = _create(
        client,
        owner,
        alert_below=0,
        targets=[
            {"url": "https://example.com/a", "capacity": 2},
            {"url": "https://example.com/b", "capacity": 1},
        ],
    )
    slug = out["slug"]
    locations = []
    for _ in range(3):
        r = _scan(client, slug)
        assert r.status_code == 302 and r.headers["cache-control"] == "no-store"
        locations.append(r.headers["location"])
    assert locations == ["https://example.com/a"] * 2 + ["https://example.com/b"]

    full = _scan(client, slug)
    assert full.status_code == 200
    assert "群已满，请联系客服" in full.text
    assert full.headers["x-liebian-live-code"] == "exhausted"

    got = client.get(f"{API}/{out['id']}", headers=owner).json()
    assert [(t["scans"], t["remaining"], t["status"]) for t in got["targets"]] == [
        (2, 0, "full"),
        (1, 0, "full"),
    ]
    assert got["usable_targets"] == 0 and got["total_scans"] == 3
    assert got["current_target_id"] is None


def test_image_target_page_and_signed_image(client: Any, owner: dict[str, str]) -> None:
    png = _group_qr()
    out = _create(
        client,
        owner,
        name="<b>宝妈</b>群",
        targets=[{"label": "3群 <script>", "image": _b64(png), "capacity": 5}],
    )
    page = _scan(client, out["slug"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "长按识别二维码加入群聊" in page.text
    # Operator text is escaped, never markup.
    assert "<script>" not in page.text and "&lt;b&gt;宝妈&lt;/b&gt;群" in page.text
    src = page.text.split('<img src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert src.startswith(f"/api/v1/live-codes/{out['id']}/targets/{out['targets'][0]['id']}")

    # The phone loads the image without a key, thanks to the signature.
    image = client.get(src)
    assert image.status_code == 200 and image.content == png
    assert image.headers["content-type"] == "image/png"
    # A forged or missing signature needs a key.
    forged = src.rsplit("=", 1)[0] + "=" + "0" * 32
    assert client.get(forged).status_code == 401
    assert client.get(src.split("?", 1)[0]).status_code == 401


def test_expired_and_disabled_targets_are_skipped(client: Any, owner: dict[str, str]) -> None:
    past = (utcnow() - timedelta(days=1)).isoformat()
    future = (utcnow() + timedelta(days=7)).isoformat()
    out = _create(
        client,
        owner,
        alert_below=0,
        targets=[
            {"url": "https://example.com/expired", "capacity": 5, "expires_at": past},
            {"url": "https://example.com/off", "capacity": 5, "enabled": False},
            {"url": "https://example.com/live", "capacity": 5, "expires_at": future},
        ],
    )
    assert [t["status"] for t in out["targets"]] == ["expired", "disabled", "active"]
    assert _scan(client, out["slug"]).headers["location"] == "https://example.com/live"

    off = out["targets"][1]["id"]
    r = client.patch(f"{API}/{out['id']}/targets/{off}", json={"enabled": True}, headers=owner)
    assert r.status_code == 200 and r.json()["targets"][1]["status"] == "active"
    assert _scan(client, out["slug"]).headers["location"] == "https://example.com/off"


def test_bots_and_head_requests_do_not_take_places(client: Any, owner: dict[str, str]) -> None:
    out = _create(client, owner, targets=[{"url": "https://example.com/a", "capacity": 1}])
    bot = _scan(client, out["slug"], {"User-Agent": "curl/8.5.0"})
    assert bot.status_code == 302
    assert client.head(f"/{out['slug']}", headers=PHONE).status_code == 302
    got = client.get(f"{API}/{out['id']}", headers=owner).json()
    assert got["targets"][0]["scans"] == 0
    assert _scan(client, out["slug"]).headers["location"] == "https://example.com/a"
    assert client.get(f"{API}/{out['id']}", headers=owner).json()["targets"][0]["scans"] == 1


def test_scan_records_through_the_redirect_hook(
    client: Any, owner: dict[str, str], runtime: Runtime
) -> None:
    calls: list[dict[str, Any]] = []
    runtime.extras["record_click"] = lambda **kw: calls.append(kw)
    out = _create(
        client,
        owner,
        channel="poster_a",
        targets=[{"url": "https://example.com/a", "capacity": 5}],
    )
    _scan(client, out["slug"] + "?qr=1")
    _scan(client, out["slug"], {"User-Agent": "curl/8.5.0"})  # bot: not recorded here
    assert len(calls) == 1
    call = calls[0]
    assert call["link_id"] == out["id"] and call["channel"] == "poster_a" and call["is_qr"]
    assert call["properties"] == {"kind": "live_code", "target_id": out["targets"][0]["id"]}
    assert call["visitor"].platform == "wechat"


def test_scans_are_counted_in_stats_end_to_end(
    client: Any, owner: dict[str, str], runtime: Runtime
) -> None:
    """With the real recorder the redirect installs: two human scans become two clicks."""
    out = _create(
        client, owner, channel="poster_b", targets=[{"url": "https://example.com/b", "capacity": 5}]
    )
    _scan(client, out["slug"] + "?qr=1")
    _scan(client, out["slug"])
    runtime.flush_events()
    rows = runtime.event_store.query(  # type: ignore[union-attr]
        "SELECT count(*), sum(CASE WHEN is_qr THEN 1 ELSE 0 END), min(channel) FROM events WHERE link_id = $id",
        {"id": out["id"]},
    )
    assert rows == [(2, 1, "poster_b")]


# -- alerts ------------------------------------------------------------------------------


def test_alert_fires_once_per_crossing_and_rearms(
    client: Any, owner: dict[str, str], runtime: Runtime
) -> None:
    events: list[dict[str, Any]] = []
    runtime.bus.subscribe("live_code.low_targets", events.append)
    out = _create(
        client,
        owner,
        alert_below=2,
        targets=[{"url": f"https://example.com/{i}", "capacity": 1} for i in range(3)],
    )
    lc = out["id"]
    _scan(client, out["slug"])  # 2 usable left: not below 2
    assert events == []
    _scan(client, out["slug"])  # 1 usable left: crossing
    assert len(events) == 1
    assert events[0]["live_code_id"] == lc and events[0]["usable"] == 1
    _scan(client, out["slug"])  # still below: no second alert
    _scan(client, out["slug"])  # exhausted: still the same crossing
    assert len(events) == 1
    alerts = client.get(f"{API}/{lc}/alerts", headers=owner).json()["items"]
    assert [(a["kind"], a["usable"], a["threshold"]) for a in alerts] == [("low_targets", 1, 2)]
    assert alerts[0]["id"] == events[0]["alert_id"] and alerts[0]["delivered_at"] is None
    assert client.get(f"{API}/{lc}", headers=owner).json()["alerted_at"] is not None

    # The operator adds two groups: back above the threshold, the alert re-arms.
    for i in range(2):
        r = client.post(
            f"{API}/{lc}/targets", json={"url": f"https://example.com/new{i}", "capacity": 1},
            headers=owner,
        )  # fmt: skip
        assert r.status_code == 201
    assert r.json()["alerted_at"] is None and r.json()["usable_targets"] == 2
    _scan(client, out["slug"])
    assert len(events) == 2
    assert len(client.get(f"{API}/{lc}/alerts", headers=owner).json()["items"]) == 2


# -- target management -------------------------------------------------------------------


def test_add_update_reorder_remove_targets(client: Any, owner: dict[str, str]) -> None:
    out = _create(
        client,
        owner,
        alert_below=0,
        targets=[
            {"label": "a", "url": "https://example.com/a", "capacity": 1},
            {"label": "b", "url": "https://example.com/b", "capacity": 1},
        ],
    )
    lc = out["id"]
    r = client.post(
        f"{API}/{lc}/targets",
        json={"label": "c", "image": _b64(_group_qr()), "capacity": 3, "position": 0},
        headers=owner,
    )
    assert r.status_code == 201
    assert [t["label"] for t in r.json()["targets"]] == ["c", "a", "b"]
    ids = {t["label"]: t["id"] for t in r.json()["targets"]}

    r = client.post(
        f"{API}/{lc}/targets/reorder", json={"target_ids": [ids["b"], ids["a"], ids["c"]]},
        headers=owner,
    )  # fmt: skip
    assert [t["label"] for t in r.json()["targets"]] == ["b", "a", "c"]
    assert [t["position"] for t in r.json()["targets"]] == [0, 1, 2]
    assert _scan(client, out["slug"]).headers["location"] == "https://example.com/b"

    bad = client.post(f"{API}/{lc}/targets/reorder", json={"target_ids": [ids["a"]]}, headers=owner)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_order"

    # Swap the image for a URL, raise the capacity, move it to the front.
    r = client.patch(
        f"{API}/{lc}/targets/{ids['c']}",
        json={"url": "https://example.com/c", "capacity": 10, "position": 0, "label": "c2"},
        headers=owner,
    )
    assert r.status_code == 200
    front = r.json()["targets"][0]
    assert (front["label"], front["kind"], front["image_url"], front["capacity"]) == (
        "c2", "url", None, 10,
    )  # fmt: skip

    r = client.delete(f"{API}/{lc}/targets/{ids['a']}", headers=owner)
    assert r.status_code == 200
    assert [t["label"] for t in r.json()["targets"]] == ["c2", "b"]
    assert [t["position"] for t in r.json()["targets"]] == [0, 1]
    assert client.delete(f"{API}/{lc}/targets/{ids['a']}", headers=owner).status_code == 404


def test_update_and_delete_live_code(client: Any, owner: dict[str, str], runtime: Runtime) -> None:
    out = _create(client, owner, targets=[{"url": "https://example.com/a", "capacity": 1}])
    r = client.patch(f"{API}/{out['id']}", json={"name": "新名字", "alert_below": 3}, headers=owner)
    assert r.status_code == 200 and r.json()["name"] == "新名字" and r.json()["alert_below"] == 3
    # The slug is printed on posters: it cannot change.
    assert client.patch(f"{API}/{out['id']}", json={"slug": "x"}, headers=owner).status_code == 422
    assert client.patch(f"{API}/{out['id']}", json={"name": None}, headers=owner).status_code == 422

    changed: list[str] = []
    runtime.bus.subscribe("slug.changed", changed.append)
    assert client.delete(f"{API}/{out['id']}", headers=owner).status_code == 204
    assert changed == [out["slug"]]
    assert client.get(f"{API}/{out['id']}", headers=owner).status_code == 404
    assert _scan(client, out["slug"]).status_code == 404
    assert _count(runtime, Slug) == 0 and _count(runtime, LiveCodeTarget) == 0


def test_roles_and_workspace_scoping(client: Any, owner: dict[str, str], runtime: Runtime) -> None:
    out = _create(client, owner, targets=[{"url": "https://example.com/a", "capacity": 1}])
    ws = client.get("/api/v1/workspace", headers=owner).json()["id"]
    _, viewer = make_key(runtime, "viewer", ws)
    _, operator = make_key(runtime, "operator", ws)
    _, stranger = make_key(runtime, "owner")
    assert client.get(f"{API}/{out['id']}", headers=viewer).status_code == 200
    assert client.post(API, json={"name": "x"}, headers=viewer).status_code == 403
    assert client.post(API, json={"name": "x"}, headers=operator).status_code == 201
    for method, path in [
        ("get", f"{API}/{out['id']}"),
        ("get", f"{API}/{out['id']}/alerts"),
        ("get", out["targets"][0]["id"].join([f"{API}/{out['id']}/targets/", "/image"])),
        ("delete", f"{API}/{out['id']}"),
        ("delete", f"{API}/{out['id']}/targets/{out['targets'][0]['id']}"),
    ]:
        assert getattr(client, method)(path, headers=stranger).status_code == 404, path
    assert client.get(API, headers=stranger).json()["items"] == []


# -- bad input ---------------------------------------------------------------------------


def _tiny_png() -> str:
    return _b64(_group_qr())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "targets": [{"url": "javascript:alert(1)", "capacity": 1}]}, "targets.0"),
        ({"name": "x", "targets": [{"url": "data:text/html,hi", "capacity": 1}]}, "targets.0"),
        ({"name": "x", "targets": [{"url": "ftp://example.com/a", "capacity": 1}]}, "targets.0"),
        (
            {"name": "x", "targets": [{"url": "https://example.com", "capacity": 0}]},
            "targets.0.capacity",
        ),
        (
            {"name": "x", "targets": [{"url": "https://example.com", "capacity": -3}]},
            "targets.0.capacity",
        ),
        ({"name": "x", "targets": [{"capacity": 1}]}, "targets.0"),
        (
            {"name": "x", "targets": [{"url": "https://e.com", "image": "", "capacity": 1}]},
            "targets.0",
        ),
        ({"name": "x", "targets": [{"image": "not base64!", "capacity": 1}]}, "targets.0"),
        (
            {"name": "x", "targets": [{"image": _b64(b"GIF89a" + b"\0" * 50), "capacity": 1}]},
            "targets.0",
        ),
        (
            {"name": "x", "targets": [{"image": _b64(b"%PDF-1.4 hello"), "capacity": 1}]},
            "targets.0",
        ),
        (
            {"name": "x", "targets": [{"url": "https://e.com", "capacity": 1, "x": 1}]},
            "targets.0.x",
        ),
        ({"name": "x", "slug": "bad slug"}, "slug"),
        ({"name": "x", "alert_below": -1}, "alert_below"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_input_is_a_clear_422_and_writes_nothing(
    client: Any, owner: dict[str, str], runtime: Runtime, body: dict[str, Any], field: str
) -> None:
    r = client.post(API, json=body, headers=owner)
    assert r.status_code == 422, r.text
    fields = [d["field"] for d in r.json()["error"]["details"]]
    assert any(f.startswith(field) for f in fields), fields
    assert _count(runtime, LiveCode) == 0 and _count(runtime, Slug) == 0


def test_oversized_and_corrupt_images(client: Any, owner: dict[str, str], runtime: Runtime) -> None:
    # A valid PNG just over 1 MB (noise does not compress).
    import os

    noise = Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert buffer.tell() > 1024 * 1024
    truncated = _group_qr()[:-40]
    for image in (_b64(buffer.getvalue()), _b64(truncated)):
        r = client.post(
            API, json={"name": "x", "targets": [{"image": image, "capacity": 1}]}, headers=owner
        )
        assert r.status_code == 422, r.text
        assert "image" in r.json()["error"]["details"][0]["problem"]
    assert _count(runtime, LiveCode) == 0


def test_blocklisted_destination(client: Any, owner: dict[str, str], runtime: Runtime) -> None:
    runtime.settings.url_blocklist = ["evil.example"]
    r = client.post(
        API,
        json={"name": "x", "targets": [{"url": "https://a.evil.example/x", "capacity": 1}]},
        headers=owner,
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "blocked_host"
    assert r.json()["error"]["details"]["field"] == "targets[0].url"
    assert _count(runtime, LiveCode) == 0


def test_slugs_shared_with_links(client: Any, owner: dict[str, str], runtime: Runtime) -> None:
    link = client.post(
        "/api/v1/links", json={"url": "https://example.com", "slug": "spring"}, headers=owner
    )
    assert link.status_code == 201, link.text
    r = client.post(API, json={"name": "x", "slug": "spring"}, headers=owner)
    assert r.status_code == 409 and r.json()["error"]["code"] == "slug_taken"
    _create(client, owner, slug="summer")
    again = client.post(API, json={"name": "y", "slug": "summer"}, headers=owner)
    assert again.status_code == 409
    other_link = client.post(
        "/api/v1/links", json={"url": "https://example.com", "slug": "summer"}, headers=owner
    )
    assert other_link.status_code == 409
    reserved = client.post(API, json={"name": "x", "slug": "api"}, headers=owner)
    assert reserved.status_code == 422 and reserved.json()["error"]["code"] == "reserved_slug"
    assert _count(runtime, LiveCode) == 1


def test_bad_target_changes_leave_the_live_code_as_it_was(
    client: Any, owner: dict[str, str]
) -> None:
    out = _create(client, owner, targets=[{"url": "https://example.com/a", "capacity": 1}])
    lc, tid = out["id"], out["targets"][0]["id"]
    for body in (
        {"capacity": 0},
        {"url": "javascript:alert(1)"},
        {"url": "https://e.com", "image": _tiny_png()},
        {"image": _b64(b"not an image")},
        {"enabled": None},
        {"scans": 0},
    ):
        r = client.patch(f"{API}/{lc}/targets/{tid}", json=body, headers=owner)
        assert r.status_code == 422, (body, r.text)
    r = client.post(
        f"{API}/{lc}/targets", json={"url": "https://e.com", "capacity": 0}, headers=owner
    )
    assert r.status_code == 422
    assert (
        client.get(f"{API}/{lc}", headers=owner).json()
        == client.get(f"{API}/{lc}", headers=owner).json()
        and len(client.get(f"{API}/{lc}", headers=owner).json()["targets"]) == 1
    )
    assert client.get(f"{API}/{lc}", headers=owner).json()["targets"][0]["url"] == (
        "https://example.com/a"
    )


# -- concurrency -------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_scans_never_exceed_capacity(
    client: Any, owner: dict[str, str], runtime: Runtime
) -> None:
    """16 threads × 50 scans, each in its own session and transaction, against 30/30/30."""
    out = _create(
        client,
        owner,
        alert_below=1,
        targets=[{"url": f"https://example.com/{i}", "capacity": 30} for i in range(3)],
    )
    threads_n, scans_each = 16, 50
    outcomes: list[str | None] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads_n)

    def worker() -> None:
        mine: list[str | None] = []
        try:
            start.wait()
            for _ in range(scans_each):
                with session_scope(runtime.sessions) as session:
                    result = service.scan(session, out["id"])
                assert result is not None
                mine.append(result.target.id if result.target else None)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        with lock:
            outcomes.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(outcomes) == threads_n * scans_each

    served = Counter(o for o in outcomes if o is not None)
    got = client.get(f"{API}/{out['id']}", headers=owner).json()
    scans = {t["id"]: t["scans"] for t in got["targets"]}
    # Exactly as many places handed out as the database counted, none over capacity.
    assert scans == {t["id"]: 30 for t in got["targets"]}
    assert dict(served) == scans
    assert outcomes.count(None) == threads_n * scans_each - 90
    # One crossing below the threshold, one alert, however many threads saw it.
    assert _count(runtime, LiveCodeAlert) == 1


def test_default_alert_warns_while_places_remain(
    client: Any, owner: dict[str, str], runtime: Runtime
) -> None:
    """By default the operator hears about it when the last group starts filling, not after
    visitors already see 群已满."""
    events: list[dict[str, Any]] = []
    runtime.bus.subscribe("live_code.low_targets", events.append)
    out = _create(
        client,
        owner,
        targets=[{"url": f"https://example.com/{i}", "capacity": 2} for i in range(2)],
    )
    assert out["alert_below"] == 2
    _scan(client, out["slug"])
    _scan(client, out["slug"])  # first group full: only the last one is usable
    assert len(events) == 1 and events[0]["usable"] == 1
    # The alert came while places remain: the next visitors still get a group.
    for _ in range(2):
        assert "群已满" not in _scan(client, out["slug"]).text
    assert "群已满" in _scan(client, out["slug"]).text  # and now it is full
