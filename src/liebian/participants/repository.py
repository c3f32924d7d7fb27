"""All SQL of participant sign-in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from liebian.contacts.models import Contact, ContactAlias
from liebian.contacts.repository import insert_ignore
from liebian.participants.models import WORKSPACE_SCOPE, SignInSettings, SmsCode


def settings_rows(
    session: Session, workspace_id: str, campaign_id: str | None
) -> tuple[SignInSettings | None, SignInSettings | None]:
    """The workspace's row and the campaign's (either may be missing), in one query."""
    scopes = [WORKSPACE_SCOPE] + ([campaign_id] if campaign_id else [])
    rows = {
        row.scope: row
        for row in session.scalars(
            select(SignInSettings).where(
                SignInSettings.workspace_id == workspace_id, SignInSettings.scope.in_(scopes)
            )
        )
    }
    return rows.get(WORKSPACE_SCOPE), rows.get(campaign_id) if campaign_id else None


def codes_since(session: Session, workspace_id: str, *, since: datetime, phone_hash: str | None = None,
                ip_hash: str | None = None) -> int:  # fmt: skip
    query = (
        select(func.count())
        .select_from(SmsCode)
        .where(SmsCode.workspace_id == workspace_id, SmsCode.created_at >= since)
    )
    if phone_hash is not None:
        query = query.where(SmsCode.phone_hash == phone_hash)
    if ip_hash is not None:
        query = query.where(SmsCode.ip_hash == ip_hash)
    return int(session.scalar(query) or 0)


def insert_code(session: Session, values: dict[str, Any]) -> bool:
    """False when this phone already has a code for this minute (unique slot)."""
    return insert_ignore(session, SmsCode.__table__, values, ["workspace_id", "phone_hash", "slot"])


def live_code(
    session: Session, workspace_id: str, phone_hash: str, now: datetime
) -> SmsCode | None:
    """The newest unused, unexpired code of a phone (a new code replaces the earlier ones)."""
    return session.scalar(
        select(SmsCode)
        .where(
            SmsCode.workspace_id == workspace_id,
            SmsCode.phone_hash == phone_hash,
            SmsCode.used_at.is_(None),
            SmsCode.expires_at > now,
        )
        .order_by(SmsCode.created_at.desc(), SmsCode.id.desc())
        .limit(1)
    )


def count_attempt(session: Session, code_id: str, max_attempts: int) -> bool:
    """One more try of a code, counted atomically; False when its tries are used up (or it
    was used meanwhile)."""
    done = session.execute(
        update(SmsCode)
        .where(SmsCode.id == code_id, SmsCode.attempts < max_attempts, SmsCode.used_at.is_(None))
        .values(attempts=SmsCode.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def use_code(session: Session, code_id: str, now: datetime) -> bool:
    """Mark a code used; True for the one request that did (a code signs in once)."""
    done = session.execute(
        update(SmsCode)
        .where(SmsCode.id == code_id, SmsCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def mark_sent(session: Session, code_id: str, send_id: str, status: str) -> None:
    session.execute(
        update(SmsCode)
        .where(SmsCode.id == code_id)
        .values(send_id=send_id, send_status=status)
        .execution_options(synchronize_session=False)
    )


def alias_owner(session: Session, workspace_id: str, kind: str, value: str) -> str | None:
    owner: str | None = session.scalar(
        select(ContactAlias.contact_id).where(
            ContactAlias.workspace_id == workspace_id,
            ContactAlias.kind == kind,
            ContactAlias.value == value,
        )
    )
    return owner


def first_with_phone(session: Session, workspace_id: str, phone_hash: str) -> Contact | None:
    return session.scalar(
        select(Contact)
        .where(
            Contact.workspace_id == workspace_id,
            Contact.phone_hash == phone_hash,
            Contact.merged_into_id.is_(None),
        )
        .order_by(Contact.created_at, Contact.id)
        .limit(1)
    )
