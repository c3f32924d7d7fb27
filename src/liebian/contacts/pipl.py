"""PIPL: everything held about one person (export), and erasure.

Erasure cannot be undone. It removes the PII (email, phone, nickname, avatar, their hashes),
the aliases, custom attributes and tags; the contact row stays as a tombstone whose external
id is replaced by an erased marker (``erased:<16 hex>``, a keyed hash of the contact id) so
the reward ledger and campaign records that point at it keep adding up with the person
replaced by the marker. In the event store the person's user id and visitor ids become the
same marker (``EventStore.erase_person``: an UPDATE in DuckDB, a mutation in ClickHouse), so
counts and sums are unchanged. An audit record says who erased what and when — without the
erased identifiers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from liebian.contacts import attributes, repository, timeline
from liebian.contacts.models import (
    Contact,
    ContactAlias,
    ContactAttribute,
    ContactAudit,
    ContactTag,
    Tag,
    TagChange,
)
from liebian.contacts.references import REFERENCES, table
from liebian.contacts.repository import rowcount
from liebian.contacts.service import display
from liebian.events.store.base import EventStore, erased_marker
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.errors import Gone
from liebian.kit.ids import new_id

EXPORT_EVENTS_MAX = 100_000


def _rows(session: Session, name: str, column: str, contact_id: str) -> list[dict[str, Any]]:
    t = table(name)
    return [dict(r._mapping) for r in session.execute(select(t).where(t.c[column] == contact_id))]


def export(
    session: Session, store: EventStore | None, cipher: PiiCipher, contact: Contact
) -> dict[str, Any]:
    """Everything held about the contact, as JSON-ready values (PII in clear)."""
    if contact.erased_at is not None:
        raise Gone(f"contact {contact.id} was erased", code="contact_erased")
    base = {
        c.name: getattr(contact, c.key)
        for c in Contact.__table__.columns
        if not c.name.endswith(("_enc", "_hash")) and not c.name.startswith("nick_h")
    }
    related: dict[str, list[dict[str, Any]]] = {}
    for ref in REFERENCES:
        rows = _rows(session, ref.table, ref.column, contact.id)
        if rows:
            related.setdefault(ref.table, []).extend(rows)
    events: list[dict[str, Any]] = []
    if store is not None:
        users, visitors = timeline.person_ids(session, contact)
        before = None
        while len(events) < EXPORT_EVENTS_MAX:
            batch = store.person_events(
                contact.workspace_id, users, visitors, before=before, limit=5000
            )
            events += [
                {"ts": e.ts, "event_id": e.event_id, "event": e.event, "channel": e.channel,
                 "campaign_id": e.campaign_id, "link_id": e.link_id, "revenue": e.revenue,
                 "currency": e.currency, "properties": timeline._props(e.properties)}
                for e in batch
            ]  # fmt: skip
            if len(batch) < 5000:
                break
            before = (batch[-1].ts, batch[-1].event_id)
    tags = session.execute(
        select(ContactTag, Tag)
        .join(Tag, Tag.id == ContactTag.tag_id)
        .where(ContactTag.contact_id == contact.id)
    )
    return {
        "contact": {**base, **display(cipher, contact, may_see_pii=True)},
        "aliases": [
            {"kind": a.kind, "value": a.value, "created_at": a.created_at}
            for a in repository.aliases_of(session, contact.id)
        ],
        "tags": [
            {"id": t.id, "name": t.name, "source": link.source, "added_at": link.added_at}
            for link, t in tags
        ],
        "tag_changes": [
            {"tag_id": c.tag_id, "change": c.change, "reason": c.reason, "at": c.at}
            for c in session.scalars(
                select(TagChange).where(TagChange.contact_id == contact.id).order_by(TagChange.at)
            )
        ],
        "attributes": attributes.values_of(session, contact.workspace_id, contact.id),
        "records": related,
        "events": events,
        "events_truncated": len(events) >= EXPORT_EVENTS_MAX,
        "exported_at": utcnow(),
    }


def erase(
    session: Session,
    store: EventStore | None,
    cipher: PiiCipher,
    contact: Contact,
    actor: str,
) -> dict[str, Any]:
    if contact.erased_at is not None:
        raise Gone(f"contact {contact.id} was already erased", code="contact_erased")
    ws = contact.workspace_id
    digest = cipher.lookup_hash(f"erase:{contact.id}")
    assert digest is not None
    marker = erased_marker(digest)
    users, visitors = timeline.person_ids(session, contact)
    now = utcnow()
    counts = {
        "aliases": _delete(session, ContactAlias, contact.id),
        "attributes": _delete(session, ContactAttribute, contact.id),
        "tags": _delete(session, ContactTag, contact.id),
        "tag_changes": _delete(session, TagChange, contact.id),
    }
    # Device and network traces kept on campaign rows.
    for name, columns in (
        ("participants", ("visitor_id", "device_id", "ip_hash", "user_agent")),
        ("campaign_group_members", ("visitor_id",)),
        ("assist_helps", ("visitor_id",)),
    ):
        t = table(name)
        ref = next(r for r in REFERENCES if r.table == name)
        present = [c for c in columns if c in t.c]
        if present:
            session.execute(
                update(t).where(t.c[ref.column] == contact.id).values({c: None for c in present})
            )
    # Screening answers kept on community places (a baby's birthday, a city, a name).
    members = table("community_members")
    session.execute(update(members).where(members.c.contact_id == contact.id).values(answers={}))
    # Contacts merged into this one carried the same person's ids.
    merged = list(session.scalars(select(Contact).where(Contact.merged_into_id == contact.id)))
    for c in [contact, *merged]:
        _scrub(c, f"{marker}" if c is contact else f"{marker}:{c.id[-6:]}", now)
    session.add(
        ContactAudit(
            id=new_id("cau"), workspace_id=ws, contact_id=contact.id, action="erase",
            actor=actor[:80], at=now,
            details={"marker": marker, "removed": counts, "merged_contacts": len(merged)},
        )
    )  # fmt: skip
    session.flush()
    events = 0
    if store is not None:
        # Inside the request: if the event store refuses, nothing in OLTP is erased either.
        events = store.erase_person(ws, users, visitors, marker)
    return {"id": contact.id, "erased_at": now, "marker": marker, "events_pseudonymized": events}


def _delete(session: Session, model: Any, contact_id: str) -> int:
    return rowcount(session.execute(delete(model).where(model.contact_id == contact_id)))


def _scrub(contact: Contact, external_id: str, now: Any) -> None:
    for column in (
        "email_enc", "phone_enc", "nickname_enc", "avatar_url", "email_hash", "phone_hash",
        "nick_h1", "nick_h2", "nick_h3", "nick_h4", "visitor_id",
    ):  # fmt: skip
        setattr(contact, column, None)
    contact.external_id = external_id[:128]
    contact.erased_at = now
    contact.updated_at = now
