"""Participant H5 pages and posters: rendered, escaped, and checked in headless Chromium."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from fission_helpers import ASSIST_UNLOCK, BARGAIN, GROUP_BUY, INVITE, create, join
from PIL import Image

from browser_support import require_browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
XSS = '<img src=x onerror="alert(1)">'
UA_WECHAT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.44(0x18002c2f) NetType/WIFI Language/zh_CN"
)


def _invite_setup(client: Any, owner: dict[str, str]) -> tuple[str, str]:
    cid = create(client, owner, "invite", INVITE, name="邀请好友领试听课 " + XSS)
    code = join(client, owner, cid, "alice", nickname="<b>王小明</b>").json()["invite_code"]
    join(client, owner, cid, "bob", referrer_code=code, visitor_id="vb")
    return cid, code


def test_invite_page_escapes_and_shows_progress(client: Any, owner: dict[str, str]) -> None:
    cid, code = _invite_setup(client, owner)
    resp = client.get(f"/p/{cid}/{code}")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert XSS not in html and "&lt;img src=x" in html
    assert "<b>" not in html  # nickname is masked and escaped
    assert '<b id="counted">1</b>' in html
    assert "成功邀请 3 位好友：试听课" in html
    assert client.get(f"/p/{cid}/nope").status_code == 404


def test_group_and_assist_pages(client: Any, owner: dict[str, str]) -> None:
    gcid = create(client, owner, "group_buy", GROUP_BUY)
    gid = client.post(
        f"/api/v1/campaigns/{gcid}/groups", json={"leader_external_id": "l"}, headers=owner
    ).json()["group_id"]
    html = client.get(f"/g/{gid}").text
    assert "Python入门课" in html and "¥199" in html and "¥499" in html and "还差 4 人成团" in html
    acid = create(client, owner, "assist", BARGAIN)
    aid = client.post(
        f"/api/v1/campaigns/{acid}/assists", json={"external_id": "o"}, headers=owner
    ).json()["assist_id"]
    client.post(f"/api/v1/assists/{aid}/help", json={"external_id": "h"}, headers=owner)
    html = client.get(f"/a/{aid}").text
    assert "砍价" in html and '<b id="helpers">1</b>' in html
    assert client.get("/g/grp_01JAAAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert client.get("/a/ast_01JAAAAAAAAAAAAAAAAAAAAAAA").status_code == 404


def test_poster_png(client: Any, owner: dict[str, str]) -> None:
    resp = client.post(
        "/api/v1/campaigns/from-template", json={"template": "edu_poster_materials"}, headers=owner
    )
    cid = resp.json()["id"]
    pid = join(client, owner, cid, "alice", nickname="王小明").json()["participant_id"]
    png = client.get(f"/api/v1/campaigns/{cid}/participants/{pid}/poster.png", headers=owner)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.size == (750, 1334)
    # An invite campaign gets a poster too (default layout).
    icid = create(client, owner, "invite", INVITE)
    ipid = join(client, owner, icid, "bob").json()["participant_id"]
    assert (
        client.get(
            f"/api/v1/campaigns/{icid}/participants/{ipid}/poster.png", headers=owner
        ).status_code
        == 200
    )
    assert (
        client.get(
            f"/api/v1/campaigns/{icid}/participants/{pid}/poster.png", headers=owner
        ).status_code
        == 404
    )


@pytest.mark.browser
def test_pages_in_headless_chromium(
    client: Any, owner: dict[str, str], server: str, db_url: str
) -> None:
    playwright_api = require_browser()  # skips, or fails when LIEBIAN_REQUIRE_BROWSER=1
    cid, code = _invite_setup(client, owner)
    gcid = create(client, owner, "group_buy", GROUP_BUY)
    gid = client.post(
        f"/api/v1/campaigns/{gcid}/groups", json={"leader_external_id": "l"}, headers=owner
    ).json()["group_id"]
    acid = create(client, owner, "assist", ASSIST_UNLOCK)
    aid = client.post(
        f"/api/v1/campaigns/{acid}/assists", json={"external_id": "o"}, headers=owner
    ).json()["assist_id"]
    backend = "pg" if db_url.startswith("postgresql") else "sqlite"
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            context = browser.new_context(
                viewport={"width": 390, "height": 844}, user_agent=UA_WECHAT, device_scale_factor=2
            )
            page = context.new_page()
            dialogs: list[str] = []

            def on_dialog(dialog: Any) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            for path, name, expect in [
                (f"/p/{cid}/{code}", "invite", "已成功邀请"),
                (f"/g/{gid}", "group", "5 人团"),
                (f"/a/{aid}", "assist", "位好友帮忙"),
            ]:
                page.goto(server + path)
                assert expect in page.inner_text("main")
                # Fits a phone: nothing wider than the viewport.
                assert page.evaluate("document.documentElement.scrollWidth") <= 390
                page.screenshot(
                    path=str(ARTIFACTS / f"fission-{name}-{backend}.png"), full_page=True
                )
            assert dialogs == []  # the injected onerror never ran
        finally:
            browser.close()
