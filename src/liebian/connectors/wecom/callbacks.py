"""WeCom callbacks (接收事件服务器): verify, decrypt, parse, apply once, announce.

WeCom calls the URL shown on the connection:
- ``GET ?msg_signature&timestamp&nonce&echostr``: URL verification. The signature is checked
  and the decrypted echostr answered as plain text.
- ``POST ?msg_signature&timestamp&nonce`` with ``<xml><ToUserName/><Encrypt/>…</xml>``: an
  event. Signature (SHA1 of sorted token, timestamp, nonce, Encrypt) and AES-CBC decryption
  (EncodingAESKey, receive id = corp id) are wechatpy's ``enterprise.crypto.WeChatCrypto``.
  A timestamp further than ``wecom_callback_max_age`` from now is a replay: refused.

A message is applied once: ``wecom_callbacks`` holds the SHA-256 of its decrypted XML under a
unique key (WeCom re-sends an unanswered callback with a new timestamp and nonce but the same
message), so a retry or a replay changes nothing and announces nothing. What is applied:

====================================  =====================================================
change_external_contact               add_external_contact / add_half_external_contact →
                                      follow row, contact (alias wecom_external_userid),
                                      bus ``wecom.contact_added``, event wecom_contact_added;
                                      del_external_contact (staff removed the customer) and
                                      del_follow_user (the customer removed the staff) →
                                      ``wecom.contact_removed`` (by = staff | customer),
                                      event wecom_contact_removed;
                                      edit_external_contact (a staff member edited the
                                      customer: remark, tags) → ``wecom.customer_edited`` →
                                      the customer's tags read back (tags.py)
change_external_chat                  create / update (add_member, del_member, …) / dismiss
                                      → ``wecom.group_changed``, event wecom_group_changed
change_external_tag                   ``wecom.corp_tags_changed`` → the corp tag mirror
                                      re-reads WeCom's list (welcome.py)
anything else                         recorded (dedupe), not announced
====================================  =====================================================
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import xmltodict
from sqlalchemy.orm import Session
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

from liebian.connectors.wecom import repository
from liebian.connectors.wecom.models import WecomCallback, WecomContactWay, WecomFollow
from liebian.events.store.base import EventRow
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.db import after_commit
from liebian.kit.errors import DomainError, Invalid
from liebian.kit.ids import new_id

TOPIC_CONTACT_ADDED = "wecom.contact_added"
TOPIC_CONTACT_REMOVED = "wecom.contact_removed"
TOPIC_GROUP_CHANGED = "wecom.group_changed"
TOPIC_CORP_TAGS_CHANGED = "wecom.corp_tags_changed"
TOPIC_CUSTOMER_EDITED = "wecom.customer_edited"
EVENTS = ("wecom_contact_added", "wecom_contact_removed", "wecom_group_changed")
ALIAS_KIND = "wecom_external_userid"
# A contact first met through WeCom gets this external_id (the brand's own id merges later).
EXTERNAL_ID_PREFIX = "wecom:"


class CallbackRefused(DomainError):
    """The callback is not WeCom's (bad signature, wrong corp) or is a replay: nothing is
    recorded."""

    status = 403
    code = "invalid_callback"


@dataclass(frozen=True, slots=True)
class Secrets:
    corp_id: str
    secret: str
    token: str
    aes_key: str


def _crypto(secrets: Secrets) -> WeChatCrypto:
    return WeChatCrypto(secrets.token, secrets.aes_key, secrets.corp_id)


def check_timestamp(timestamp: str, now: float, max_age: float) -> None:
    try:
        sent = int(timestamp)
    except ValueError:
        raise CallbackRefused("timestamp is not a number", code="invalid_timestamp") from None
    if max_age > 0 and abs(now - sent) > max_age:
        raise CallbackRefused(
            f"timestamp is more than {int(max_age)} s away from now: refused as a replay",
            code="stale_callback",
        )


def verify_url(
    secrets: Secrets, *, msg_signature: str, timestamp: str, nonce: str, echostr: str,
    now: float, max_age: float,
) -> str:  # fmt: skip
    """The plaintext echostr WeCom expects back when it checks the callback URL."""
    check_timestamp(timestamp, now, max_age)
    try:
        plain = _crypto(secrets).check_signature(msg_signature, timestamp, nonce, echostr)
    except InvalidSignatureException:
        raise CallbackRefused("msg_signature does not match", code="invalid_signature") from None
    except Exception:
        # Not our corp id inside, or not decryptable with this EncodingAESKey.
        raise CallbackRefused("echostr cannot be decrypted with this connection's key") from None
    return plain if isinstance(plain, str) else plain.decode()


def open_message(
    secrets: Secrets, *, body: bytes, msg_signature: str, timestamp: str, nonce: str,
    now: float, max_age: float,
) -> str:  # fmt: skip
    """The decrypted XML of a POSTed callback."""
    check_timestamp(timestamp, now, max_age)
    try:
        envelope = xmltodict.parse(body.decode("utf-8"))["xml"]
        if not isinstance(envelope, dict) or not envelope.get("Encrypt"):
            raise ValueError("no Encrypt element")
    except Exception:
        raise Invalid(
            "the body must be WeCom's XML envelope with an Encrypt element", code="invalid_xml"
        ) from None
    try:
        plain = _crypto(secrets).decrypt_message(envelope, msg_signature, timestamp, nonce)
    except InvalidSignatureException:
        raise CallbackRefused("msg_signature does not match", code="invalid_signature") from None
    except Exception:
        raise CallbackRefused(
            "the message cannot be decrypted with this connection's key"
        ) from None
    return plain if isinstance(plain, str) else plain.decode()


def parse(xml: str) -> dict[str, Any]:
    try:
        message = xmltodict.parse(xml)["xml"]
    except Exception:
        raise CallbackRefused("the decrypted message is not XML", code="invalid_xml") from None
    if not isinstance(message, dict):
        raise CallbackRefused("the decrypted message is empty", code="invalid_xml")
    return message


def _items(value: Any) -> list[str]:
    """``<MemChangeList><Item>a</Item><Item>b</Item></MemChangeList>`` as a list."""
    if not value:
        return []
    if isinstance(value, dict):
        value = value.get("Item")
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v]
    return [str(value)]


def _ts(message: dict[str, Any]) -> datetime:
    try:
        return datetime.fromtimestamp(int(message.get("CreateTime") or 0), UTC)
    except (TypeError, ValueError, OverflowError):
        return datetime.now(UTC)


LineWriter = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Applied:
    duplicate: bool
    event: str
    change_type: str


def apply(
    session: Session,
    workspace_id: str,
    xml: str,
    *,
    write_line: LineWriter | None,
    cipher: Any = None,
) -> Applied:
    """Record the message once and apply it (the caller commits)."""
    message = parse(xml)
    event = str(message.get("Event") or message.get("MsgType") or "")
    change = str(message.get("ChangeType") or "")
    key = hashlib.sha256(xml.encode()).hexdigest()
    fresh = repository.insert_ignore(
        session,
        WecomCallback.__table__,
        {"id": new_id("wcb"), "workspace_id": workspace_id, "dedupe_key": key,
         "event": event[:64], "change_type": change[:64],
         "data": {k: v for k, v in message.items() if k != "Encrypt"}, "received_at": utcnow()},
        ["workspace_id", "dedupe_key"],
    )  # fmt: skip
    if not fresh:
        return Applied(True, event, change)
    ts = _ts(message)
    if event == "change_external_contact":
        _contact_change(session, workspace_id, message, change, key, ts, write_line, cipher)
    elif event == "change_external_chat":
        _chat_change(session, workspace_id, message, change, key, ts, write_line)
    elif event == "change_external_tag":
        # A corp tag or group was created, renamed or deleted in WeCom: re-read the list.
        publish_after_commit(session, TOPIC_CORP_TAGS_CHANGED, {
            "workspace_id": workspace_id, "change": change,
            "tag_type": str(message.get("TagType") or "") or None,
        })  # fmt: skip
    return Applied(False, event, change)


def _contact_change(
    session: Session, workspace_id: str, message: dict[str, Any], change: str, key: str,
    ts: datetime, write_line: LineWriter | None, cipher: Any,
) -> None:  # fmt: skip
    external = str(message.get("ExternalUserID") or "")
    staff = str(message.get("UserID") or "")
    if not external or not staff:
        return
    if change in ("add_external_contact", "add_half_external_contact"):
        state = str(message.get("State") or "") or None
        welcome_code = str(message.get("WelcomeCode") or "") or None
        contact_id, user_id = _contact_for(session, cipher, workspace_id, external)
        follow = repository.follow(session, workspace_id, external, staff)
        if follow is None:
            follow = WecomFollow(workspace_id=workspace_id, external_userid=external,
                                 staff_userid=staff)  # fmt: skip
            session.add(follow)
        follow.contact_id = contact_id
        follow.state = state
        follow.welcome_code = welcome_code
        follow.status = "active"
        follow.added_at = utcnow()
        follow.removed_at = None
        channel = _channel_of(session, workspace_id, "contact", state)
        payload = {
            "workspace_id": workspace_id, "external_userid": external, "staff_userid": staff,
            "state": state, "welcome_code": welcome_code, "contact_id": contact_id,
            "channel": channel, "half": change == "add_half_external_contact",
        }  # fmt: skip
        publish_after_commit(session, TOPIC_CONTACT_ADDED, payload)
        _event(session, write_line, workspace_id, "wecom_contact_added", key, ts,
               user_id=user_id, channel=channel or state,
               properties={"external_userid": external, "staff_userid": staff, "state": state})  # fmt: skip
    elif change == "edit_external_contact":
        # A staff member edited the customer inside WeCom (remark, description, tags): the
        # callback does not say what, so the customer's tags are read back (tags.py).
        publish_after_commit(session, TOPIC_CUSTOMER_EDITED, {
            "workspace_id": workspace_id, "external_userid": external, "staff_userid": staff,
        })  # fmt: skip
    elif change in ("del_external_contact", "del_follow_user"):
        by = "staff" if change == "del_external_contact" else "customer"
        follow = repository.follow(session, workspace_id, external, staff)
        if follow is not None:
            follow.status = "removed_by_staff" if by == "staff" else "removed_by_customer"
            follow.removed_at = utcnow()
        contact_id, user_id = _contact_for(session, cipher, workspace_id, external)
        publish_after_commit(session, TOPIC_CONTACT_REMOVED, {
            "workspace_id": workspace_id, "external_userid": external, "staff_userid": staff,
            "contact_id": contact_id, "by": by,
        })  # fmt: skip
        _event(session, write_line, workspace_id, "wecom_contact_removed", key, ts,
               user_id=user_id, properties={"external_userid": external,
                                            "staff_userid": staff, "by": by})  # fmt: skip


def _chat_change(
    session: Session, workspace_id: str, message: dict[str, Any], change: str, key: str,
    ts: datetime, write_line: LineWriter | None,
) -> None:  # fmt: skip
    chat_id = str(message.get("ChatId") or "")
    if not chat_id or change not in ("create", "update", "dismiss"):
        return
    detail = str(message.get("UpdateDetail") or "") or None
    members = _items(message.get("MemChangeList"))
    joins = members if detail == "add_member" else []
    leaves = members if detail == "del_member" else []
    payload = {
        "workspace_id": workspace_id, "chat_id": chat_id, "change": change,
        "update_detail": detail, "joins": joins, "leaves": leaves,
        "join_scene": _int(message.get("JoinScene")), "quit_scene": _int(message.get("QuitScene")),
        "member_change_count": _int(message.get("MemChangeCnt")),
    }  # fmt: skip
    publish_after_commit(session, TOPIC_GROUP_CHANGED, payload)
    _event(session, write_line, workspace_id, "wecom_group_changed", key, ts,
           properties={"chat_id": chat_id, "change": change, "update_detail": detail,
                       "joins": joins, "leaves": leaves})  # fmt: skip


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _channel_of(session: Session, workspace_id: str, kind: str, state: str | None) -> str | None:
    if not state:
        return None
    from sqlalchemy import select

    return session.scalar(
        select(WecomContactWay.channel).where(
            WecomContactWay.workspace_id == workspace_id,
            WecomContactWay.kind == kind,
            WecomContactWay.state == state,
        )
    )


def _contact_for(
    session: Session, cipher: Any, workspace_id: str, external_userid: str
) -> tuple[str, str]:
    """(contact id, its external_id) of the customer: found by the WeCom alias, or created
    as ``wecom:<external_userid>`` with that alias."""
    from sqlalchemy import select

    from liebian.contacts import identity
    from liebian.contacts import service as contacts
    from liebian.contacts.models import Contact, ContactAlias

    row = session.execute(
        select(Contact.id, Contact.external_id)
        .join(ContactAlias, ContactAlias.contact_id == Contact.id)
        .where(
            ContactAlias.workspace_id == workspace_id,
            ContactAlias.kind == ALIAS_KIND,
            ContactAlias.value == external_userid[:128],
        )
    ).first()
    if row is not None:
        return str(row[0]), str(row[1])
    external_id = EXTERNAL_ID_PREFIX + external_userid
    ids = contacts.ensure_ids(session, workspace_id, {external_id})
    contact_id = ids[external_id]
    identity.attach(session, workspace_id, contact_id, ALIAS_KIND, external_userid)
    return contact_id, external_id


def _event(
    session: Session,
    write_line: LineWriter | None,
    workspace_id: str,
    event: str,
    key: str,
    ts: datetime,
    *,
    user_id: str | None = None,
    channel: str | None = None,
    properties: dict[str, Any] | None = None,
) -> None:
    """One event line, appended to the spool after the commit (a rolled-back callback writes
    none); its id comes from the message, so the store keeps it once."""
    if write_line is None:
        return
    row = EventRow(
        workspace_id=workspace_id, event_id=f"wecom:{key[:40]}", event=event, ts=ts,
        received_at=datetime.now(UTC), user_id=user_id, channel=channel,
        properties={k: v for k, v in (properties or {}).items() if v not in (None, [], "")},
    )  # fmt: skip
    data = orjson.dumps(row.to_record(), option=orjson.OPT_APPEND_NEWLINE)
    writer = write_line
    after_commit(session, lambda: writer(data))
