"""Contacts: find-or-create by external id, encrypt PII, mask it for roles without PII access."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from liebian.contacts import repository, search
from liebian.contacts.models import Contact
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher, mask_email, mask_name, mask_phone
from liebian.kit.db import batch_memo
from liebian.kit.errors import Gone, Invalid, NotFound
from liebian.kit.ids import has_prefix, new_id
from liebian.kit.pagination import page_of, paginate
from liebian.risk.normalize import normalize_email, normalize_phone


@dataclass(frozen=True, slots=True)
class ContactInput:
    external_id: str
    email: str | None = None
    phone: str | None = None
    nickname: str | None = None
    avatar_url: str | None = None
    visitor_id: str | None = None


def check_external_id(external_id: str) -> str:
    value = (external_id or "").strip()
    if not value or len(value) > 128:
        raise Invalid(
            "external_id must be 1–128 characters (your user id for this person)",
            code="invalid_external_id",
            details={"field": "external_id"},
        )
    return value


def upsert(
    session: Session, cipher: PiiCipher | None, workspace_id: str, data: ContactInput
) -> Contact:
    """The contact for ``external_id``, created on first sight; given PII fills the gaps.

    Normalizing happens before anything is written, so a malformed phone is a 422 with no
    contact half-created.
    """
    external_id = check_external_id(data.external_id)
    email_norm = normalize_email(data.email) if data.email else None
    phone_norm = normalize_phone(data.phone) if data.phone else None
    now = utcnow()
    repository.insert_ignore(
        session,
        Contact.__table__,
        {
            "id": new_id("ctc"),
            "workspace_id": workspace_id,
            "external_id": external_id,
            "created_at": now,
            "updated_at": now,
        },
        ["workspace_id", "external_id"],
    )
    contact = repository.by_external_id(session, workspace_id, external_id)
    assert contact is not None  # inserted above or by a concurrent request that committed
    if contact.merged_into_id is not None:
        # A merged contact's external id keeps naming the person: the survivor.
        contact = repository.by_id(session, workspace_id, contact.merged_into_id) or contact
    changed = False
    if cipher is None:
        if email_norm or phone_norm or data.nickname:
            raise ValueError("a cipher is required to store PII")
        return contact
    # Later calls may add what was unknown; they never silently replace known identity data
    # (that would let one participant overwrite another's phone through a retried join).
    if email_norm and contact.email_hash is None:
        contact.email_enc = cipher.encrypt(data.email.strip() if data.email else None)
        contact.email_hash = cipher.lookup_hash(email_norm)
        changed = True
    if phone_norm and contact.phone_hash is None:
        contact.phone_enc = cipher.encrypt(phone_norm)
        contact.phone_hash = cipher.lookup_hash(phone_norm)
        changed = True
    if data.nickname and contact.nickname_enc is None:
        set_nickname(cipher, contact, data.nickname)
        changed = True
    if data.avatar_url and contact.avatar_url is None:
        contact.avatar_url = data.avatar_url[:500]
        changed = True
    if data.visitor_id and contact.visitor_id is None:
        contact.visitor_id = data.visitor_id[:128]
        changed = True
    if changed:
        contact.updated_at = now
    return contact


def ensure_ids(session: Session, workspace_id: str, external_ids: set[str]) -> dict[str, str]:
    """external_id → contact id for every given (checked) external_id, creating the contacts
    not seen before: set-based, for batches (the event hooks), no PII. Ids another step of
    the same batch resolved already (``batch_memo``) are not looked up again."""
    memo = batch_memo(session)
    known: dict[str, str] | None = None
    found: dict[str, str] = {}
    wanted = external_ids
    if memo is not None:
        known = memo.setdefault(("contact_ids", workspace_id), {})
        found = {ext: known[ext] for ext in external_ids if ext in known}
        wanted = external_ids - found.keys()
    if wanted:
        found.update(repository.ids_by_external_id(session, workspace_id, wanted))
        missing = wanted - found.keys()
        if missing:
            now = utcnow()
            found.update(
                repository.insert_missing(
                    session,
                    [
                        {"id": new_id("ctc"), "workspace_id": workspace_id, "external_id": ext,
                         "created_at": now, "updated_at": now}
                        for ext in sorted(missing)
                    ],
                )
            )  # fmt: skip
            # Created meanwhile by a concurrent transaction (PostgreSQL): read them now.
            late = missing - found.keys()
            if late:
                found.update(repository.ids_by_external_id(session, workspace_id, late))
        if known is not None:
            known.update(found)
    return found


def set_nickname(cipher: PiiCipher, contact: Contact, nickname: str | None) -> None:
    """Encrypt the nickname and keep its prefix hashes in step (search without decrypting)."""
    value = (nickname or "").strip()[:100] or None
    contact.nickname_enc = cipher.encrypt(value)
    for column, digest in search.nickname_hashes(cipher, value).items():
        setattr(contact, column, digest)


def get_by_external_id(session: Session, workspace_id: str, external_id: str) -> Contact:
    contact = repository.by_external_id(session, workspace_id, external_id)
    if contact is None:
        raise NotFound(f"no contact with external_id {external_id!r}", code="contact_not_found")
    return contact


def find(session: Session, workspace_id: str, ref: str, field: str = "contact") -> Contact:
    """A contact by its id (``ctc_…``) or its external id; a 404 naming ``ref`` otherwise."""
    contact = repository.by_id(session, workspace_id, ref) if has_prefix(ref, "ctc") else None
    if contact is None:
        contact = repository.by_external_id(session, workspace_id, ref)
    if contact is None:
        raise NotFound(
            f"no contact {ref!r} (by id or external_id) in this workspace",
            code="contact_not_found",
            details={"field": field, "value": ref},
        )
    return contact


def list_page(
    session: Session,
    workspace_id: str,
    cipher: PiiCipher,
    f: repository.ContactFilter,
    *,
    cursor: str | None,
    limit: int,
) -> tuple[list[Contact], str | None]:
    """One page, newest first. A nickname longer than the prefix hashes matches on its first
    four characters in SQL and is then checked on the page's decrypted nicknames."""
    stmt = paginate(repository.list_stmt(workspace_id, f), Contact.id, cursor, limit)
    rows = list(session.scalars(stmt))
    page, next_cursor = page_of(rows, limit)
    t = f.search
    if t is not None and t.nick_full is not None:
        page = [c for c in page if _matches(cipher, c, t)]
    return page, next_cursor


def _matches(cipher: PiiCipher, contact: Contact, t: search.SearchTerms) -> bool:
    if contact.external_id == t.external_id:
        return True
    if (t.phone_hash and contact.phone_hash == t.phone_hash) or (
        t.email_hash and contact.email_hash == t.email_hash
    ):
        return True
    nickname = cipher.decrypt(contact.nickname_enc) or ""
    if t.nick_full and search.normalize_nickname(nickname).startswith(t.nick_full):
        return True
    # Not a nickname hit at all, so it matched through an alias value (openid, visitor id…).
    return getattr(contact, t.nick_column or "", None) != t.nick_hash


def item(
    cipher: PiiCipher, contact: Contact, tags: list[tuple[Any, Any]], *, may_see_pii: bool
) -> dict[str, Any]:
    return {
        "id": contact.id,
        "external_id": contact.external_id,
        **display(cipher, contact, may_see_pii=may_see_pii),
        "avatar_url": contact.avatar_url,
        "first_channel": contact.first_channel,
        "first_seen_at": contact.first_seen_at,
        "last_seen_at": contact.last_seen_at,
        "orders_count": contact.orders_count,
        "gmv_cents": contact.gmv_cents,
        "tags": [tag_ref(tag, link) for link, tag in tags],
        "created_at": contact.created_at,
    }


def tag_ref(tag: Any, link: Any = None) -> dict[str, Any]:
    return {
        "id": tag.id,
        "name": tag.name,
        "color": tag.color,
        "kind": tag.kind,
        "source": getattr(link, "source", None),
        "added_at": getattr(link, "added_at", None),
    }


def profile(
    session: Session, cipher: PiiCipher, contact: Contact, *, may_see_pii: bool
) -> dict[str, Any]:
    from liebian.contacts import attributes

    now = utcnow()
    referrer = (
        repository.by_id(session, contact.workspace_id, contact.referrer_contact_id)
        if contact.referrer_contact_id
        else None
    )
    aliases = repository.aliases_of(session, contact.id)
    return {
        "id": contact.id,
        "external_id": contact.external_id,
        **display(cipher, contact, may_see_pii=may_see_pii),
        "avatar_url": contact.avatar_url,
        "pii_masked": not may_see_pii,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "merged_into_id": contact.merged_into_id,
        "erased_at": contact.erased_at,
        "aliases": [
            {"kind": a.kind, "value": a.value, "created_at": a.created_at}
            for a in aliases
            # Hashes of PII are PII-derived: shown only to roles that may see PII.
            if may_see_pii or not a.kind.endswith("_hash")
        ],
        "tags": [
            tag_ref(tag, link)
            for link, tag in repository.tags_of(session, [contact.id])[contact.id]
        ],
        "attributes": attributes.values_of(session, contact.workspace_id, contact.id),
        "computed": {
            "first_channel": contact.first_channel,
            "last_channel": contact.last_channel,
            "source_channel": contact.first_channel,
            "source_campaign_id": contact.source_campaign_id,
            "referrer_contact_id": contact.referrer_contact_id,
            "referrer_external_id": referrer.external_id if referrer else None,
            "first_seen_at": contact.first_seen_at,
            "last_seen_at": contact.last_seen_at,
            "days_since_last_activity": (
                (now - contact.last_seen_at).days if contact.last_seen_at else None
            ),
            "orders_count": contact.orders_count,
            "gmv_cents": contact.gmv_cents,
            "aov_cents": contact.gmv_cents // contact.orders_count
            if contact.orders_count
            else None,
            "last_order_at": contact.last_order_at,
            "invites_made": contact.invites_made,
            "invites_qualified": contact.invites_qualified,
            "rfm_class": contact.rfm_class,
        },
    }


def patch(
    session: Session,
    cipher: PiiCipher,
    contact: Contact,
    *,
    fields: dict[str, Any],
    attributes_in: dict[str, Any] | None,
) -> None:
    """Operator edits: given PII replaces what is stored (validated first, nothing half-written)."""
    from liebian.contacts import attributes, identity

    if contact.erased_at is not None:
        raise Gone(f"contact {contact.id} was erased", code="contact_erased")
    checked = (
        attributes.validate(attributes.defs(session, contact.workspace_id), attributes_in)
        if attributes_in
        else {}
    )
    email = fields.get("email")
    phone = fields.get("phone")
    email_norm = normalize_email(email) if email else None
    phone_norm = normalize_phone(phone) if phone else None
    if "email" in fields:
        contact.email_enc = cipher.encrypt(email.strip()) if email else None
        contact.email_hash = cipher.lookup_hash(email_norm)
    if "phone" in fields:
        contact.phone_enc = cipher.encrypt(phone_norm)
        contact.phone_hash = cipher.lookup_hash(phone_norm)
    if "nickname" in fields:
        set_nickname(cipher, contact, fields["nickname"])
    if "avatar_url" in fields:
        contact.avatar_url = (fields["avatar_url"] or None) and fields["avatar_url"][:500]
    contact.updated_at = utcnow()
    identity.attach_pii_aliases(session, contact.workspace_id, contact)
    if checked and attributes.write(session, contact.workspace_id, contact.id, checked):
        attributes.announce(session, contact.workspace_id, [contact.id])


def normalized_email(cipher: PiiCipher, contact: Contact) -> str | None:
    raw = cipher.decrypt(contact.email_enc)
    return normalize_email(raw) if raw else None


def display(cipher: PiiCipher, contact: Contact, *, may_see_pii: bool) -> dict[str, str | None]:
    """PII for a reply: in clear for roles that may see it, masked (138****1234) otherwise."""
    email = cipher.decrypt(contact.email_enc)
    phone = cipher.decrypt(contact.phone_enc)
    nickname = cipher.decrypt(contact.nickname_enc)
    if may_see_pii:
        return {"email": email, "phone": phone, "nickname": nickname}
    return {"email": mask_email(email), "phone": mask_phone(phone), "nickname": mask_name(nickname)}


def public_nickname(cipher: PiiCipher, contact: Contact | None) -> str:
    """What participant pages show of another person: masked, never the raw name or phone."""
    if contact is None:
        return "好友"
    return mask_name(cipher.decrypt(contact.nickname_enc)) or "好友"
