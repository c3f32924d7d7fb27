"""Second verification: TOTP (RFC 6238, an authenticator app; pyotp) and one-time recovery
codes. A code is accepted once: the account keeps the last accepted time step and a conditional
UPDATE refuses the same (or an older) step, so a code replayed within its window is a 4xx even
when two requests race."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp
from sqlalchemy import delete, or_, update
from sqlalchemy.orm import Session

from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.errors import Conflict, Invalid
from liebian.kit.ids import new_id
from liebian.team.models import Account, ConsoleSession, RecoveryCode

ISSUER = "liebian"
RECOVERY_CODES = 10
# One step either side: a phone clock 30 s off still works.
WINDOW = 1


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").strip().lower().encode()).hexdigest()


def enroll(session: Session, cipher: PiiCipher, account: Account, label: str) -> tuple[str, str]:
    """A new secret (not active until ``confirm``): the secret and its otpauth:// URI."""
    if account.totp_enabled_at is not None:
        raise Conflict(
            "an authenticator is already set up; remove it first (DELETE /api/v1/auth/totp, "
            "after a code or a recovery code)",
            code="totp_enabled",
        )
    secret = pyotp.random_base32()
    account.totp_secret_enc = cipher.encrypt(secret)
    session.flush()
    return secret, pyotp.TOTP(secret).provisioning_uri(name=label or account.id, issuer_name=ISSUER)


def _step(secret: str, code: str, now: datetime) -> int | None:
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    base = totp.timecode(now)
    for offset in range(-WINDOW, WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(base + offset), code):
            return base + offset
    return None


def _use_step(session: Session, account: Account, step: int) -> None:
    claimed = session.execute(
        update(Account)
        .where(
            Account.id == account.id,
            or_(Account.totp_last_step.is_(None), Account.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise Invalid(
            "this code was already used: wait for the next one in your authenticator app",
            code="totp_replayed",
            details={"field": "code"},
        )
    account.totp_last_step = step


def confirm(
    session: Session, cipher: PiiCipher, account: Account, code: str, now: datetime
) -> list[str]:
    """Turn the enrolled secret on with a first code; the recovery codes, shown once."""
    if account.totp_enabled_at is not None:
        raise Conflict("the authenticator is already on", code="totp_enabled")
    secret = cipher.decrypt(account.totp_secret_enc)
    if not secret:
        raise Conflict("enrol first: POST /api/v1/auth/totp/enroll", code="totp_not_enrolled")
    step = _step(secret, code, now)
    if step is None:
        raise Invalid(
            "wrong code: enter the 6 digits your authenticator app shows now",
            code="wrong_code",
            details={"field": "code"},
        )
    _use_step(session, account, step)
    account.totp_enabled_at = now
    return new_recovery_codes(session, account)


def new_recovery_codes(session: Session, account: Account) -> list[str]:
    """Ten fresh recovery codes (shown once); the old ones, used or not, stop working."""
    if account.totp_enabled_at is None:
        raise Conflict(
            "set up an authenticator first: POST /api/v1/auth/totp/enroll",
            code="totp_not_enrolled",
        )
    session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(5)
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(
            RecoveryCode(id=new_id("rcv"), account_id=account.id, code_hash=_code_hash(raw))
        )
    session.flush()
    return codes


def remove(session: Session, account: Account) -> None:
    """Turn the authenticator off (a lost phone: verified by a recovery code first), so a new
    one can be enrolled; its recovery codes go with it."""
    if account.totp_enabled_at is None:
        raise Conflict("no authenticator is set up", code="totp_not_enrolled")
    account.totp_enabled_at = None
    account.totp_secret_enc = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
    session.flush()


def verify(session: Session, cipher: PiiCipher, account: Account, code: str, now: datetime) -> str:
    """Accept a TOTP code or a recovery code (each once); which one it was."""
    if account.totp_enabled_at is None:
        raise Conflict(
            "set up an authenticator first (POST /api/v1/auth/totp/enroll, then confirm)",
            code="totp_not_enrolled",
        )
    secret = cipher.decrypt(account.totp_secret_enc) or ""
    step = _step(secret, code, now)
    if step is not None:
        _use_step(session, account, step)
        return "totp"
    if len(code.replace("-", "").strip()) == 10:
        used = session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.account_id == account.id,
                RecoveryCode.code_hash == _code_hash(code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
        )
        if used.rowcount == 1:  # type: ignore[attr-defined]
            return "recovery_code"
    raise Invalid(
        "wrong code: enter the 6 digits your authenticator app shows now, or a recovery code",
        code="wrong_code",
        details={"field": "code"},
    )


def mark_verified(session: Session, console_session_id: str, now: datetime) -> None:
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == console_session_id)
        .values(verified_at=now, pending_totp=False)
    )
