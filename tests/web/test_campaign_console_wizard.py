"""Issue 12, measured as a user would: from the console's login to a live campaign with its
share link, counting the fields the operator types (only the sign-in; nothing a template
already knew), then the poster designer: text, colours and a background upload redraw the
poster and the phone-size page preview, and the saved design is the participant's poster.

The time of the walk is printed (never asserted: the machine is shared)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from browser_support import ON_SQLITE_ONLY, chromium, live_server, screenshot


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


class Typist:
    """Every field the operator fills goes through here, so the test can count them."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.typed: list[str] = []

    def fill(self, selector: str, value: str) -> None:
        self.page.fill(selector, value)
        self.typed.append(selector)


def _pixel(png: bytes, xy: tuple[int, int]) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(png)) as img:
        px = img.convert("RGB").getpixel(xy)
    assert isinstance(px, tuple)
    return (int(px[0]), int(px[1]), int(px[2]))


@pytest.mark.browser
@ON_SQLITE_ONLY
def test_login_to_live_campaign_and_poster_designer(
    server: str, owner: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    backend = "pg" if db_url.startswith("postgresql") else "sqlite"
    key = owner["Authorization"].split(" ", 1)[1]
    with chromium() as browser:
        page = browser.new_context(
            viewport={"width": 1440, "height": 900}, locale="zh-CN"
        ).new_page()
        # A generous bound for every wait: the suite runs on two shared, loaded cores.
        page.set_default_timeout(90_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        typist = Typist(page)
        clicks = 0

        # ── the walk: login → template → launch → share link ──
        started = time.monotonic()
        page.goto(server + "/admin/campaigns")
        page.wait_for_url("**/admin/login*")
        typist.fill("input[name=key]", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("body[data-ready]")
        # Filter by industry and mode (玩法): clicks, not typing.
        page.select_option("#tpl-filter select[name=industry]", "education")
        page.select_option("#tpl-filter select[name=type]", "invite")
        page.click("#tpl-filter button[type=submit]")
        clicks += 1
        # (every 拼团 card gone: several may still show while the filter applies)
        from playwright.sync_api import expect

        expect(page.locator(".tpl", has_text="拼团")).to_have_count(0, timeout=90_000)
        card = page.locator(".tpl", has_text="邀请有礼").first
        card.locator("button[type=submit]").click()  # ① 用此模板创建 (name: the template's)
        clicks += 1
        page.wait_for_url("**/admin/campaigns/cmp_*")
        page.wait_for_selector("body[data-ready]")
        page.click("#cd-launch")  # ② 立即上线
        clicks += 1
        page.locator("#cd-status", has_text="进行中").wait_for()
        share = page.locator(".share-url").first
        share.wait_for()
        link = share.inner_text()  # ③ the share link, on screen with its QR
        elapsed = time.monotonic() - started
        cid = page.url.rsplit("/", 1)[1]
        assert link.endswith(f"/p/{cid}?ch=wechat_group")
        assert typist.typed == ["input[name=key]"], typist.typed  # the sign-in only
        print(f"\nlogin → live campaign with share link: {elapsed:.1f} s, "
              f"{len(typist.typed)} field typed (sign-in), {clicks} clicks after sign-in")  # fmt: skip
        campaign = httpx.get(f"{server}/api/v1/campaigns/{cid}", headers=owner).json()
        assert campaign["status"] == "active" and campaign["template"]
        screenshot(page, f"console-wizard-live-{backend}")

        # ── the poster designer ──
        page.locator("#cd-poster-img[src^='blob:']").wait_for()
        frame = page.frame_locator("#cd-phone")
        frame.locator("h1", has_text=campaign["name"]).wait_for()
        typist.fill("#cd-poster input[name=headline]", "周三秒杀：邀请好友得好礼")
        page.locator("#cd-poster input[name=background_color]").evaluate(
            "(el) => { el.value = '#1864ab'; el.dispatchEvent(new Event('input', {bubbles: true})); }"
        )
        # The phone frame follows the unsaved name as the operator types it.
        typist.fill("#cd-rules input[name=name]", "周三秒杀 · 第 1 期")
        frame.locator("h1", has_text="周三秒杀 · 第 1 期").wait_for()
        bg = tmp_path / "bg.png"
        Image.new("RGB", (750, 1334), (240, 140, 20)).save(bg)
        page.set_input_files("#cd-poster input[name=background_file]", str(bg))
        page.locator("#cd-poster-bg", has_text="已上传 750×1334").wait_for()
        page.click("#cd-poster button[type=submit]")
        page.locator("#alert.ok", has_text="海报已保存").wait_for()
        screenshot(page, f"console-poster-designer-{backend}")
        # The designer at 1440 px as the operator sees it (the frame's page drawn too).
        page.locator("#cd-poster").scroll_into_view_if_needed()
        frame.locator("h1", has_text="周三秒杀 · 第 1 期").wait_for()
        page.locator(".designer").screenshot(
            path=str(screenshot(page, f"console-poster-designer-{backend}-view"))
        )
        saved = httpx.get(f"{server}/api/v1/campaigns/{cid}/poster", headers=owner).json()
        assert saved["design"]["headline"] == "周三秒杀：邀请好友得好礼"
        assert saved["design"]["background_color"] == "#1864AB"
        assert saved["design"]["background_image"]
        # The participant's poster is the saved design (the upload covers the colour).
        joined = httpx.post(
            f"{server}/api/v1/campaigns/{cid}/participants", json={"external_id": "u1"},
            headers=owner,
        ).json()  # fmt: skip
        png = httpx.get(server + joined["poster_url"], headers=owner).content
        r, g, b = _pixel(png, (5, 5))
        assert abs(r - 240) < 8 and abs(g - 140) < 8 and abs(b - 20) < 8
        (Path(screenshot.__globals__["ARTIFACTS"]) / f"poster-designed-{backend}.png").write_bytes(
            png
        )

        # ── a weekly rhythm: 周三秒杀, from this campaign (name prefilled, no typing) ──
        page.select_option("#cd-weekly select[name=weekday]", "2")
        page.click("#cd-weekly button[type=submit]")
        row = page.locator("#cd-weekly-list tbody tr", has_text="每周三 10:00 开始，持续 24 小时")
        row.wait_for()
        assert "Asia/Shanghai" in row.inner_text()
        page.locator("#cd-weekly").scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot(page, f"console-weekly-{backend}")))
        # The participants list finds u1 by the start of the id (the refresh after saving).
        typist.fill("#cd-people-filter input[name=q]", "u")
        page.click("#cd-people-filter button[type=submit]")
        page.locator("#cd-people tbody tr", has_text="u1").wait_for()
        # The comparison table lists this campaign (same definitions as the cards above).
        page.locator("#cd-compare tbody tr", has_text="（本活动）").wait_for()
        # Tablet width: the designer stacks, nothing wider than the page.
        page.set_viewport_size({"width": 820, "height": 1180})
        page.locator("#cd-poster").scroll_into_view_if_needed()
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        page.screenshot(path=str(screenshot(page, f"console-designer-tablet-{backend}")))
        assert overflow <= 0, overflow
        assert errors == []
