"""Operator console pages over the fission and webhook APIs, in headless Chromium:
风控审核 (held referrals: approve / reject), 奖励 (ledger, filters, payout CSV) and Webhook
(create with the one-time secret, test event, delivery log, retry of a dead delivery).
Data is seeded through the JSON API of the live server (its replies follow the commit).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser_support import ON_SQLITE_ONLY, chromium, expect, live_server, screenshot

pytestmark = pytest.mark.browser

INVITE_REVIEW = {
    "tiers": [{"invites": 1, "reward": {"kind": "coupon", "name": "5元券", "amount": 500}}],
    "invitee_reward": {"kind": "coupon", "name": "新人券", "amount": 1000},
    "qualifying_action": "signup",
    "new_users_only": True,
    # 'review': suspicious referrals are held for a human, never blocked automatically.
    "risk": {"mode": "review", "hold_at": 40, "block_at": 80},
}
ALICE_PHONE = "13800138000"


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.fixture
def api(server: str, owner: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=owner, timeout=30) as http:
        yield http


def _ok(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return dict(resp.json())


def _campaign(api: httpx.Client, name: str) -> str:
    body = {"type": "invite", "name": name, "config": INVITE_REVIEW}
    return str(_ok(api.post("/api/v1/campaigns", json=body), 201)["id"])


def _held_referrals(api: httpx.Client, cid: str, referees: list[str]) -> list[dict[str, Any]]:
    """alice invites each referee, who signs up with alice's phone number: held for review."""
    alice = _ok(
        api.post(f"/api/v1/campaigns/{cid}/participants",
                 json={"external_id": "alice", "phone": ALICE_PHONE}),
        201,
    )  # fmt: skip
    for referee in referees:
        body = {"external_id": referee, "referrer_code": alice["invite_code"],
                "phone": "+86 138-0013-8000"}  # fmt: skip
        _ok(api.post(f"/api/v1/campaigns/{cid}/participants", json=body), 201)
    items = api.get("/api/v1/referrals", params={"status": "held"}).json()["items"]
    assert len(items) == len(referees), items
    return list(items)


@contextmanager
def _console(server: str, key: str, path: str) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A signed-in console page at ``path``; yields (page, page errors, dialog messages).
    Confirm dialogs are accepted and their text recorded."""
    with chromium() as browser:
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True
        )
        page = context.new_page()
        errors: list[str] = []
        dialogs: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        def accept(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", accept)
        page.goto(f"{server}{path}")
        page.wait_for_url("**/admin/login?next=*")
        page.fill("input[name=key]", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_url(f"**{path}")
        page.wait_for_selector("body[data-ready]")
        yield page, errors, dialogs
        context.close()


def _key(owner: dict[str, str]) -> str:
    return owner["Authorization"].split(" ", 1)[1]


def _backend(db_url: str) -> str:
    return "pg" if db_url.startswith("postgresql") else "sqlite"


@ON_SQLITE_ONLY
def test_review_page_approves_and_rejects_held_referrals(
    server: str, api: httpx.Client, owner: dict[str, str], db_url: str
) -> None:
    cid = _campaign(api, "暑期邀请有礼")
    held = _held_referrals(api, cid, ["bob", "carol"])
    by_referee = {r["referee"]["external_id"]: r["id"] for r in held}

    with _console(server, _key(owner), "/admin/review") as (page, errors, dialogs):
        assert page.inner_text("h1") == "风控审核"
        assert page.locator(".menu a.active").inner_text() == "风控审核"
        rows = page.locator("#review-table tbody tr")
        assert rows.count() == 2
        bob = page.locator(f"#review-table tr[data-id='{by_referee['bob']}']")
        text = bob.inner_text()
        assert "alice → bob" in text and "暑期邀请有礼" in text and "待审核" in text
        # The reason code has a Chinese label, followed by the API's own explanation.
        assert "同一手机号" in text and "手机号与推荐人相同" in text
        screenshot(page, f"console-review-{_backend(db_url)}")
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.set_viewport_size({"width": 1280, "height": 900})

        bob.locator("button", has_text="通过").click()
        page.wait_for_selector(
            f"#review-table tr[data-id='{by_referee['bob']}'][data-status=approved]"
        )
        assert "已通过" in bob.inner_text()
        assert "已通过邀请「alice → bob」" in page.inner_text("#alert.ok")

        carol = page.locator(f"#review-table tr[data-id='{by_referee['carol']}']")
        carol.locator("button", has_text="驳回").click()
        page.wait_for_selector(
            f"#review-table tr[data-id='{by_referee['carol']}'][data-status=rejected]"
        )
        assert "撤销" in dialogs[-1]  # the confirm warns that rewards are reversed
        assert "已驳回" in carol.inner_text() and carol.locator("button").count() == 0

        # The queue now holds nothing; the filter shows approved ones.
        page.click("#review-filter button[type=submit]")
        page.wait_for_selector("#review-empty:not([hidden])")
        page.select_option("#review-filter select[name=status]", "approved")
        page.click("#review-filter button[type=submit]")
        page.wait_for_selector(f"#review-table tr[data-id='{by_referee['bob']}']")
        assert errors == []

    statuses = {r["id"]: r["status"] for r in api.get("/api/v1/referrals").json()["items"]}
    assert statuses == {by_referee["bob"]: "approved", by_referee["carol"]: "rejected"}


@ON_SQLITE_ONLY
def test_rewards_page_lists_ledger_and_pays_a_batch(
    server: str, api: httpx.Client, owner: dict[str, str], db_url: str
) -> None:
    cid = _campaign(api, "分享返现")
    grant = {"external_id": "dave", "kind": "cash", "amount": 1234, "name": "邀请返现",
             "campaign_id": cid, "status": "issued", "idempotency_key": "seed-cash-1"}  # fmt: skip
    cash = _ok(api.post("/api/v1/rewards", json=grant), 201)
    frank = {**grant, "external_id": "frank", "amount": 500, "idempotency_key": "seed-cash-2"}
    _ok(api.post("/api/v1/rewards", json=frank), 201)
    points = {"external_id": "erin", "kind": "points", "amount": 300, "name": "签到积分",
              "idempotency_key": "seed-points-1"}  # fmt: skip
    _ok(api.post("/api/v1/rewards", json=points), 201)

    with _console(server, _key(owner), "/admin/rewards") as (page, errors, _dialogs):
        assert page.inner_text("h1") == "奖励"
        page.wait_for_selector("#rw-table tbody tr")
        row = page.locator(f"#rw-table tr[data-id='{cash['id']}']")
        text = row.inner_text()
        assert "dave" in text and "分享返现" in text and "现金" in text
        assert "¥12.34" in text and "已发放" in text and "手动发放" in text
        table = page.inner_text("#rw-table")
        assert "300 积分" in table and "待确认" in table
        screenshot(page, f"console-rewards-{_backend(db_url)}")

        # Filters: status narrows the list; an unknown user empties it.
        page.select_option("#rw-filter select[name=status]", "pending")
        page.click("#rw-filter button[type=submit]")
        page.wait_for_selector(f"#rw-table tr[data-id='{cash['id']}']", state="detached")
        assert page.locator("#rw-table tbody tr").count() == 1
        page.fill("#rw-filter input[name=external_id]", "nobody")
        page.click("#rw-filter button[type=submit]")
        page.wait_for_selector("#rw-empty:not([hidden])")
        page.click("#rw-filter button[type=reset]")
        page.wait_for_selector(f"#rw-table tr[data-id='{cash['id']}']")

        # Payout batches: create one for the campaign, download it (fetch with the Bearer
        # header and a blob URL), mark one line failed and the rest paid.
        page.select_option("#rw-filter select[name=campaign_id]", cid)
        expect(page.locator("#po-preview")).to_contain_text("可打款 2 人")
        page.click("#po-create")
        page.wait_for_selector("#alert.ok")
        batch_row = page.locator("#po-table tbody tr").first
        batch_id = batch_row.get_attribute("data-id")
        assert "¥17.34" in batch_row.inner_text()
        with page.expect_download() as download_info:
            batch_row.locator(".po-csv").click()
        download = download_info.value
        assert download.suggested_filename == f"payouts-{batch_id}.csv"
        csv_text = Path(download.path()).read_text(encoding="utf-8-sig")
        assert csv_text.splitlines()[0].startswith("batch_id,line_id,payee_external_id")
        assert f",dave,{cid},CNY,1234,12.34,1,pending" in csv_text
        page.wait_for_selector("#po-lines:not([hidden])")
        page.locator("#po-lines-table tr", has_text="frank").locator(".po-failed").click()
        page.wait_for_selector("#po-lines-table tr:has-text('frank'):has-text('打款失败')")
        page.locator(f"#po-table tr[data-id='{batch_id}'] .po-all-paid").click()
        page.wait_for_selector(f"#po-table tr[data-id='{batch_id}']:has-text('已完成')")
        page.wait_for_selector("#po-lines-table tr:has-text('dave'):has-text('已打款')")
        # Frank's failed line is back in the pool for the next batch.
        expect(page.locator("#po-preview")).to_contain_text("可打款 1 人")
        screenshot(page, f"console-payouts-{_backend(db_url)}")
        assert errors == []


@ON_SQLITE_ONLY
def test_webhooks_page_creates_tests_and_retries(
    server: str, api: httpx.Client, owner: dict[str, str], runtime: Any, db_url: str
) -> None:
    from liebian.webhooks.deliver import DeliveryPolicy, deliver_due

    # Port 1 on loopback refuses connections: every delivery to it fails.
    hook_body = {"url": "http://127.0.0.1:1/hook", "topics": ["webhook.test"],
                 "description": "CRM 同步"}  # fmt: skip
    seeded = _ok(api.post("/api/v1/webhooks", json=hook_body), 201)

    with _console(server, _key(owner), "/admin/webhooks") as (page, errors, _dialogs):
        assert page.inner_text("h1") == "Webhook"
        card = page.locator(f".wh-card[data-id='{seeded['id']}']")
        assert "CRM 同步" in card.inner_text() and "测试事件" in card.inner_text()
        assert seeded["secret"] not in page.content()  # the secret is never listed

        # Bad input: the API's message reaches the page.
        page.click("#wh-create-box summary")
        page.wait_for_selector("#wh-topics input[value='referral.held']")
        page.fill("#wh-form input[name=url]", "https://user:pw@hooks.example.com/in")
        page.check("#wh-topics input[value='referral.held']")
        page.click("#wh-form button[type=submit]")
        page.wait_for_selector("#alert.error")
        assert "must not carry credentials" in page.inner_text("#alert")
        screenshot(page, f"console-webhooks-form-error-{_backend(db_url)}")

        # Create: the secret is shown once, then the list has two endpoints.
        page.fill("#wh-form input[name=url]", "https://hooks.example.com/in")
        page.check("#wh-topics input[value='reward.issued']")
        page.click("#wh-form button[type=submit]")
        page.wait_for_selector("#wh-secret:not([hidden])")
        secret = page.inner_text("#wh-secret-value")
        assert len(secret) >= 20 and "只显示这一次" in page.inner_text("#wh-secret")
        page.wait_for_selector(".wh-card >> nth=1")
        created = page.locator(".wh-card", has_text="hooks.example.com")
        assert "邀请被风控挂起" in created.inner_text() and "奖励已发放" in created.inner_text()
        screenshot(page, f"console-webhooks-{_backend(db_url)}")

        # Disable, then enable again.
        created.locator("button", has_text="停用").click()
        page.wait_for_selector(".wh-card:has-text('hooks.example.com') .badge.muted")
        page.locator(".wh-card", has_text="hooks.example.com").locator(
            "button", has_text="启用"
        ).click()
        page.wait_for_selector(".wh-card:has-text('hooks.example.com') .badge.ok")

        # Rotating shows the new secret once, in place of the old one.
        page.click("#wh-secret-hide")
        assert page.is_hidden("#wh-secret")
        page.locator(".wh-card", has_text="hooks.example.com").locator(
            "button", has_text="重新生成密钥"
        ).click()
        page.wait_for_selector("#wh-secret:not([hidden])")
        assert page.inner_text("#wh-secret-value") not in ("", secret)

        # A test event lands in the delivery log; it fails once (max_attempts=1) and is dead.
        card.locator("button", has_text="发送测试").click()
        page.wait_for_selector(f".wh-card[data-id='{seeded['id']}'] .wh-log tbody tr[data-id]")
        assert "待投递" in card.locator(".wh-log").inner_text()
        policy = DeliveryPolicy(max_attempts=1, backoff_seconds=0, allow_private=True)
        # Playwright's sync API keeps an event loop on this thread, and the database refuses
        # to begin a transaction on an event-loop thread: deliver from a worker thread.
        with httpx.Client() as http, ThreadPoolExecutor(1) as pool:
            run = pool.submit(
                deliver_due, runtime.sessions, runtime.cipher, policy, client=http
            ).result()
        assert run.dead == 1, run
        card.locator("button", has_text="投递记录").click()
        page.wait_for_selector(f".wh-card[data-id='{seeded['id']}'] .wh-log .badge.bad")
        assert "webhook.test" in card.locator(".wh-log").inner_text()
        card.locator(".wh-log button", has_text="重试").click()
        page.wait_for_selector(f".wh-card[data-id='{seeded['id']}'] .wh-log .badge.warn")
        assert "已重新排队" in page.inner_text("#alert.ok")
        screenshot(page, f"console-webhooks-log-{_backend(db_url)}")

        # Delete the created one (the confirm is accepted).
        page.locator(".wh-card", has_text="hooks.example.com").locator(
            "button", has_text="删除"
        ).click()
        page.wait_for_selector(".wh-card:has-text('hooks.example.com')", state="detached")
        assert errors == []
