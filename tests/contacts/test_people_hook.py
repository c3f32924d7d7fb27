"""The set-based people consumer ends in the same state as applying the events one by one.

One batch holds a person several times, visitor ids moving between people (and back), a
merged contact's events (they land on the survivor), attributes set, changed and removed,
a bad ``$set`` beside a purchase, refunds and malformed ids. The same events are applied
three ways in three workspaces of one database — as one batch, one event per transaction,
and with the per-event ``identify`` path the consumer replaced — and the contacts, aliases
and attributes must match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.contacts import attributes, computed, identity
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact, ContactAlias, ContactAttribute
from liebian.contacts.people_hook import PURCHASE_EVENTS, PeopleConsumer
from liebian.events.hooks import HookEvent
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import DomainError, Invalid
from liebian.workspaces.service import bootstrap

NOW = utcnow().replace(microsecond=0)


def _events(ws: str) -> list[HookEvent]:
    rows: list[tuple[str, str | None, str | None, dict[str, Any] | None, int | None, int]] = [
        # (event, user, visitor, $set, revenue, minutes before NOW)
        ("page_view", "u1", "v1", None, None, 50),
        ("purchase", "u1", None, None, 12_000, 49),
        ("page_view", "u2", "v1", {"plan": "pro"}, None, 48),  # v1 moves to u2
        ("page_view", "u1", "v-old", None, None, 47),  # an existing alias moves to u1 …
        ("page_view", "old", "v-old", None, None, 46),  # … and back
        ("purchase", "gone", None, None, 500, 45),  # merged: the survivor "keep" buys
        ("page_view", "gone", "v9", {"plan": None}, None, 300),  # earlier: first seen moves
        ("purchase", "u1", "v1", {"plan": "basic", "nope": 1}, 3_000, 44),  # bad $set dropped
        ("page_view", "u2", "v2", {"plan": "max", "score": "7.5"}, None, 43),
        ("refund", "u1", None, None, 3_000, 42),
        ("order_paid", "keep", "v-keep", {"score": 2}, 8_000, 41),
        ("page_view", "   ", "v5", None, None, 40),  # no person: skipped
        ("page_view", "u3", "   ", None, None, 39),  # empty alias: skipped
        ("page_view", "u3", None, None, None, 38),  # nothing to apply
        ("signup", "u4", "v4", {"score": "x"}, None, 37),  # bad $set: alias still made
        ("page_view", "u2", "v1", {"score": None}, None, 36),
    ]
    return [
        HookEvent(ws, f"e{i}", name, NOW - timedelta(minutes=ago), NOW, user_id=user,
                  visitor_id=visitor, revenue=revenue,
                  properties={"$set": set_} if set_ is not None else None)
        for i, (name, user, visitor, set_, revenue, ago) in enumerate(rows)
    ]  # fmt: skip


def _workspace(session: Session, cipher: Any) -> str:
    """Attribute definitions, a person holding a visitor id, and a merged pair."""
    ws = bootstrap(session, "people")[0].id
    attributes.define(session, ws, "plan", "string", "套餐")
    attributes.define(session, ws, "score", "number", "分")
    old = contacts.upsert(session, cipher, ws, contacts.ContactInput("old"))
    identity.attach(session, ws, old.id, "visitor_id", "v-old")
    keep = contacts.upsert(session, cipher, ws, contacts.ContactInput("keep"))
    gone = contacts.upsert(session, cipher, ws, contacts.ContactInput("gone", visitor_id="vg"))
    attributes.set_attributes(session, ws, gone.id, {"plan": "trial"})
    session.flush()
    identity.merge(session, None, ws, keep, gone, "test")
    return ws


def _per_event_identify(cipher: Any) -> Callable[[Session, Sequence[HookEvent]], None]:
    """The consumer as it was: ``identify`` per event in a savepoint (the reference)."""

    def apply(session: Session, events: Sequence[HookEvent]) -> None:
        now = utcnow()
        for e in events:
            props = e.properties or {}
            set_values = props.get("$set") if isinstance(props.get("$set"), dict) else None
            buying = e.event in PURCHASE_EVENTS
            if not e.user_id or not (e.visitor_id or set_values or buying):
                continue
            kw: dict[str, Any] = {"user_id": e.user_id, "visitor_id": e.visitor_id, "ts": e.ts}
            try:
                with session.begin_nested():
                    contact = identity.identify(
                        session, cipher, e.workspace_id, set_values=set_values,
                        set_prefix="properties.$set", **kw,
                    )  # fmt: skip
            except DomainError as exc:
                if not isinstance(exc, Invalid) or not set_values:
                    continue
                with session.begin_nested():
                    contact = identity.identify(session, cipher, e.workspace_id, **kw)
            if buying:
                name = "refund" if e.event == "refund" else "purchase"
                computed.on_conversion(contact, name, max(0, int(e.revenue or 0)), e.ts, now)

    return apply


def _state(session: Session, ws: str) -> dict[str, Any]:
    """Everything the consumer writes, by external id (row ids and write times differ)."""
    ext = dict(session.execute(select(Contact.id, Contact.external_id).where(Contact.workspace_id == ws)).all())  # fmt: skip
    people = {
        c.external_id: (
            c.visitor_id, c.first_seen_at, c.last_seen_at, c.orders_count, c.gmv_cents,
            c.last_order_at, c.rfm_class, ext.get(c.merged_into_id or ""),
        )
        for c in session.scalars(select(Contact).where(Contact.workspace_id == ws))
    }  # fmt: skip
    aliases = {
        (a.kind, a.value): ext[a.contact_id]
        for a in session.scalars(select(ContactAlias).where(ContactAlias.workspace_id == ws))
    }
    attrs = {
        (ext[a.contact_id], a.key): (a.value_str, a.value_num)
        for a in session.scalars(select(ContactAttribute).where(ContactAttribute.workspace_id == ws))
    }  # fmt: skip
    return {"people": people, "aliases": aliases, "attributes": attrs}


def test_a_batch_ends_as_the_events_one_by_one(runtime: Any) -> None:
    cipher = runtime.cipher
    consumer = PeopleConsumer(cipher)
    ways: dict[str, Callable[[Session, Sequence[HookEvent]], None]] = {
        "batch": consumer, "one by one": consumer, "identify": _per_event_identify(cipher),
    }  # fmt: skip
    states = {}
    for way, apply in ways.items():
        with session_scope(runtime.sessions) as session:
            ws = _workspace(session, cipher)
        events = _events(ws)
        for chunk in [events] if way == "batch" else [[e] for e in events]:
            with session_scope(runtime.sessions) as session:
                apply(session, chunk)
        with session_scope(runtime.sessions) as session:
            states[way] = _state(session, ws)
    batch = states["batch"]
    assert batch == states["one by one"]
    assert batch == states["identify"]
    # and the state is the one meant, not merely the same three times
    people, aliases, attrs = batch["people"], batch["aliases"], batch["attributes"]
    assert people["u1"][3:5] == (2, 12_000)  # two purchases, 3,000 refunded
    assert people["keep"][3:5] == (2, 8_500) and people["gone"][3] == 0  # survivor's
    assert people["keep"][1] == NOW - timedelta(minutes=300)
    assert aliases[("visitor_id", "v1")] == "u2" and aliases[("visitor_id", "v-old")] == "old"
    assert aliases[("visitor_id", "v9")] == "keep" and aliases[("visitor_id", "v4")] == "u4"
    assert ("visitor_id", "v5") not in aliases and "u3" not in people
    assert attrs == {("u2", "plan"): ("max", None), ("keep", "score"): (None, 2.0)}


def test_a_contact_created_meanwhile_is_replayed_over_as_it_is(
    runtime: Any, monkeypatch: Any
) -> None:
    """PostgreSQL: a contact the batch did not find can be inserted by a concurrent
    transaction before the batch inserts it. The batch's insert skips it, and the batch is
    replayed over that row — the contacts it did insert are not counted twice."""
    from liebian.contacts import people_hook

    cipher = runtime.cipher
    consumer = PeopleConsumer(cipher)
    original = people_hook._people
    missed: list[str] = []

    def racing(session: Session, workspace_id: str, external_ids: set[str]) -> Any:
        people = original(session, workspace_id, external_ids)
        if not missed and "u1" in people.by_external:  # as if made after this read
            missed.append(people.by_external.pop("u1").id)
            del people.by_id[missed[0]]
        return people

    states = {}
    for way in ("one by one", "race"):
        with session_scope(runtime.sessions) as session:
            ws = _workspace(session, cipher)
        events = _events(ws)
        new_buyer = HookEvent(ws, "e-new", "purchase", NOW, NOW, user_id="u9", visitor_id="v99",
                              revenue=700)  # fmt: skip
        events.append(new_buyer)  # a contact the batch inserts, then replays again
        with session_scope(runtime.sessions) as session:
            consumer(session, events[:1])  # u1 exists before the batch
        if way == "race":
            monkeypatch.setattr(people_hook, "_people", racing)
            with session_scope(runtime.sessions) as session:
                consumer(session, events[1:])
            monkeypatch.setattr(people_hook, "_people", original)
        else:
            for event in events[1:]:
                with session_scope(runtime.sessions) as session:
                    consumer(session, [event])
        with session_scope(runtime.sessions) as session:
            states[way] = _state(session, ws)
    assert missed, "the batch never read u1"
    assert states["race"] == states["one by one"]
    people = states["race"]["people"]
    assert people["u1"][3:5] == (2, 12_000) and people["u9"][3:5] == (1, 700)
    assert states["race"]["aliases"][("visitor_id", "v99")] == "u9"
