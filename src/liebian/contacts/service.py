"""Contacts: find-or-create by external id, encrypt PII, mask it for roles without PII access."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from liebian.contacts import repository
from liebian.contacts.models import Contact
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher, mask_email, mask_name, mask_phone
from liebian.kit.errors import Invalid, NotFound
from liebian.kit.ids import new_id
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
        contact.nickname_enc = cipher.encrypt(data.nickname.strip()[:100])
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
    not seen before: set-based, for batches (the event hooks), no PII."""
    found = repository.ids_by_external_id(session, workspace_id, external_ids)
    missing = external_ids - found.keys()
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
    return found


def get_by_external_id(session: Session, workspace_id: str, external_id: str) -> Contact:
    contact = repository.by_external_id(session, workspace_id, external_id)
    if contact is None:
        raise NotFound(f"no contact with external_id {external_id!r}", code="contact_not_found")
    return contact


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
