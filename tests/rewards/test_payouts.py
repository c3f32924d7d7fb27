"""Payout batches: the minimum per payee, pay-once under concurrent batch creation,
paid/failed per line, a reversal after payment as a debit on the next batch, formula-safe CSV,
and balances that are always the ledger's sum."""

from __future__ import annotations

import csv
import io
import random
import threading
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from liebian.contacts import service as contacts
from liebian.kit.db import session_scope
from liebian.rewards import service as ledger
from liebian.rewards.models import RewardEntry
from liebian.rewards.payouts.models import PayoutBatch, PayoutItem, PayoutLine

DISTRIBUTION = {
    "levels": [{"rate_bp": 1_000}],
    "freeze_days": 0,
    "min_withdrawal": 1_000,  # ¥10.00
}


def _ws(client: Any, owner: dict[str, str]) -> str:
    return str(client.get("/api/v1/workspace", headers=owner).json()["id"])


def _campaign(client: Any, owner: dict[str, str]) -> str:
    resp = client.post(
        "/api/v1/campaigns",
        json={"type": "distribution", "name": "分销", "config": DISTRIBUTION},
        headers=owner,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _pay(
    runtime: Any, ws: str, who: str, amount: int, key: str, campaign_id: str | None = None
) -> str:
    """Settled cash for ``who``: an issued entry."""
    with session_scope(runtime.sessions) as session:
        contact = contacts.upsert(session, runtime.cipher, ws, contacts.ContactInput(who))
        entry, _ = ledger.grant(
            session,
            ledger.Grant(
                workspace_id=ws, contact_id=contact.id, key=key, kind="cash", amount=amount,
                campaign_id=campaign_id, status="issued", reason="commission",
            ),
        )  # fmt: skip
        return entry.id


def _batch(client: Any, owner: dict[str, str], key: str, **body: Any) -> Any:
    return client.post(
        "/api/v1/payouts/batches", json=body, headers={**owner, "Idempotency-Key": key}
    )


def _lines(client: Any, owner: dict[str, str], batch_id: str) -> dict[str, dict[str, Any]]:
    resp = client.get(f"/api/v1/payouts/batches/{batch_id}/lines", headers=owner)
    assert resp.status_code == 200, resp.text
    return {line["external_id"]: line for line in resp.json()["items"]}


def _csv(client: Any, owner: dict[str, str], batch_id: str) -> list[dict[str, str]]:
    resp = client.get(f"/api/v1/payouts/batches/{batch_id}/export.csv", headers=owner)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-disposition"] == (f'attachment; filename="payouts-{batch_id}.csv"')
    return list(csv.DictReader(io.StringIO(resp.text.lstrip("\ufeff"))))


def _outcomes(client: Any, owner: dict[str, str], batch_id: str, key: str, **body: Any) -> Any:
    return client.post(
        f"/api/v1/payouts/batches/{batch_id}/outcomes",
        json=body,
        headers={**owner, "Idempotency-Key": key},
    )


def _balance(client: Any, owner: dict[str, str], who: str) -> dict[str, Any]:
    resp = client.get("/api/v1/rewards/balances", params={"external_id": who}, headers=owner)
    assert resp.status_code == 200, resp.text
    return next(b for b in resp.json()["balances"] if b["kind"] == "cash")


def test_minimum_per_payee_and_each_entry_paid_once(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws = _ws(client, owner)
    cid = _campaign(client, owner)
    _pay(runtime, ws, "alice", 300, "a1", cid)  # ¥3.00 under the ¥10.00 minimum
    _pay(runtime, ws, "bob", 700, "b1", cid)
    _pay(runtime, ws, "bob", 800, "b2", cid)
    _pay(runtime, ws, "carol", 50, "c1")  # manual cash: no campaign, no campaign minimum

    preview = client.get("/api/v1/payouts/preview", headers=owner).json()
    assert {(p["external_id"], p["amount"], p["min_amount"], p["eligible"]) for p in preview["lines"]} == {
        ("alice", 300, 1_000, False), ("bob", 1_500, 1_000, True), ("carol", 50, 1, True),
    }  # fmt: skip

    first = _batch(client, owner, "run-1")
    assert first.status_code == 201, first.text
    batch = first.json()
    assert batch["totals"] == {"CNY": 1_550} and batch["line_count"] == 2
    assert _batch(client, owner, "run-1").json()["id"] == batch["id"]  # a retry: same batch
    rows = _csv(client, owner, batch["id"])
    assert sorted((r["payee_external_id"], r["amount_fen"], r["amount_yuan"]) for r in rows) == [
        ("bob", "1500", "15.00"), ("carol", "50", "0.50"),
    ]  # fmt: skip
    # Downloading again gives the same lines; nothing new is taken.
    assert _csv(client, owner, batch["id"]) == rows

    again = _batch(client, owner, "run-2")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "nothing_to_pay"
    assert again.json()["error"]["details"] == {"below_minimum": 1}

    lines = _lines(client, owner, batch["id"])
    done = _outcomes(
        client, owner, batch["id"], "finance-1",
        lines=[
            {"line_id": lines["bob"]["id"], "outcome": "paid", "reference": "wx-4200001"},
            {"line_id": lines["carol"]["id"], "outcome": "failed", "reason": "实名不符"},
        ],
    )  # fmt: skip
    assert done.status_code == 200, done.text
    assert done.json()["changed"] == 2 and done.json()["batch"]["status"] == "closed"
    # The same report again changes nothing; the opposite is refused and writes nothing.
    repeat = _outcomes(
        client, owner, batch["id"], "finance-1",
        lines=[{"line_id": lines["bob"]["id"], "outcome": "paid"}],
    )  # fmt: skip
    assert repeat.json()["changed"] == 0 and repeat.json()["unchanged"] == 1
    flip = _outcomes(
        client, owner, batch["id"], "finance-2",
        lines=[{"line_id": lines["bob"]["id"], "outcome": "failed"}],
    )  # fmt: skip
    assert flip.status_code == 409 and flip.json()["error"]["code"] == "line_already_decided"
    assert _lines(client, owner, batch["id"])["bob"]["status"] == "paid"

    # Carol's failed line goes to the next batch; Bob's paid entries never again.
    _pay(runtime, ws, "alice", 700, "a2", cid)  # now ¥10.00: at the minimum
    nxt = _batch(client, owner, "run-3")
    assert nxt.status_code == 201, nxt.text
    nxt_lines = _lines(client, owner, nxt.json()["id"])
    assert {who: line["amount"] for who, line in nxt_lines.items()} == {"alice": 1_000, "carol": 50}
    bob = _balance(client, owner, "bob")
    assert (bob["issued"], bob["paid"], bob["in_payout"]) == (1_500, 1_500, 0)
    alice = _balance(client, owner, "alice")
    assert (alice["issued"], alice["paid"], alice["in_payout"]) == (1_000, 0, 1_000)


def test_reversal_after_payment_is_a_debit_on_the_next_batch(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws = _ws(client, owner)
    paid_entry = _pay(runtime, ws, "dan", 800, "d1")
    _pay(runtime, ws, "dan", 700, "d2")
    batch = _batch(client, owner, "b1").json()
    line = _lines(client, owner, batch["id"])["dan"]
    assert _outcomes(client, owner, batch["id"], "k1", all_pending="paid").json()["changed"] == 1

    # A refund after the money left: the entry stays (it was paid), a debit takes it back.
    for _ in range(2):  # repeated reversals debit once
        resp = client.post(f"/api/v1/rewards/{paid_entry}/reverse", headers=owner)
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "issued"
    with session_scope(runtime.sessions) as session:
        debits = session.scalars(
            select(RewardEntry).where(RewardEntry.idempotency_key == f"debit:{paid_entry}")
        ).all()
        assert [(d.amount, d.status, d.reason) for d in debits] == [(-800, "issued", "clawback")]
        # Reversing a held entry through the bulk path (a rejected referral) debits too, once.
        assert ledger.reverse_where(session, RewardEntry.id == paid_entry, reason="again") == 0
    assert line["amount"] == 1_500

    # Too little to pay after the debit: nothing, and the debit waits.
    _pay(runtime, ws, "dan", 500, "d3")
    assert _batch(client, owner, "b2").status_code == 409
    _pay(runtime, ws, "dan", 2_000, "d4")
    nxt = _batch(client, owner, "b3")
    assert nxt.status_code == 201, nxt.text
    assert _lines(client, owner, nxt.json()["id"])["dan"]["amount"] == 2_500 - 800
    dan = _balance(client, owner, "dan")
    with session_scope(runtime.sessions) as session:
        ledger_sum = session.scalar(
            select(func.sum(RewardEntry.amount)).where(
                RewardEntry.workspace_id == ws, RewardEntry.status != "reversed"
            )
        )
    assert dan["total"] == ledger_sum == 800 + 700 + 500 + 2_000 - 800
    assert (dan["paid"], dan["in_payout"]) == (1_500, 2_500 - 800)

    # A reversal while the batch is exported but not reported is a debit as well; if the
    # line then fails, entry and debit both return and cancel out in the next batch.
    open_entry = _pay(runtime, ws, "erin", 1_200, "e1")
    open_batch = _batch(client, owner, "b4").json()
    client.post(f"/api/v1/rewards/{open_entry}/reverse", headers=owner)
    erin_line = _lines(client, owner, open_batch["id"])["erin"]
    _outcomes(client, owner, open_batch["id"], "k2",
              lines=[{"line_id": erin_line["id"], "outcome": "failed"}])  # fmt: skip
    preview = client.get("/api/v1/payouts/preview", headers=owner).json()
    erin = [p for p in preview["lines"] if p["external_id"] == "erin"]
    assert erin == [
        {"external_id": "erin", "campaign_id": None, "currency": "CNY", "amount": 0,
         "entry_count": 2, "min_amount": 1, "eligible": False},
    ]  # fmt: skip


def test_export_is_formula_safe(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = _ws(client, owner)
    names = ['=HYPERLINK("http://x")', "+86138", "-2+3", "@SUM(A1)", "plain"]
    for i, name in enumerate(names):
        _pay(runtime, ws, name, 100 + i, f"f{i}")
    batch = _batch(client, owner, "f").json()
    rows = _csv(client, owner, batch["id"])
    assert sorted(r["payee_external_id"] for r in rows) == sorted(
        ['\'=HYPERLINK("http://x")', "'+86138", "'-2+3", "'@SUM(A1)", "plain"]
    )


def test_bad_input_is_a_clear_4xx(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = _ws(client, owner)
    _pay(runtime, ws, "x", 100, "x1")
    no_key = client.post("/api/v1/payouts/batches", json={}, headers=owner)
    assert no_key.status_code == 422
    assert no_key.json()["error"]["code"] == "idempotency_key_required"
    missing = _batch(client, owner, "m", campaign_id="cmp_01JAAAAAAAAAAAAAAAAAAAAAAA")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "campaign_not_found"
    batch = _batch(client, owner, "ok").json()
    reused = _batch(client, owner, "ok", min_amount=500)
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    unknown = _outcomes(client, owner, batch["id"], "k",
                        lines=[{"line_id": "pol_nope", "outcome": "paid"}])  # fmt: skip
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"] == {"field": "lines[0].line_id"}
    assert _outcomes(client, owner, batch["id"], "k").status_code == 422
    gone = client.get("/api/v1/rewards/payouts.csv", headers=owner)
    assert gone.status_code == 410 and "payouts/batches" in gone.json()["error"]["message"]
    operator = client.post(
        "/api/v1/keys", json={"name": "op", "role": "operator"}, headers=owner
    ).json()["key"]
    as_operator = _batch(client, {"Authorization": f"Bearer {operator}"}, "op")
    assert as_operator.status_code == 403


def test_concurrent_batch_creation_pays_each_entry_once(
    server: str, runtime: Any, http: httpx.Client, owner: dict[str, str]
) -> None:
    """Many clients create batches at once (new keys and retried keys) while refunds reverse
    entries: every entry is paid at most once, and no reversed entry is in a batch."""
    url = server
    ws = _ws(http, owner)
    rng = random.Random(7)
    entries = []
    with session_scope(runtime.sessions) as session:
        people = [
            contacts.upsert(session, runtime.cipher, ws, contacts.ContactInput(f"p{i}")).id
            for i in range(40)
        ]
        for i in range(240):
            entry, _ = ledger.grant(
                session,
                ledger.Grant(
                    workspace_id=ws, contact_id=people[i % 40], key=f"e{i}", kind="cash",
                    amount=rng.randint(1, 3_000), status="issued",
                ),
            )  # fmt: skip
            entries.append(entry.id)
    to_reverse = rng.sample(entries, 30)
    barrier = threading.Barrier(16)

    def create(i: int) -> tuple[int, str]:
        barrier.wait()
        key = f"same-{i % 3}" if i < 6 else f"key-{i}"
        with httpx.Client(timeout=60) as http:
            resp = http.post(
                f"{url}/api/v1/payouts/batches", json={},
                headers={**owner, "Idempotency-Key": key},
            )  # fmt: skip
        return resp.status_code, resp.json().get("id", resp.json().get("error", {}).get("code"))

    def reverse(i: int) -> None:
        barrier.wait()
        with httpx.Client(timeout=60) as http:
            for entry_id in to_reverse[i::4]:
                resp = http.post(f"{url}/api/v1/rewards/{entry_id}/reverse", headers=owner)
                assert resp.status_code == 200, resp.text

    def earn(i: int) -> None:
        barrier.wait()
        with httpx.Client(timeout=60) as http:
            for n in range(15):
                body = {"external_id": f"p{n}", "kind": "cash", "amount": 100 + n,
                        "status": "issued", "idempotency_key": f"late-{i}-{n}"}  # fmt: skip
                resp = http.post(f"{url}/api/v1/rewards", json=body, headers=owner)
                assert resp.status_code == 201, resp.text

    results: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def guarded(call: Any, i: int) -> None:
        try:
            out = call(i)
            if out is not None:
                results.append(out)
        except BaseException as exc:  # surfaced below: a thread's assert must fail the test
            errors.append(exc)

    threads = (
        [threading.Thread(target=guarded, args=(create, i)) for i in range(10)]
        + [threading.Thread(target=guarded, args=(reverse, i)) for i in range(4)]
        + [threading.Thread(target=guarded, args=(earn, i)) for i in range(2)]
    )
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    statuses = Counter(status for status, _ in results)
    print(sorted(results))
    assert statuses[201] >= 1 and set(statuses) <= {200, 201, 409}, results
    with session_scope(runtime.sessions) as session:
        held = session.execute(
            select(PayoutItem.entry_id, func.count())
            .where(PayoutItem.holding == 1)
            .group_by(PayoutItem.entry_id)
        ).all()
        assert held and all(n == 1 for _, n in held)
        held_ids = {entry_id for entry_id, _ in held}
        statuses_by_id = dict(session.execute(select(RewardEntry.id, RewardEntry.status)).all())
        assert all(statuses_by_id[e] == "issued" for e in held_ids)  # never a reversed one
        for line in session.scalars(select(PayoutLine)):
            items = session.scalar(
                select(func.sum(PayoutItem.amount)).where(PayoutItem.line_id == line.id)
            )
            assert line.amount == items and line.amount >= 1
        # Every payable entry is either held or still waiting; none is held twice, and the
        # batches' totals are exactly what they hold.
        batches = session.scalars(select(PayoutBatch)).all()
        assert sum(b.totals.get("CNY", 0) for b in batches) == session.scalar(
            select(func.sum(PayoutItem.amount)).where(PayoutItem.holding == 1)
        )
        # One batch per idempotency key, whatever the interleaving.
        keys = Counter(b.idempotency_key for b in batches)
        assert all(n == 1 for n in keys.values())
    same_key_ids = {ident for status, ident in results if status in (200, 201)}
    assert len(same_key_ids) == len(batches)


@pytest.mark.parametrize("outcome", ["paid", "failed"])
def test_concurrent_outcome_reports_decide_a_line_once(
    server: str, runtime: Any, http: httpx.Client, owner: dict[str, str], outcome: str
) -> None:
    url = server
    ws = _ws(http, owner)
    _pay(runtime, ws, "z", 1_000, "z1")
    batch = _batch(http, owner, "z").json()
    line_id = _lines(http, owner, batch["id"])["z"]["id"]
    barrier = threading.Barrier(8)

    def report(i: int) -> Any:
        barrier.wait()
        with httpx.Client(timeout=60) as http:
            return http.post(
                f"{url}/api/v1/payouts/batches/{batch['id']}/outcomes",
                json={"lines": [{"line_id": line_id, "outcome": outcome}]},
                headers={**owner, "Idempotency-Key": f"r{i}"},
            ).json()

    out: list[Any] = []
    threads = [threading.Thread(target=lambda i=i: out.append(report(i))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o["changed"] for o in out) == [0] * 7 + [1], out
