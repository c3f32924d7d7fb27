"""Tag chips show their colour under the console's Content-Security-Policy (style-src 'self':
no inline style attributes) — in headless Chromium, with no CSP violation reported, and a
screenshot in artifacts/ to look at."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent))

from people_helpers import person

from browser_support import ON_SQLITE_ONLY, chromium, live_server, screenshot

COLOURS = {"高意向": ("#d93025", "rgb(217, 48, 37)"), "宝妈": ("#188038", "rgb(24, 128, 56)")}


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.mark.browser
@ON_SQLITE_ONLY
def test_tag_colours_render_under_the_csp(server: str, owner: dict[str, str], runtime: Any) -> None:
    import httpx

    ws = httpx.get(server + "/api/v1/workspace", headers=owner).json()["id"]
    person(runtime, ws, "u1", nickname="王小明")
    for name, (hex_colour, _rgb) in COLOURS.items():
        r = httpx.post(
            server + "/api/v1/tags", json={"name": name, "color": hex_colour}, headers=owner
        )
        assert r.status_code == 201, r.text
        r = httpx.post(
            server + "/api/v1/tags/bulk",
            json={"tag_ids": [r.json()["id"]], "action": "add", "external_ids": ["u1"]},
            headers=owner,
        )
        assert r.status_code == 200, r.text
    csp = httpx.get(server + "/admin/tags").headers["content-security-policy"]
    assert "style-src 'self'" in csp and "unsafe-inline" not in csp  # not weakened
    key = owner["Authorization"].split(" ", 1)[1]
    with chromium() as browser:
        page = browser.new_context(
            viewport={"width": 1440, "height": 900}, locale="zh-CN"
        ).new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on(
            "console",
            lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.goto(server + "/admin/login?next=%2Fadmin%2Ftags")
        page.fill("input[name=key]", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/admin/tags")
        page.wait_for_selector("body[data-people-ready]")
        # 编辑: rename and recolour a tag from the same form
        page.locator("#tg-table tr", has_text="高意向").get_by_role("button", name="编辑").click()
        assert page.input_value("#tg-form input[name=name]") == "高意向"
        page.fill("#tg-form input[name=name]", "高意向客户")
        page.locator("#tg-form input[name=color]").evaluate("e => { e.value = '#1a73e8'; }")
        page.click("#tg-form button[type=submit]")
        page.wait_for_selector("#alert.ok:has-text('已修改标签')")
        edited = page.locator("#tg-table .badge.tag", has_text="高意向客户")
        edited.wait_for()
        assert edited.evaluate("e => getComputedStyle(e).color") == "rgb(26, 115, 232)"
        # and back, so the colour checks below see the original tags
        page.locator("#tg-table tr", has_text="高意向客户").get_by_role(
            "button", name="编辑"
        ).click()
        page.fill("#tg-form input[name=name]", "高意向")
        page.locator("#tg-form input[name=color]").evaluate("e => { e.value = '#d93025'; }")
        page.click("#tg-form button[type=submit]")
        page.wait_for_selector("#tg-table .badge.tag:text-is('高意向')")
        assert page.is_hidden("#tg-cancel")
        for where in ("#tg-table", None):
            if where is None:
                page.goto(server + "/admin/contacts")
                page.wait_for_selector("body[data-people-ready]")
                where = "#ct-table"
            for name, (_hex, rgb) in COLOURS.items():
                chip = page.locator(f"{where} .badge.tag", has_text=name).first
                style = chip.evaluate(
                    "e => { const s = getComputedStyle(e);"
                    " return [s.color, s.borderTopColor, e.getAttribute('style')]; }"
                )
                assert style[0] == rgb and style[1] == rgb, (where, name, style)
            screenshot(page, "people-tag-colours-" + where.strip("#"))
    assert problems == []
