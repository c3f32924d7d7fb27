"""The redirect path through the whole app (SQLite and PostgreSQL): rules, pages, clicks, stats."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from redirect_helpers import (
    ANDROID_CHROME,
    DESKTOP_CHROME,
    GOOGLEBOT,
    IPHONE_SAFARI,
    WECHAT_IOS,
    other_workspace_key,
    ua_samples,
)

PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"


def go(client: Any, path: str, ua: str = DESKTOP_CHROME, **kw: Any) -> Any:
    headers = {"user-agent": ua, **kw.pop("headers", {})}
    return client.get(path, headers=headers, **kw)


def query_of(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query)


# -- unknown / basics -------------------------------------------------------------------


def test_unknown_slug_is_a_404_page(client: Any) -> None:
    resp = go(client, "/no-such-link")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert "链接不存在" in resp.text
    # Malformed slugs and nested paths never reach a link either.
    assert go(client, "/a.b").status_code == 404
    assert go(client, "/abc/def").status_code == 404


def test_redirect_adds_utm_and_click_id_and_keeps_query_and_fragment(
    client: Any, create_link: Any
) -> None:
    create_link(
        slug="utm1",
        url="https://example.com/p?x=1&utm_source=old#frag",
        utm={"source": "wechat", "medium": "group", "campaign": "双11"},
    )
    resp = go(client, "/utm1")
    assert resp.status_code == 302
    location = resp.headers["location"]
    assert location.startswith("https://example.com/p?x=1&")
    assert location.endswith("#frag")
    q = query_of(location)
    assert q["x"] == ["1"]
    assert q["utm_source"] == ["wechat"]  # the link's UTM wins over the destination's
    assert q["utm_medium"] == ["group"]
    assert q["utm_campaign"] == ["双11"]
    assert len(q["lb_cid"]) == 1 and len(q["lb_cid"][0]) == 16
    # A new click id every time.
    assert query_of(go(client, "/utm1").headers["location"])["lb_cid"] != q["lb_cid"]
    # A trailing slash is the same link.
    assert go(client, "/utm1/").status_code == 302


def test_visitor_cookie_set_once(client: Any, create_link: Any) -> None:
    create_link(slug="vid")
    first = go(client, "/vid")
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("lb_vid=")
    assert "Max-Age=31536000" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    vid = cookie.split(";")[0].split("=", 1)[1]
    again = go(client, "/vid", headers={"cookie": f"lb_vid={vid}"})
    assert again.status_code == 302
    assert "set-cookie" not in again.headers
    # A tampered cookie is replaced, never echoed into the event row.
    bad = go(client, "/vid", headers={"cookie": 'lb_vid="x\\"y'})
    assert bad.headers["set-cookie"].startswith("lb_vid=")


def test_device_destinations(client: Any, create_link: Any) -> None:
    create_link(
        slug="dev",
        url="https://example.com/web",
        ios_url="https://apps.apple.com/app/id1",
        android_url="https://example.com/app.apk",
    )
    assert (
        go(client, "/dev", IPHONE_SAFARI)
        .headers["location"]
        .startswith("https://apps.apple.com/app/id1?lb_cid=")
    )
    assert (
        go(client, "/dev", ANDROID_CHROME)
        .headers["location"]
        .startswith("https://example.com/app.apk?lb_cid=")
    )
    assert (
        go(client, "/dev", DESKTOP_CHROME)
        .headers["location"]
        .startswith("https://example.com/web?lb_cid=")
    )


def test_app_store_destinations_get_no_utm(client: Any, create_link: Any) -> None:
    """App Store / app-market URLs carry their own campaign parameters: UTM fields go to the
    web destinations only (an iOS/Android URL that is a web page still gets them)."""
    utm = {"source": "wechat", "medium": "group", "campaign": "spring"}
    create_link(
        slug="store", url="https://example.com/web", utm=utm,
        ios_url="https://apps.apple.com/cn/app/id123?pt=1",
        android_url="https://appgallery.huawei.com/app/C100",
    )  # fmt: skip
    ios = go(client, "/store", IPHONE_SAFARI).headers["location"]
    android = go(client, "/store", ANDROID_CHROME).headers["location"]
    web = go(client, "/store", DESKTOP_CHROME).headers["location"]
    assert ios.startswith("https://apps.apple.com/cn/app/id123?pt=1&lb_cid=") and "utm_" not in ios
    assert android.startswith("https://appgallery.huawei.com/app/C100?lb_cid=")
    assert "utm_" not in android
    assert "utm_source=wechat&utm_medium=group&utm_campaign=spring" in web
    create_link(slug="mweb", url="https://example.com/web", utm=utm,
                ios_url="https://m.example.com/ios")  # fmt: skip
    assert "utm_source=wechat" in go(client, "/mweb", IPHONE_SAFARI).headers["location"]


# -- expiry and max clicks --------------------------------------------------------------


def test_expired_link_goes_to_expired_url_or_410(client: Any, create_link: Any) -> None:
    create_link(slug="old1", expires_at=PAST, expired_url="https://example.com/over")
    create_link(slug="old2", expires_at=PAST)
    create_link(slug="fresh", expires_at=FUTURE)
    resp = go(client, "/old1")
    assert resp.status_code == 302
    assert resp.headers["location"] == "https://example.com/over"
    gone = go(client, "/old2")
    assert gone.status_code == 410
    assert "链接已失效" in gone.text
    assert go(client, "/fresh").status_code == 302


def test_max_clicks_counts_humans_only(client: Any, create_link: Any, stats: Any) -> None:
    link = create_link(slug="lim", max_clicks=3)
    assert go(client, "/lim", GOOGLEBOT).status_code == 302  # bots never spend the budget
    assert client.head("/lim", headers={"user-agent": DESKTOP_CHROME}).status_code == 302
    for _ in range(3):
        assert go(client, "/lim").status_code == 302
    assert go(client, "/lim").status_code == 410
    assert go(client, "/lim", GOOGLEBOT).status_code == 410
    s = stats(link["id"])
    assert s["clicks"] == 3 and s["bot_clicks"] == 2


def test_max_clicks_survives_a_new_process(
    client: Any, create_link: Any, runtime: Any, settings: Any
) -> None:
    """The counter of a fresh process is seeded from the event store."""
    from fastapi.testclient import TestClient

    from liebian.app.factory import create_app

    create_link(slug="lim2", max_clicks=2, expired_url="https://example.com/sold-out")
    assert go(client, "/lim2").status_code == 302
    # A second app on the same storage (think: restart) starts with an empty counter.
    # Only one owner of the hooks spool at a time (its flock), as across a real restart.
    hooks = runtime.extras.get("event_hooks")
    if hooks is not None:
        hooks.spool.close()
    runtime.extras.clear()
    app2 = create_app(settings, runtime)
    with TestClient(app2, base_url="http://sho.rt", follow_redirects=False) as c2:
        assert go(c2, "/lim2").status_code == 302
        resp = go(c2, "/lim2")
        assert resp.headers["location"] == "https://example.com/sold-out"


def test_each_app_stops_the_hooks_worker_it_started(settings: Any, runtime: Any) -> None:
    """Two apps built on one runtime one after the other (as above): each stops its own
    worker, though the runtime's extras hold the second's by the time the first stops. The
    first's used to run on into the next tests (and log that their database was gone)."""
    import threading

    from fastapi.testclient import TestClient

    from liebian.app.factory import create_app

    def hooks_threads() -> int:
        return sum(t.name == "liebian-hooks" and t.is_alive() for t in threading.enumerate())

    before = hooks_threads()
    with TestClient(create_app(settings, runtime)):
        runtime.extras["event_hooks"].spool.close()
        runtime.extras.clear()
        with TestClient(create_app(settings, runtime)):
            assert hooks_threads() == before + 2
    assert hooks_threads() == before


# -- platforms --------------------------------------------------------------------------


def test_allowed_platforms_with_real_user_agents(client: Any, create_link: Any) -> None:
    create_link(slug="wxonly", allowed_platforms=["wechat", "wecom"])
    create_link(slug="nowx", allowed_platforms=["browser", "alipay"])
    samples = ua_samples()
    assert {p for p, _ in samples} >= {"wechat", "qq", "browser", "bot", "wecom"}
    for platform, ua in samples:
        resp = go(client, "/wxonly", ua)
        if platform in ("wechat", "wecom"):
            assert resp.status_code == 302, (platform, ua)
        else:
            assert resp.status_code == 403, (platform, ua)
            assert "请在微信、企业微信中打开" in resp.text
        resp = go(client, "/nowx", ua)
        assert resp.status_code == (302 if platform in ("browser", "alipay") else 403), platform


def test_browser_guide_inside_wechat_and_qq(client: Any, create_link: Any) -> None:
    create_link(slug="apk", url="https://example.com/app.apk", browser_guide=True)
    for platform, ua in ua_samples():
        resp = go(client, "/apk", ua)
        if platform in ("wechat", "wecom", "qq"):
            assert resp.status_code == 200, platform
            assert "点击右上角" in resp.text and "在浏览器打开" in resp.text
        else:
            assert resp.status_code == 302, platform


# -- password ---------------------------------------------------------------------------


def test_password_flow(client: Any, create_link: Any, stats: Any) -> None:
    link = create_link(slug="secret", password="open-sesame", url="https://example.com/s")
    page = go(client, "/secret?qr=1")
    assert page.status_code == 200
    assert "请输入访问密码" in page.text and 'action="/secret?qr=1"' in page.text
    wrong = client.post(
        "/secret?qr=1", data={"password": "nope!"}, headers={"user-agent": DESKTOP_CHROME}
    )
    assert wrong.status_code == 403 and "密码不正确" in wrong.text
    right = client.post(
        "/secret?qr=1", data={"password": "open-sesame"}, headers={"user-agent": DESKTOP_CHROME}
    )
    assert right.status_code == 303
    assert right.headers["location"] == "/secret?qr=1"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith("lb_unlock_secret=") and "HttpOnly" in cookie
    assert "Path=/secret" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    ok = go(client, "/secret?qr=1", headers={"cookie": f"lb_unlock_secret={token}"})
    assert ok.status_code == 302
    assert ok.headers["location"].startswith("https://example.com/s?lb_cid=")
    # A forged or foreign token does not unlock.
    forged = go(client, "/secret", headers={"cookie": "lb_unlock_secret=9999999999.abc"})
    assert forged.status_code == 200
    s = stats(link["id"])
    assert s["clicks"] == 1 and s["qr_scans"] == 1  # pages are not clicks


def test_password_change_relocks(client: Any, create_link: Any, owner: dict[str, str]) -> None:
    link = create_link(slug="pw2", password="first-pass")
    right = client.post("/pw2", data={"password": "first-pass"})
    token = right.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    headers = {"cookie": f"lb_unlock_pw2={token}"}
    assert go(client, "/pw2", headers=headers).status_code == 302
    resp = client.patch(
        f"/api/v1/links/{link['id']}", json={"password": "second-pass"}, headers=owner
    )
    assert resp.status_code == 200, resp.text
    assert go(client, "/pw2", headers=headers).status_code == 200


# -- rule order -------------------------------------------------------------------------


def test_rule_order(client: Any, create_link: Any) -> None:
    # Expired beats everything else.
    create_link(
        slug="o1",
        expires_at=PAST,
        password="pass-word",
        allowed_platforms=["qq"],
        browser_guide=True,
    )
    assert go(client, "/o1", WECHAT_IOS).status_code == 410
    # Platform beats guide and password.
    create_link(slug="o2", password="pass-word", allowed_platforms=["qq"], browser_guide=True)
    assert go(client, "/o2", WECHAT_IOS).status_code == 403
    # Guide beats password (inside WeChat); outside WeChat the password page shows.
    create_link(slug="o3", password="pass-word", browser_guide=True)
    assert "点击右上角" in go(client, "/o3", WECHAT_IOS).text
    assert "请输入访问密码" in go(client, "/o3", IPHONE_SAFARI).text
    # Variants beat device URLs.
    create_link(
        slug="o4",
        ios_url="https://ios.example.com/",
        variants=[
            {"url": "https://a.example.com/", "weight": 1},
            {"url": "https://b.example.com/", "weight": 1},
        ],
    )
    loc = go(client, "/o4", IPHONE_SAFARI).headers["location"]
    assert loc.startswith(("https://a.example.com/", "https://b.example.com/"))


# -- A/B --------------------------------------------------------------------------------


def test_ab_variants_are_sticky_per_visitor(client: Any, create_link: Any) -> None:
    create_link(
        slug="ab",
        variants=[
            {"url": "https://a.example.com/", "weight": 1},
            {"url": "https://b.example.com/", "weight": 3},
        ],
    )
    rng = random.Random(7)
    seen = set()
    for _ in range(20):
        vid = "".join(rng.choice("abcdefghijklmnop") for _ in range(16))
        hosts = {
            urlsplit(
                go(client, "/ab", headers={"cookie": f"lb_vid={vid}"}).headers["location"]
            ).netloc
            for _ in range(3)
        }
        assert len(hosts) == 1  # the same visitor always lands on the same arm
        seen |= hosts
    assert seen == {"a.example.com", "b.example.com"}
    # A first-time visitor is assigned by the id set in the cookie, so the next visit agrees.
    first = go(client, "/ab")
    vid = first.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    again = go(client, "/ab", headers={"cookie": f"lb_vid={vid}"})
    assert urlsplit(first.headers["location"]).netloc == urlsplit(again.headers["location"]).netloc


# -- clicks and stats -------------------------------------------------------------------


def test_click_row_and_stats(client: Any, create_link: Any, stats: Any, runtime: Any) -> None:
    link = create_link(
        slug="st", channel="wx_group_01", utm={"source": "wechat"}, campaign_id="cmp_1"
    )
    go(
        client,
        "/st",
        WECHAT_IOS,
        headers={"cookie": "lb_vid=visitorAAAAAAAA1", "referer": "https://r.example/x"},
    )
    go(client, "/st", WECHAT_IOS, headers={"cookie": "lb_vid=visitorAAAAAAAA1"})
    go(client, "/st?qr=1", IPHONE_SAFARI, headers={"cookie": "lb_vid=visitorBBBBBBBB2"})
    go(client, "/st", GOOGLEBOT)
    client.head("/st", headers={"user-agent": DESKTOP_CHROME})
    s = stats(link["id"])
    assert s["clicks"] == 3
    assert s["bot_clicks"] == 2
    assert s["unique_visitors"] == 2
    assert s["qr_scans"] == 1
    # The breakdown adds up to the total beside it: bots only in bot_clicks.
    assert s["by_platform"] == {"wechat": 2, "browser": 1}
    assert sum(s["by_platform"].values()) == s["clicks"]
    assert sum(s["by_day"].values()) == 3
    assert s["timezone"] == "Asia/Shanghai"
    rows = runtime.event_store.query(
        "SELECT channel, campaign_id, utm_source, referrer, visitor_id, ip_hash, click_id,"
        " event_id, os, device, browser FROM events WHERE link_id = $l AND platform = 'wechat'"
        " ORDER BY referrer NULLS LAST",
        {"l": link["id"]},
    )
    assert rows[0][:5] == (
        "wx_group_01",
        "cmp_1",
        "wechat",
        "https://r.example/x",
        "visitorAAAAAAAA1",
    )
    assert rows[0][5] and len(rows[0][5]) == 16  # hashed, never the address
    assert rows[0][6] == rows[0][7]
    assert rows[0][8:] == ("ios", "mobile", "wechat")


def test_by_day_uses_workspace_timezone(runtime: Any) -> None:
    from datetime import UTC, datetime

    from liebian.events.store import open_event_store
    from liebian.events.store.base import EventRow
    from liebian.redirect.stats_api import link_stats

    store = open_event_store(runtime.settings.data_dir / "tz.duckdb")
    try:
        store.insert(
            [
                EventRow(
                    workspace_id="ws",
                    event_id=f"e{i}",
                    event="click",
                    ts=datetime(2024, 1, 1, hour, 0, tzinfo=UTC),
                    link_id="lnk",
                    visitor_id=f"v{i}",
                    platform="browser",
                )
                for i, hour in enumerate((1, 15, 17))
            ]
        )
        assert link_stats(store, "ws", "lnk", "Asia/Shanghai").by_day == {
            "2024-01-01": 2,
            "2024-01-02": 1,
        }
        assert link_stats(store, "ws", "lnk", "UTC").by_day == {"2024-01-01": 3}
    finally:
        store.close()


def test_stats_are_workspace_scoped(client: Any, create_link: Any, runtime: Any) -> None:
    link = create_link(slug="mine")
    other = other_workspace_key(runtime)
    resp = client.get(f"/api/v1/links/{link['id']}/stats", headers=other)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "link_not_found"
    assert client.get(f"/api/v1/links/{link['id']}/stats").status_code == 401


# -- cache invalidation -----------------------------------------------------------------


def test_update_and_delete_invalidate_the_cache(
    client: Any, create_link: Any, owner: dict[str, str]
) -> None:
    assert go(client, "/later").status_code == 404  # negative-cached now
    link = create_link(slug="later", url="https://example.com/one")
    assert go(client, "/later").headers["location"].startswith("https://example.com/one?")
    resp = client.patch(
        f"/api/v1/links/{link['id']}", json={"url": "https://example.com/two"}, headers=owner
    )
    assert resp.status_code == 200, resp.text
    assert go(client, "/later").headers["location"].startswith("https://example.com/two?")
    assert client.delete(f"/api/v1/links/{link['id']}", headers=owner).status_code == 204
    assert go(client, "/later").status_code == 404


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_other_methods_are_refused(client: Any, create_link: Any, method: str) -> None:
    create_link(slug="m")
    resp = client.request(method, "/m")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, HEAD, POST"


def test_the_flusher_sees_each_recorded_click_for_its_burst_meter(
    client: Any, create_link: Any, runtime: Any
) -> None:
    create_link(slug="burst")
    burst = runtime.extras["defer_loads"]
    before = burst.count()
    for _ in range(3):
        assert go(client, "/burst").status_code == 302
    assert go(client, "/no-such-link").status_code == 404  # nothing recorded
    assert burst.count() - before == 3
