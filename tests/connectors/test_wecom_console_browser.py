"""The 企业微信 console page in headless Chromium against the loopback WeCom: configure (secrets
never shown back), test the connection, create a 联系我 way, see the callbacks received.
Screenshot in artifacts/wecom-console.png."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from wecom_fake import AES_KEY, CORP_ID, SECRET, TOKEN, contact_event, fake_wecom, seal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from browser_support import chromium, expect, live_server, screenshot


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[tuple[str, Any]]:
    from liebian.app.factory import create_app

    with fake_wecom() as fake:
        runtime.settings.wecom_api_base = fake.url
        with live_server(create_app(settings, runtime)) as url:
            yield url, fake


@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_wecom_console_page_in_chromium(server: tuple[str, Any], owner: dict[str, str]) -> None:
    url, fake = server
    key = owner["Authorization"].split(" ", 1)[1]
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # The not-yet-connected GET (404) and the bad key below (422) fail on purpose: any
        # other console error counts.
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and "404" not in m.text and "422" not in m.text
                else None
            ),
        )
        page.goto(url + "/admin/login?next=%2Fadmin%2Fwecom")
        page.fill("input[name=key]", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/admin/wecom")
        page.wait_for_selector("body[data-wecom-ready]")
        assert "未连接" in page.inner_text("#wc-status")
        assert page.is_disabled("#wc-check")

        # A wrong AES key length is refused with the field named; then the right config.
        page.fill("#wc-form input[name=corp_id]", CORP_ID)
        page.fill("#wc-form input[name=agent_secret]", SECRET)
        page.fill("#wc-form input[name=token]", TOKEN)
        page.fill("#wc-form input[name=encoding_aes_key]", AES_KEY[:40])
        page.click("#wc-form button[type=submit]")
        page.wait_for_selector("#alert.error")
        assert "encoding_aes_key" in page.inner_text("#alert")
        page.fill("#wc-form input[name=encoding_aes_key]", AES_KEY)
        page.click("#wc-form button[type=submit]")
        page.wait_for_selector("#alert.ok")
        assert page.inner_text("#wc-status") == "已连接"
        assert page.inner_text("#wc-corp") == CORP_ID
        # Secrets are write-only: not in the page, not in the inputs.
        html = page.content()
        for secret in (SECRET, TOKEN, AES_KEY):
            assert secret not in html
        assert page.input_value("#wc-form input[name=agent_secret]") == ""
        callback_url = page.inner_text("#wc-callback-url")
        assert "/api/v1/connectors/wecom/callback/" in callback_url

        page.click("#wc-check")
        expect(page.locator("#wc-check-result")).to_contain_text("连接正常")
        assert "/cgi-bin/gettoken" in fake.paths()

        # A 联系我 way with a welcome text: created at the loopback WeCom, listed.
        page.fill("#wc-way-form input[name=state]", "poster_a")
        page.fill("#wc-way-form input[name=targets]", "zhangsan")
        page.fill("#wc-way-form textarea[name=welcome_text]", "欢迎！回复 1 领新人券")
        page.click("#wc-way-form button[type=submit]")
        page.wait_for_selector("#wc-ways td:has-text('poster_a')")
        assert "/cgi-bin/externalcontact/add_contact_way" in fake.paths()

        # WeCom calls back (a customer added through the way): shown after a reload.
        now = int(time.time())
        env = seal(
            contact_event("add_external_contact", external="wmC1", state="poster_a",
                          create_time=now),
            timestamp=now,
        )  # fmt: skip
        path = "/api/v1/connectors/wecom/callback/" + callback_url.rsplit("/", 1)[1]
        r = httpx.post(url + path, params=env.params, content=env.body, timeout=10)
        assert r.status_code == 200, r.text
        page.reload()
        page.wait_for_selector("body[data-wecom-ready]")
        page.wait_for_selector("tr.wc-callback")
        row = page.inner_text("#wc-callbacks tbody")
        assert "添加客户" in row and "wmC1" in row and "poster_a" in row
        assert page.inner_text("#wc-last") != "—"

        # 企业群发 to the customer: four reach WeCom, the fifth meets WeCom's monthly cap.
        for i in range(5):
            r = httpx.post(url + "/api/v1/connectors/wecom/mass-sends", headers=owner, timeout=10,
                           json={"idempotency_key": f"m{i}", "external_userids": ["wmC1"],
                                 "text": f"本周福利 {i}", "sender": "zhangsan"})  # fmt: skip
            assert r.status_code == 200, r.text
        assert r.json()["status"] == "refused" and r.json()["over_cap"] == ["wmC1"]
        page.reload()
        page.wait_for_selector("body[data-wecom-ready]")
        page.wait_for_selector("tr.wc-mass")
        assert page.locator("tr.wc-mass").count() == 5
        assert page.locator("tr.wc-mass", has_text="本月已满").count() == 1
        assert page.locator("tr.wc-mass", has_text="待确认").count() == 4
        page.fill("#wc-receipts-form input[name=ids]", "wmC1")
        page.click("#wc-receipts-form button[type=submit]")
        page.wait_for_selector("#wc-receipts td:has-text('本月已满')")
        assert "4 / 4" in page.inner_text("#wc-receipts")
        # The staff member confirms one in WeCom; its row shows it sent after 刷新结果.
        first = next(
            m for m, t in fake.tasks.items() if t["body"]["text"]["content"] == "本周福利 0"
        )
        fake.confirm(first)
        page.locator("tr.wc-mass", has_text="本周福利 0").get_by_role(
            "button", name="刷新结果"
        ).click()
        expect(page.locator("tr.wc-mass", has_text="本周福利 0")).to_contain_text("已发送")
        screenshot(page, "wecom-console")
        assert not errors, errors
