"""Participant sign-in: which methods a page offers, the one-time SMS code, WeChat web
authorization, and the contact each one names (decision 0028).

The person is always a contact of the workspace (contacts/), never a second record:

* a phone number → the contact holding its ``phone_hash`` alias, else the first contact with
  that phone, else a new contact (external id ``sms_`` + the phone's keyed hash; the number
  itself stored encrypted as its PII, the hash as its alias);
* WeChat → the contact holding the ``wx_unionid`` alias, else the ``wx_openid`` one, else a
  new contact (external id ``wx_`` + unionid or openid); both ids become its aliases.

So a brand that already knows the phone (its CRM, an earlier order) or the openid (its
official account) gets the same person back, and the join, the referral and the rewards
land on them. Aliases are attached through contacts/identity (never written here).

Codes: six digits, stored only as a keyed hash, valid five minutes, five tries each, one per
phone per minute (unique slot), five per phone an hour, ten a day, twenty per IP an hour;
sent through the workspace's SMS channel (channels.service.send: the channel's adapter, its
exactly-once record, retries). A code is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from liebian.contacts import identity
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact
from liebian.contacts.repository import by_id
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher, hash_ip
from liebian.kit.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited
from liebian.kit.ids import new_id
from liebian.participants import repository
from liebian.participants.models import WORKSPACE_SCOPE, SignInSettings
from liebian.participants.schemas import CampaignSignInIn, WorkspaceSignInIn
from liebian.participants.session import METHODS
from liebian.participants.wechat import WeChatUser
from liebian.risk.normalize import normalize_phone

log = logging.getLogger("liebian.participants")

DEFAULT_METHODS = ("token",)
DEFAULT_SMS_TEXT = "【验证码】{code}，{minutes}分钟内有效，请勿告诉他人。"
CODE_DIGITS = 6
CODE_MINUTES = 5
MAX_ATTEMPTS = 5
PHONE_PER_HOUR = 5
PHONE_PER_DAY = 10
IP_PER_HOUR = 20


# ── which methods a page offers ─────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Offer:
    """What a campaign's pages offer for sign-in: the configured methods that can work."""

    methods: tuple[str, ...]
    wechat_scope: str = "snsapi_base"

    @property
    def self_service(self) -> bool:
        """A person can sign in on the page itself (not only through the brand's app)."""
        return "sms" in self.methods or "wechat" in self.methods


def _usable(row: SignInSettings | None, methods: tuple[str, ...]) -> tuple[str, ...]:
    def works(method: str) -> bool:
        if method == "sms":
            return row is not None and bool(row.sms_channel_id)
        if method == "wechat":
            return row is not None and bool(row.wechat_app_id and row.wechat_secret_enc)
        return method == "token"

    return tuple(m for m in methods if works(m))


def _methods(text: str | None) -> tuple[str, ...]:
    return tuple(m for m in (text or "").split(",") if m in METHODS) or DEFAULT_METHODS


def offer(session: Session, workspace_id: str, campaign_id: str | None) -> Offer:
    workspace, campaign = repository.settings_rows(session, workspace_id, campaign_id)
    chosen = campaign or workspace
    methods = _methods(chosen.methods if chosen else None)
    scope = workspace.wechat_scope if workspace is not None else "snsapi_base"
    return Offer(_usable(workspace, methods), scope)


def settings_out(
    session: Session, workspace_id: str, campaign_id: str | None = None
) -> dict[str, object]:
    workspace, campaign = repository.settings_rows(session, workspace_id, campaign_id)
    chosen = (campaign if campaign_id else None) or workspace
    methods = list(_methods(chosen.methods if chosen is not None else None))
    return {
        "scope": campaign_id or WORKSPACE_SCOPE, "methods": methods,
        "offered": list(_usable(workspace, tuple(methods))),
        "sms_channel_id": workspace.sms_channel_id if workspace else None,
        "sms_text": workspace.sms_text if workspace else None,
        "sms_template_id": workspace.sms_template_id if workspace else None,
        "wechat_app_id": workspace.wechat_app_id if workspace else None,
        "wechat_secret_hint": workspace.wechat_secret_hint if workspace else None,
        "wechat_scope": workspace.wechat_scope if workspace else "snsapi_base",
        "inherited": bool(campaign_id) and campaign is None,
    }  # fmt: skip


def _row(session: Session, workspace_id: str, scope: str) -> SignInSettings:
    row = session.get(SignInSettings, (workspace_id, scope))
    if row is None:
        row = SignInSettings(
            workspace_id=workspace_id, scope=scope, methods=",".join(DEFAULT_METHODS),
            wechat_scope="snsapi_base", updated_at=utcnow(),
        )  # fmt: skip
        session.add(row)
    return row


def _distinct(methods: list[str]) -> str:
    return ",".join(dict.fromkeys(methods))


def put_workspace(
    session: Session, cipher: PiiCipher, workspace_id: str, data: WorkspaceSignInIn
) -> None:
    """Set the workspace's methods and what they need; everything is checked first."""
    if data.sms_channel_id:
        from liebian.channels.models import Channel

        channel = session.get(Channel, data.sms_channel_id)
        if channel is None or channel.workspace_id != workspace_id or channel.kind != "sms":
            raise Invalid("sms_channel_id must name an sms channel of this workspace",
                          code="invalid_sms_channel", details={"field": "sms_channel_id"})  # fmt: skip
    if data.sms_text is not None and "{code}" not in data.sms_text:
        raise Invalid("sms_text must contain {code}", details={"field": "sms_text"})
    row = _row(session, workspace_id, WORKSPACE_SCOPE)
    fields = data.model_fields_set
    if data.methods is not None:
        row.methods = _distinct(list(data.methods))
    for name in ("sms_channel_id", "sms_text", "sms_template_id", "wechat_app_id"):
        if name in fields:
            setattr(row, name, getattr(data, name) or None)
    if data.wechat_scope is not None:
        row.wechat_scope = data.wechat_scope
    if "wechat_app_secret" in fields:
        secret = (data.wechat_app_secret or "").strip()
        row.wechat_secret_enc = cipher.encrypt(secret) if secret else None
        row.wechat_secret_hint = secret[-4:] if secret else None
    wanted = _methods(row.methods)
    missing = [m for m in wanted if m not in _usable(row, wanted)]
    if missing:
        need = {"sms": "sms_channel_id", "wechat": "wechat_app_id and wechat_app_secret"}
        raise Invalid(
            f"method {missing[0]} needs {need[missing[0]]}", code="sign_in_method_incomplete",
            details={"field": "methods", "missing": missing},
        )  # fmt: skip
    row.updated_at = utcnow()
    session.flush()


def put_campaign(
    session: Session, workspace_id: str, campaign_id: str, data: CampaignSignInIn
) -> None:
    workspace, _ = repository.settings_rows(session, workspace_id, None)
    wanted = tuple(dict.fromkeys(data.methods))
    missing = [m for m in wanted if m not in _usable(workspace, wanted)]
    if missing:
        raise Invalid(
            f"method {missing[0]} is not set up for the workspace (PUT /participant-sign-in)",
            code="sign_in_method_incomplete", details={"field": "methods", "missing": missing},
        )  # fmt: skip
    row = _row(session, workspace_id, campaign_id)
    row.methods = ",".join(wanted)
    row.updated_at = utcnow()
    session.flush()


def clear_campaign(session: Session, workspace_id: str, campaign_id: str) -> None:
    row = session.get(SignInSettings, (workspace_id, campaign_id))
    if row is not None:
        session.delete(row)
        session.flush()


def wechat_credentials(
    session: Session, cipher: PiiCipher, workspace_id: str
) -> tuple[str, str, str]:
    """(AppID, AppSecret, scope) of the workspace's official account."""
    row = session.get(SignInSettings, (workspace_id, WORKSPACE_SCOPE))
    secret = cipher.decrypt(row.wechat_secret_enc) if row and row.wechat_secret_enc else None
    if row is None or not row.wechat_app_id or not secret:
        raise Forbidden("WeChat sign-in is not set up", code="sign_in_method_off")
    return row.wechat_app_id, secret, row.wechat_scope


# ── the person a phone or a WeChat id names ─────────────────────────────────────────────────


def _live(session: Session, workspace_id: str, contact_id: str | None) -> Contact | None:
    contact = by_id(session, workspace_id, contact_id) if contact_id else None
    if contact is not None and contact.merged_into_id is not None:
        contact = by_id(session, workspace_id, contact.merged_into_id) or contact
    return contact


def contact_for_phone(
    session: Session, cipher: PiiCipher, workspace_id: str, phone: str
) -> Contact:
    phone_hash = cipher.lookup_hash(phone)
    assert phone_hash is not None
    contact = _live(
        session, workspace_id, repository.alias_owner(session, workspace_id, "phone_hash", phone_hash)
    )  # fmt: skip
    if contact is None or contact.phone_hash != phone_hash:
        # The code goes to the contact's stored phone: only a contact whose phone this is
        # (the alias may have moved to a merge survivor with a number of its own).
        contact = repository.first_with_phone(session, workspace_id, phone_hash)
    if contact is None:
        contact = contacts.upsert(
            session, cipher, workspace_id,
            contacts.ContactInput(external_id=f"sms_{phone_hash[:32]}", phone=phone),
        )  # fmt: skip
    identity.attach_pii_aliases(session, workspace_id, contact)
    return contact


def contact_for_wechat(
    session: Session, cipher: PiiCipher, workspace_id: str, user: WeChatUser
) -> Contact:
    found = None
    if user.unionid:
        found = repository.alias_owner(session, workspace_id, "wx_unionid", user.unionid)
    found = found or repository.alias_owner(session, workspace_id, "wx_openid", user.openid)
    contact = _live(session, workspace_id, found)
    external_id = contact.external_id if contact else f"wx_{user.unionid or user.openid}"[:128]
    # Creates the person on first sight; fills a nickname or avatar they did not have yet.
    contact = contacts.upsert(
        session, cipher, workspace_id,
        contacts.ContactInput(external_id=external_id, nickname=user.nickname,
                              avatar_url=user.avatar_url),
    )  # fmt: skip
    for kind, value in (("wx_openid", user.openid), ("wx_unionid", user.unionid)):
        if not value:
            continue
        try:
            with session.begin_nested():
                identity.attach(session, workspace_id, contact.id, kind, value)
        except Conflict:
            # Held by another contact (the brand linked it elsewhere): the person is who the
            # stronger id said; the operator can merge the two.
            log.warning("participant sign-in: %s already belongs to another contact", kind)
    return contact


def remember_device(session: Session, workspace_id: str, contact: Contact, visitor_id: str) -> None:
    """The device cookie of the sign-in follows the person (as an identify does)."""
    identity.attach(session, workspace_id, contact.id, "visitor_id", visitor_id)


# ── one-time SMS codes ──────────────────────────────────────────────────────────────────────


def china_mobile(raw: str) -> str:
    try:
        phone = normalize_phone(raw or "")
    except Invalid:
        phone = ""
    if len(phone) != 11 or not phone.startswith("1") or phone[1] not in "3456789":
        raise Invalid("enter an 11-digit mobile number", code="phone_invalid",
                      details={"field": "phone"})  # fmt: skip
    return phone


def _code_hash(secret: bytes, code_id: str, code: str) -> str:
    key = hmac.new(secret, b"participant-sms-code", hashlib.sha256).digest()
    return hmac.new(key, f"{code_id}:{code}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class PendingCode:
    """A code written (not yet committed) and the message that carries it."""

    code_id: str
    contact_id: str
    channel_id: str
    content: dict[str, object]


def request_code(
    session: Session, cipher: PiiCipher, secret: bytes, workspace_id: str, campaign_id: str,
    phone_raw: str, ip: str, *, now: datetime | None = None,
) -> PendingCode:  # fmt: skip
    """Check the limits and write a new code for the phone; the caller commits, then sends
    it with :func:`deliver`."""
    now = now or utcnow()
    phone = china_mobile(phone_raw)
    if "sms" not in offer(session, workspace_id, campaign_id).methods:
        raise Forbidden("SMS sign-in is off for this campaign", code="sign_in_method_off")
    row = session.get(SignInSettings, (workspace_id, WORKSPACE_SCOPE))
    assert row is not None and row.sms_channel_id  # offered ⇒ configured
    phone_hash = cipher.lookup_hash(phone)
    ip_hash = hash_ip(ip or "-", secret)
    assert phone_hash is not None
    for since, limit, kw in (
        (now - timedelta(hours=1), PHONE_PER_HOUR, {"phone_hash": phone_hash}),
        (now - timedelta(days=1), PHONE_PER_DAY, {"phone_hash": phone_hash}),
        (now - timedelta(hours=1), IP_PER_HOUR, {"ip_hash": ip_hash}),
    ):
        if repository.codes_since(session, workspace_id, since=since, **kw) >= limit:
            raise RateLimited("too many codes asked for", code="sms_too_many", retry_after=3600)
    contact = contact_for_phone(session, cipher, workspace_id, phone)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    code_id = new_id("smc")
    slot = int(now.timestamp() // 60)
    if not repository.insert_code(
        session,
        {"id": code_id, "workspace_id": workspace_id, "phone_hash": phone_hash, "slot": slot,
         "code_hash": _code_hash(secret, code_id, code), "ip_hash": ip_hash,
         "contact_id": contact.id, "attempts": 0,
         "expires_at": now + timedelta(minutes=CODE_MINUTES), "created_at": now},
    ):  # fmt: skip
        raise RateLimited(
            "one code a minute", code="sms_wait", retry_after=60 - int(now.timestamp()) % 60
        )
    text = (
        (row.sms_text or DEFAULT_SMS_TEXT)
        .replace("{code}", code)
        .replace("{minutes}", str(CODE_MINUTES))
    )
    content: dict[str, object] = {"text": text}
    if row.sms_template_id:
        content |= {"template_id": row.sms_template_id,
                    "params": {"code": code, "minutes": str(CODE_MINUTES)}}  # fmt: skip
    return PendingCode(code_id, contact.id, row.sms_channel_id, content)


def deliver(session: Session, runtime: object, workspace_id: str, pending: PendingCode) -> bool:
    """Send a committed code through the channel (``channels.service.send``, which commits);
    True when the provider accepted it."""
    from liebian.channels.service import SendRequest, send

    outcome = send(
        session, runtime,  # type: ignore[arg-type]
        SendRequest(
            workspace_id=workspace_id, channel_id=pending.channel_id, contact_id=pending.contact_id,
            content=pending.content, idempotency_key=f"sign-in:{pending.code_id}",
            source="sign_in", category="transactional",
        ),
    )  # fmt: skip
    repository.mark_sent(session, pending.code_id, outcome.send_id, outcome.status)
    session.commit()
    if outcome.status != "sent":
        log.warning(
            "participant sign-in: code %s not sent (%s %s)", pending.code_id, outcome.status,
            outcome.reason,
        )  # fmt: skip
    return outcome.status == "sent"


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of a code check: the contact it signs in, or why not (and the tries left)."""

    contact: Contact | None
    problem: str | None = None
    tries_left: int = 0


def check_code(
    session: Session, cipher: PiiCipher, secret: bytes, workspace_id: str, phone_raw: str,
    code: str, *, now: datetime | None = None,
) -> Checked:  # fmt: skip
    """A wrong code is an answer, not an exception: its counted try must be committed."""
    now = now or utcnow()
    phone = china_mobile(phone_raw)
    code = (code or "").strip()
    if not (len(code) == CODE_DIGITS and code.isdigit() and code.isascii()):
        return Checked(None, "sms_code_format")
    phone_hash = cipher.lookup_hash(phone)
    assert phone_hash is not None
    row = repository.live_code(session, workspace_id, phone_hash, now)
    if row is None:
        return Checked(None, "sms_code_expired")
    if not repository.count_attempt(session, row.id, MAX_ATTEMPTS):
        return Checked(None, "sms_code_locked")
    if not hmac.compare_digest(row.code_hash, _code_hash(secret, row.id, code)):
        left = MAX_ATTEMPTS - row.attempts - 1
        return Checked(None, "sms_code_wrong" if left > 0 else "sms_code_locked", max(left, 0))
    if not repository.use_code(session, row.id, now):
        return Checked(None, "sms_code_expired")
    contact = _live(session, workspace_id, row.contact_id)
    if contact is None:
        raise NotFound("the contact of this code is gone", code="sms_code_expired")
    return Checked(contact)
