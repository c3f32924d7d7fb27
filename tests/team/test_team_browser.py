"""Console sign-in for people in headless Chromium: an invitation link, the authenticator set up,
sign-out, password sign-in, and a sensitive operation (a role change) that asks for the
authenticator code in a dialog and then goes through."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyotp
import pytest

from browser_support import ON_SQLITE_ONLY, chromium, expect, live_server, screenshot
from liebian.kit.db import session_scope
from liebian.team.service import owner_invitation


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.mark.browser
@ON_SQLITE_ONLY  # the same flows' storage runs on PostgreSQL in test_team_flow.py
def test_console_sign_in_and_totp_step_up(
    server: str, owner: dict[str, str], runtime: Any, db_url: str
) -> None:
    backend = "sqlite"
    http = httpx.Client(base_url=server, headers=owner, timeout=60)
    ws = http.get("/api/v1/workspace").json()["id"]
    with session_scope(runtime.sessions) as session:
        _inv, token = owner_invitation(session, ws)
    # A second member whose role the owner will change.
    invite = http.post("/api/v1/team/invitations", json={"role": "operator"}).json()
    op = httpx.post(
        f"{server}/api/v1/auth/accept-invitation",
        timeout=60,
        json={"token": invite["token"], "login": "op@example.com", "password": "Harbor#lights7"},
    ).json()
    # A community with two groups: the owner will limit the member to one of them.
    cmy = http.post("/api/v1/communities", json={"name": "宝妈群"}).json()["id"]
    groups = [
        http.post(f"/api/v1/communities/{cmy}/groups", json={"name": name}).json()["id"]
        for name in ("北京一群", "上海一群")
    ]
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: d.accept())

        # The one-time link: set a password, land on 成员与安全 signed in.
        page.goto(f"{server}/admin/join#{token}")
        assert "#" not in page.url  # the token left the address bar
        page.fill("#join-form input[name=login]", "boss@example.com")
        page.fill("#join-form input[name=name]", "王老板")
        page.fill("#join-form input[name=password]", "Lantern-42-river")
        page.fill("#join-form input[name=password2]", "Lantern-42-river")
        page.click("#join-form button[type=submit]")
        page.wait_for_url("**/admin/team")
        page.wait_for_selector("body[data-ready]")
        assert page.inner_text("#me-totp") == "未开启"

        # Set up the authenticator: the secret shown, a first code, ten recovery codes.
        page.click("#totp-enroll")
        page.wait_for_selector("#totp-setup:not([hidden])")
        totp = pyotp.TOTP(page.inner_text("#totp-secret").strip())
        page.fill("#totp-confirm-form input[name=code]", totp.now())
        page.click("#totp-confirm-form button[type=submit]")
        page.wait_for_selector("#recovery-box:not([hidden])")
        assert page.locator("#recovery-codes li").count() == 10
        assert page.inner_text("#me-totp") == "已开启"
        screenshot(page, f"team-totp-enrolled-{backend}")

        # Sign out, and back in with email and password.
        page.click("#sign-out")
        page.wait_for_url("**/admin/login*")
        page.fill("#password-form input[name=login]", "boss@example.com")
        page.fill("#password-form input[name=password]", "wrong-password-1")
        page.click("#password-form button[type=submit]")
        page.wait_for_selector("#alert.error")
        assert "不正确" in page.inner_text("#alert")
        page.fill("#password-form input[name=password]", "Lantern-42-river")
        page.click("#password-form button[type=submit]")
        page.wait_for_url("**/admin")
        page.goto(f"{server}/admin/team")
        page.wait_for_selector("body[data-ready]")

        # A role change is sensitive: the fresh session is asked for the code, then it goes.
        page.select_option(f"select[data-member='{op['member_id']}']", "viewer")
        page.wait_for_selector("dialog#step-up[open]")
        screenshot(page, f"team-step-up-{backend}")
        # The enrolment used this time step's code: the next step's is accepted (±1 window).
        page.fill("dialog#step-up input[name=code]", totp.at(time.time() + 30))
        page.click("dialog#step-up button[type=submit]")
        page.wait_for_selector("#alert.ok")
        assert "下一次操作即生效" in page.inner_text("#alert")
        page.wait_for_selector("#audit tbody tr:has-text('team.role_changed')")
        members = http.get("/api/v1/team/members").json()
        assert {m["id"]: m["role"] for m in members}[op["member_id"]] == "viewer"
        screenshot(page, f"team-role-changed-{backend}")

        # Data scope: the member sees only 北京一群 from the next request on.
        assert page.inner_text(f"tr[data-member='{op['member_id']}'] td.scope").startswith("全部")
        page.click(f"button[data-scope='{op['member_id']}']")
        page.wait_for_selector("#scope-form:not([hidden])")
        assert "宝妈群（整个社群）" in page.inner_text("#scope-options")
        page.check(f"#scope-options input[value='{groups[0]}']")
        page.click("#scope-form button[type=submit]")
        page.wait_for_selector("#alert.ok:has-text('数据范围')")
        page.wait_for_selector(f"tr[data-member='{op['member_id']}'] td.scope:has-text('北京一群')")
        members = http.get("/api/v1/team/members").json()
        assert {m["id"]: m["scope"] for m in members}[op["member_id"]] == [groups[0]]
        # The audit log filtered by action and by time (the last hour).
        page.fill("#audit-form input[name=action]", "team.scope_changed")
        hour_ago = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() - 3600))
        page.fill("#audit-form input[name=since]", hour_ago)
        page.click("#audit-form button[type=submit]")
        expect(page.locator("#audit tbody tr")).to_have_count(1)
        expect(page.locator("#audit tbody tr")).to_contain_text("team.scope_changed")
        screenshot(page, f"team-scope-{backend}")
        page.fill(
            "#audit-form input[name=since]",
            time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() + 3600)),
        )
        page.click("#audit-form button[type=submit]")
        expect(page.locator("#audit tbody tr")).to_have_count(0)

        # New recovery codes (the session verified a moment ago): ten, shown once.
        page.click("#recovery-renew")
        page.wait_for_selector("#alert.ok:has-text('新的恢复码')")
        assert page.locator("#recovery-codes li").count() == 10
        screenshot(page, f"team-recovery-renewed-{backend}")
        assert errors == []
        context.close()
