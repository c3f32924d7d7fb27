"""Identity: the ids that name one person (aliases), identify, and merging two contacts.

An alias (visitor id, click id, WeChat openid/unionid, WeCom external_userid, phone/email
hash) belongs to one contact per workspace (primary key). Visitor and click ids follow the
latest identify, as the event store's identity map does (a shared device changes hands);
the other kinds are the person's own, so claiming one held by somebody else is a 409 that
says to merge the two contacts.

``POST /api/v1/identify`` and every ingested event carrying both ``user_id`` and
``visitor_id`` (``people_hook.PeopleConsumer``, set-based per batch) write the visitor
alias here *and* in the event store's ``aliases`` table (events/ keeps that one: analytics
resolve ``coalesce(alias.user_id, user_id, visitor_id)`` through it inside the engine).

Merging moves everything that names the merged contact to the survivor (tags, attributes,
aliases, participations, referrals, group seats, assists and helps, conversions, rewards —
``references.REFERENCES``), re-keys its events in the event store (``move_person``), marks the
merged contact ``merged_into_id`` (its external id keeps resolving to the survivor), and
writes an audit record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from liebian.contacts import attributes, computed, repository
from liebian.contacts import service as contacts
from liebian.contacts.models import (
    ALIAS_KINDS,
    Contact,
    ContactAlias,
    ContactAttribute,
    ContactAudit,
    ContactTag,
    TagChange,
)
from liebian.contacts.references import REFERENCES, table
from liebian.contacts.repository import rowcount
from liebian.events.store.base import EventStore
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.errors import Conflict, Invalid
from liebian.kit.ids import new_id

log = logging.getLogger("liebian.contacts")
# Kinds that follow the latest identify instead of conflicting.
_MOVABLE = frozenset({"visitor_id", "click_id"})


def attach(session: Session, workspace_id: str, contact_id: str, kind: str, value: str) -> bool:
    """Make ``value`` an alias of the contact; True when something changed."""
    if kind not in ALIAS_KINDS:
        raise Invalid(
            f"alias kind must be one of {', '.join(ALIAS_KINDS)}",
            code="invalid_alias",
            details={"field": f"aliases.{kind}"},
        )
    value = value.strip()[:128]
    if not value:
        raise Invalid("an alias value may not be empty", details={"field": f"aliases.{kind}"})
    if repository.insert_ignore(
        session,
        ContactAlias.__table__,
        {"workspace_id": workspace_id, "kind": kind, "value": value, "contact_id": contact_id,
         "created_at": utcnow()},
        ["workspace_id", "kind", "value"],
    ):  # fmt: skip
        return True
    owner = session.scalar(
        select(ContactAlias.contact_id).where(
            ContactAlias.workspace_id == workspace_id,
            ContactAlias.kind == kind,
            ContactAlias.value == value,
        )
    )
    if owner == contact_id:
        return False
    if kind in _MOVABLE:
        session.execute(
            update(ContactAlias)
            .where(
                ContactAlias.workspace_id == workspace_id,
                ContactAlias.kind == kind,
                ContactAlias.value == value,
            )
            .values(contact_id=contact_id, created_at=utcnow())
        )
        return True
    raise Conflict(
        f"{kind} {value!r} already belongs to contact {owner}; merge the two contacts "
        f"(POST /api/v1/contacts/{contact_id}/merge)",
        code="alias_taken",
        details={"field": f"aliases.{kind}", "contact_id": owner},
    )


def attach_pii_aliases(session: Session, workspace_id: str, contact: Contact) -> None:
    """Phone/email hashes as aliases of their first holder (several people may share one;
    fraud checks compare the hashes on the contacts themselves)."""
    for kind, value in (("phone_hash", contact.phone_hash), ("email_hash", contact.email_hash)):
        if value:
            repository.insert_ignore(
                session,
                ContactAlias.__table__,
                {"workspace_id": workspace_id, "kind": kind, "value": value,
                 "contact_id": contact.id, "created_at": utcnow()},
                ["workspace_id", "kind", "value"],
            )  # fmt: skip


def identify(
    session: Session,
    cipher: PiiCipher | None,
    workspace_id: str,
    *,
    user_id: str,
    visitor_id: str | None = None,
    aliases: Mapping[str, str] | None = None,
    set_values: Mapping[str, Any] | None = None,
    ts: datetime | None = None,
    channel: str | None = None,
    set_prefix: str = "$set",
) -> Contact:
    """The contact for ``user_id`` (created on first sight) with the given aliases and
    ``$set`` attributes; everything is checked before anything is written."""
    checked = (
        attributes.validate(attributes.defs(session, workspace_id), set_values, set_prefix)
        if set_values
        else {}
    )
    for kind in aliases or {}:
        if kind not in ALIAS_KINDS or kind.endswith("_hash"):
            raise Invalid(
                f"alias kind {kind!r} is not one of visitor_id, click_id, wx_openid, "
                "wx_unionid, wecom_external_userid",
                code="invalid_alias",
                details={"field": f"aliases.{kind}"},
            )
    contact = contacts.upsert(
        session, cipher, workspace_id, contacts.ContactInput(user_id, visitor_id=visitor_id)
    )
    if visitor_id:
        attach(session, workspace_id, contact.id, "visitor_id", visitor_id)
    for kind, value in (aliases or {}).items():
        attach(session, workspace_id, contact.id, kind, value)
    computed.touch(contact, ts or utcnow(), channel)
    if checked and attributes.write(session, workspace_id, contact.id, checked):
        attributes.announce(session, workspace_id, [contact.id])
    return contact


# -- merge ------------------------------------------------------------------------------------


def merge(
    session: Session,
    store: EventStore | None,
    workspace_id: str,
    survivor: Contact,
    other: Contact,
    actor: str,
) -> dict[str, Any]:
    if survivor.id == other.id:
        raise Invalid(
            "a contact cannot be merged into itself",
            code="same_contact",
            details={"field": "other"},
        )
    for c, field in ((survivor, "id"), (other, "other")):
        if c.erased_at is not None or c.merged_into_id is not None:
            raise Conflict(
                f"contact {c.id} was {'erased' if c.erased_at else 'merged'}; it cannot take part "
                "in a merge",
                code="contact_gone",
                details={"field": field},
            )
    moved: dict[str, int] = {}
    kept: dict[str, int] = {}
    for ref in REFERENCES:
        t = table(ref.table)
        col = t.c[ref.column]
        where = [col == other.id]
        if "workspace_id" in t.c:
            where.append(t.c.workspace_id == workspace_id)
        if ref.scope:
            twin = t.alias("twin")
            where.append(
                ~exists().where(
                    twin.c[ref.column] == survivor.id,
                    *[twin.c[s] == t.c[s] for s in ref.scope],
                )
            )
        values: dict[str, Any] = {ref.column: survivor.id}
        for name in ref.keyed:
            values[name] = case((t.c[name] == other.id, survivor.id), else_=t.c[name])
        n = rowcount(session.execute(update(t).where(*where).values(values)))
        key = f"{ref.table}.{ref.column}"
        moved[key] = n
        if ref.scope:
            left = session.scalar(select(func.count()).select_from(t).where(col == other.id))
            if left:
                kept[key] = int(left)
    # Tags: the survivor gains the ones it lacks; the history moves with the person.
    st = aliased(ContactTag)
    lacking = list(
        session.scalars(
            select(ContactTag).where(
                ContactTag.contact_id == other.id,
                ~exists().where(and_(st.contact_id == survivor.id, st.tag_id == ContactTag.tag_id)),
            )
        )
    )
    for link in lacking:
        session.add(
            ContactTag(
                workspace_id=workspace_id, contact_id=survivor.id, tag_id=link.tag_id,
                source=link.source, added_at=link.added_at,
            )
        )  # fmt: skip
    session.execute(delete(ContactTag).where(ContactTag.contact_id == other.id))
    moved["contact_tags"] = len(lacking)
    moved["tag_changes"] = rowcount(
        session.execute(
            update(TagChange).where(TagChange.contact_id == other.id).values(contact_id=survivor.id)
        )
    )
    # Attributes: the survivor's own values win.
    sa = aliased(ContactAttribute)
    n_attr = rowcount(
        session.execute(
            update(ContactAttribute)
            .where(
                ContactAttribute.contact_id == other.id,
                ~exists().where(and_(sa.contact_id == survivor.id, sa.key == ContactAttribute.key)),
            )
            .values(contact_id=survivor.id)
        )
    )
    session.execute(delete(ContactAttribute).where(ContactAttribute.contact_id == other.id))
    moved["contact_attributes"] = n_attr
    moved["contact_aliases"] = rowcount(
        session.execute(
            update(ContactAlias)
            .where(ContactAlias.contact_id == other.id)
            .values(contact_id=survivor.id)
        )
    )
    # Identity data the survivor lacks.
    for enc, digest in (("email_enc", "email_hash"), ("phone_enc", "phone_hash")):
        if getattr(survivor, digest) is None and getattr(other, digest) is not None:
            setattr(survivor, enc, getattr(other, enc))
            setattr(survivor, digest, getattr(other, digest))
    if survivor.nickname_enc is None and other.nickname_enc is not None:
        survivor.nickname_enc = other.nickname_enc
        for n in (1, 2, 3, 4):
            setattr(survivor, f"nick_h{n}", getattr(other, f"nick_h{n}"))
    survivor.avatar_url = survivor.avatar_url or other.avatar_url
    survivor.visitor_id = survivor.visitor_id or other.visitor_id
    # Computed figures add up; the reconcile job recomputes them from the events anyway.
    for ts in (other.first_seen_at, other.last_seen_at):
        if ts is not None:
            computed.touch(survivor, ts)
    if other.first_seen_at and (
        survivor.first_seen_at is None or other.first_seen_at <= survivor.first_seen_at
    ):
        survivor.first_channel = other.first_channel or survivor.first_channel
    survivor.orders_count += other.orders_count
    survivor.gmv_cents += other.gmv_cents
    if other.last_order_at and (
        survivor.last_order_at is None or other.last_order_at > survivor.last_order_at
    ):
        survivor.last_order_at = other.last_order_at
    survivor.invites_made += other.invites_made
    survivor.invites_qualified += other.invites_qualified
    now = utcnow()
    survivor.rfm_class = computed.rfm_class(
        survivor.orders_count, survivor.gmv_cents, survivor.last_order_at, now
    )
    survivor.updated_at = now
    other.merged_into_id = survivor.id
    other.updated_at = now
    audit = ContactAudit(
        id=new_id("cau"), workspace_id=workspace_id, contact_id=survivor.id, action="merge",
        actor=actor[:80], at=now,
        details={"survivor_id": survivor.id, "survivor_external_id": survivor.external_id,
                 "merged_id": other.id, "merged_external_id": other.external_id,
                 "moved": moved, "kept_on_merged": kept},
    )  # fmt: skip
    session.add(audit)
    session.flush()
    if store is not None:
        # Inside the request: if re-keying the events fails, the OLTP merge rolls back too.
        store.move_person(workspace_id, other.external_id, survivor.external_id)
    return {
        "survivor_id": survivor.id,
        "merged_id": other.id,
        "moved": moved,
        "kept_on_merged": kept,
        "audit_id": audit.id,
    }
