"""What one batch of the hooks worker asks of the database for the usual conversions (decision
0050): the contacts looked up once for all consumers, only the columns that changed written,
and no campaign lookups in a workspace without campaigns."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select

from liebian.campaigns.models import Conversion
from liebian.contacts.models import Contact, ContactAlias
from liebian.events.models import AppliedEvent


@contextmanager
def _statements(engine: Any) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _post(client: Any, owner: dict[str, str], body: list[dict[str, Any]]) -> None:
    resp = client.post("/api/v1/events", json=body, headers=owner)
    assert resp.status_code == 202, resp.text


def _reads_of_contacts(statements: list[str]) -> list[str]:
    return [s for s in statements if re.search(r"^SELECT .* FROM contacts\b", s)]


def test_a_batch_of_conversions_reads_contacts_once_and_writes_what_changed(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    worker = runtime.extras["event_hooks_worker"]
    signups = [
        {"event": "signup", "event_id": f"s{i}", "user_id": f"u{i}", "visitor_id": f"v{i}"}
        for i in range(30)
    ]
    with worker.paused():
        _post(client, owner, signups)
        with _statements(runtime.engine) as first:
            assert runtime.apply_event_hooks() == 30
    # New people: one read finds none, one insert creates them with what the batch made of
    # them, and nothing updates them after.
    assert len(_reads_of_contacts(first)) == 1, _reads_of_contacts(first)
    assert len([s for s in first if s.startswith("INSERT INTO contacts ")]) == 1
    assert not [s for s in first if "UPDATE contacts" in s]
    # No campaign in the workspace: nothing looks for referees or bound buyers.
    assert not [s for s in first if "FROM referrals" in s or "FROM participants" in s]

    again = [
        {"event": "purchase", "event_id": "p1", "user_id": "u1", "revenue": 990},
        {"event": "signup", "event_id": "s1-again", "user_id": "u2", "visitor_id": "v2"},
    ]
    with worker.paused():
        _post(client, owner, again)
        with _statements(runtime.engine) as second:
            assert runtime.apply_event_hooks() == 2
    assert len(_reads_of_contacts(second)) == 1, _reads_of_contacts(second)
    updates = sorted(
        ", ".join(
            re.findall(
                r"(\w+) ?= ?(?:v\.v\d+|%\(\w+\)s|\?)", s.split(" SET ")[1].split(" WHERE ")[0]
            )
        )
        for s in second
        if s.startswith(("UPDATE contacts", "WITH v"))
    )
    # u2 was seen again (only last_seen_at moves); u1 bought (no first-seen or channel writes).
    assert updates == [
        "last_seen_at",
        "last_seen_at, orders_count, gmv_cents, last_order_at, rfm_class",
    ], updates

    with runtime.sessions() as session:
        u1 = session.scalars(select(Contact).where(Contact.external_id == "u1")).one()
        assert (u1.orders_count, u1.gmv_cents, u1.visitor_id) == (1, 990, "v1")
        assert u1.first_seen_at is not None and u1.last_seen_at >= u1.first_seen_at
        assert session.scalar(select(ContactAlias.contact_id).where(ContactAlias.value == "v1")) == u1.id  # fmt: skip
        conversions = session.execute(select(Conversion.event_id, Conversion.contact_id)).all()
        assert len(conversions) == 32 and ("p1", u1.id) in conversions
        assert len(session.scalars(select(AppliedEvent.event_id)).all()) == 32
