"""Ledger rules: exactly-once grants and moves, balances as sums, coupons, payouts, settlement."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest

from liebian.contacts import service as contacts
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import Conflict, Invalid
from liebian.rewards import service as ledger
from liebian.rewards.models import RewardEntry


def _ws(client: Any, owner: dict[str, str]) -> str:
    return str(client.get("/api/v1/workspace", headers=owner).json()["id"])


def _contact(runtime: Any, ws: str, external_id: str) -> str:
    with session_scope(runtime.sessions) as session:
        return contacts.upsert(session, runtime.cipher, ws, contacts.ContactInput(external_id)).id


def test_balances_equal_sum_of_entries_after_random_operations(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws = _ws(client, owner)
    people = [_contact(runtime, ws, f"p{i}") for i in range(3)]
    rng = random.Random(20261121)
    model: dict[str, dict[str, Any]] = {}  # entry id -> {contact, kind, amount, status}
    keys: list[str] = []
    for step in range(250):
        op = rng.choice(["grant", "grant", "dup", "approve", "issue", "reverse", "settle"])
        with session_scope(runtime.sessions) as session:
            if op in ("grant", "dup") and (op == "grant" or not keys):
                key = f"k{step}"
                keys.append(key)
                kind = rng.choice(["coupon", "points", "gift", "cash"])
                status = rng.choice(["pending", "approved", "issued"])
                entry, created = ledger.grant(
                    session,
                    ledger.Grant(
                        workspace_id=ws, contact_id=rng.choice(people), key=key, kind=kind,
                        amount=rng.randint(1, 10_000), status=status,
                        available_at=utcnow() + timedelta(days=rng.choice([0, 0, 10])),
                    ),
                )  # fmt: skip
                assert created
                model[entry.id] = {
                    "contact": entry.contact_id,
                    "kind": kind,
                    "amount": entry.amount,
                    "status": status,
                }
            elif op == "dup":
                entry, created = ledger.grant(
                    session,
                    ledger.Grant(
                        workspace_id=ws,
                        contact_id=people[0],
                        key=rng.choice(keys),
                        kind="cash",
                        amount=1,
                    ),
                )
                assert not created  # a retry never writes a second entry
            elif op in ("approve", "issue", "reverse") and model:
                entry_id = rng.choice(sorted(model))
                before = model[entry_id]["status"]
                allowed = {
                    "approve": ("pending",),
                    "issue": ("pending", "approved"),
                    "reverse": ledger.ACTIVE,
                }[op]
                target = {"approve": "approved", "issue": "issued", "reverse": "reversed"}[op]
                try:
                    _, changed = ledger.transition(session, ws, entry_id, op)
                except Conflict:
                    assert before not in allowed and before != target
                else:
                    assert changed == (before in allowed)
                    model[entry_id]["status"] = target
            elif op == "settle":
                due = {i for i, v in model.items() if v["status"] in ("pending", "approved")}
                result = ledger.settle(session, utcnow())
                _resync(session, model)
                moved = {i for i in due if model[i]["status"] == "issued"}
                # Everything that moved went to issued; what stayed is waiting for its date.
                assert result.issued == len(moved)
        if step % 25 == 0 or step == 249:
            with session_scope(runtime.sessions) as session:
                _check(session, ws, people, model)


def _resync(session: Any, model: dict[str, dict[str, Any]]) -> None:
    # Settlement moves many entries at once; the model follows the ledger's own statuses for
    # those, then the sums are checked independently in _check.
    for entry in session.query(RewardEntry).filter(RewardEntry.id.in_(list(model))):
        model[entry.id]["status"] = entry.status


def _check(session: Any, ws: str, people: list[str], model: dict[str, dict[str, Any]]) -> None:
    for contact_id in people:
        expected: dict[tuple[str, str], int] = defaultdict(int)
        for values in model.values():
            if values["contact"] == contact_id:
                expected[(values["kind"], values["status"])] += values["amount"]
        for row in ledger.balances(session, ws, contact_id):
            for status in ("pending", "approved", "issued"):
                assert row[status] == expected[(row["kind"], status)], (row, status)
            assert row["total"] == row["pending"] + row["approved"] + row["issued"]
        raw = sum(
            e.amount
            for e in session.query(RewardEntry).filter_by(contact_id=contact_id)
            if e.status != "reversed"
        )
        assert raw == sum(r["total"] for r in ledger.balances(session, ws, contact_id))


def test_transitions_and_refusals(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = _ws(client, owner)
    cid = _contact(runtime, ws, "x")
    with session_scope(runtime.sessions) as session:
        entry, _ = ledger.grant(
            session,
            ledger.Grant(workspace_id=ws, contact_id=cid, key="a", kind="coupon", amount=500),
        )
        assert (
            entry.status == "pending" and entry.coupon_code and entry.coupon_code.startswith("LB")
        )
        assert ledger.transition(session, ws, entry.id, "issue")[1] is True
        assert (
            ledger.transition(session, ws, entry.id, "issue")[1] is False
        )  # retry: fine, no change
        with pytest.raises(Conflict):
            ledger.transition(session, ws, entry.id, "approve")
        ledger.transition(session, ws, entry.id, "reverse")
        with pytest.raises(Conflict):
            ledger.transition(session, ws, entry.id, "issue")
        for amount in (0, -5, ledger.MAX_AMOUNT + 1):
            with pytest.raises(Invalid):
                ledger.grant(
                    session,
                    ledger.Grant(
                        workspace_id=ws,
                        contact_id=cid,
                        key=f"b{amount}",
                        kind="cash",
                        amount=amount,
                    ),
                )
        with pytest.raises(Invalid):
            ledger.grant(
                session,
                ledger.Grant(workspace_id=ws, contact_id=cid, key="c", kind="bitcoin", amount=1),
            )


def test_coupon_codes_are_unique(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = _ws(client, owner)
    cid = _contact(runtime, ws, "x")
    with session_scope(runtime.sessions) as session:
        codes = {
            ledger.grant(
                session,
                ledger.Grant(
                    workspace_id=ws, contact_id=cid, key=f"c{i}", kind="coupon", amount=100
                ),
            )[0].coupon_code
            for i in range(300)
        }
    assert len(codes) == 300 and None not in codes


def test_api_bad_input(client: Any, owner: dict[str, str]) -> None:
    body = {"external_id": "u", "kind": "cash", "amount": 100}
    assert client.post("/api/v1/rewards", json=body, headers=owner).status_code == 422  # no key
    for amount in (-1, 0, 10**10):
        resp = client.post(
            "/api/v1/rewards",
            json={**body, "amount": amount, "idempotency_key": "k"},
            headers=owner,
        )
        assert resp.status_code == 422
    bad_kind = client.post(
        "/api/v1/rewards", json={**body, "kind": "nft", "idempotency_key": "k"}, headers=owner
    )
    assert bad_kind.status_code == 422
    assert (
        client.get("/api/v1/rewards", params={"external_id": "u"}, headers=owner).json()["items"]
        == []
    )
    assert (
        client.post(
            "/api/v1/rewards/rwd_01JAAAAAAAAAAAAAAAAAAAAAAA/issue", headers=owner
        ).status_code
        == 404
    )
