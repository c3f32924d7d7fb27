"""The WeCom connector's operations: connect a corp, receive callbacks, and the client calls
other domains use (contact ways, welcome messages, mass sends, corp tag mirror).

Functions that call WeCom take the ``Runtime`` and open their own short transactions: the
record of an effect (welcome code, mass-send key, monthly counts) is committed before WeCom
is called and marked after, so no database transaction waits on the network and a retry
finds what was done.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.connectors.wecom import callbacks, repository
from liebian.connectors.wecom.callbacks import Secrets
from liebian.connectors.wecom.client import TokenCache, WecomApiError, WecomClient
from liebian.connectors.wecom.models import (
    WecomConnection,
    WecomContactWay,
    WecomMassSend,
    WecomWelcome,
)
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.db import session_scope
from liebian.kit.errors import Conflict, Invalid, NotFound, Unavailable
from liebian.kit.ids import new_id

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime

# Authorization, in one place: reading the connector needs analyst, using it (contact ways,
# sends, tag sync) operator, connecting a corp and changing its secrets admin.
_ACTIONS = {"read": Role.analyst, "use": Role.operator, "admin": Role.admin}


def require(principal: Principal, action: str) -> None:
    principal.require(_ACTIONS[action])


# WeCom: the welcome_code of an add callback may be used within 20 seconds, once.
WELCOME_WINDOW_SECONDS = 20.0
# WeCom: within one natural month a customer receives at most 4 of a corp's mass messages
# (企业群发); WeCom silently drops the rest, so liebian refuses them with a reason instead.
MONTHLY_CAP = 4
CAP_TIME_ZONE = ZoneInfo("Asia/Shanghai")
# WeCom's "state" of a contact/join way: at most 30 characters.
STATE_RE = re.compile(r"^[A-Za-z0-9_\-.:]{1,30}$")
# errcodes of send_welcome_msg that mean the code cannot be used (any other non-zero errcode
# is reported as it is).
WELCOME_CODE_ERRORS = {41051: "welcome_code_used_or_expired", 41096: "welcome_code_invalid"}

# -- connection ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionInput:
    corp_id: str
    agent_secret: str | None
    token: str | None
    encoding_aes_key: str | None
    agent_id: str | None = None


def _check_token(token: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9]{3,32}", token):
        raise Invalid(
            "token must be 3–32 letters or digits (as set in WeCom's 接收事件服务器 page)",
            code="invalid_wecom_token", details={"field": "token"},
        )  # fmt: skip
    return token


def _check_aes_key(key: str) -> str:
    try:
        raw = base64.b64decode(key + "=", validate=True) if len(key) == 43 else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise Invalid(
            "encoding_aes_key must be WeCom's 43-character EncodingAESKey",
            code="invalid_wecom_aes_key", details={"field": "encoding_aes_key"},
        )  # fmt: skip
    return key


def connect(
    session: Session, principal: Principal, cipher: PiiCipher, data: ConnectionInput
) -> WecomConnection:
    """Create or change the workspace's connection. On change, omitted secrets are kept."""
    require(principal, "admin")
    conn = repository.connection_of(session, principal.workspace_id)
    if conn is None and not (data.agent_secret and data.token and data.encoding_aes_key):
        raise Invalid(
            "a new connection needs agent_secret, token and encoding_aes_key",
            code="missing_wecom_secrets",
            details={"fields": [f for f, v in (("agent_secret", data.agent_secret), ("token", data.token),
                                               ("encoding_aes_key", data.encoding_aes_key)) if not v]},
        )  # fmt: skip
    token = _check_token(data.token) if data.token else None
    aes_key = _check_aes_key(data.encoding_aes_key) if data.encoding_aes_key else None
    now = utcnow()
    if conn is None:
        assert data.agent_secret and token and aes_key
        conn = WecomConnection(
            id=new_id("wcc"), workspace_id=principal.workspace_id, corp_id=data.corp_id,
            agent_id=data.agent_id, secret_enc=cipher.encrypt(data.agent_secret),
            token_enc=cipher.encrypt(token), aes_key_enc=cipher.encrypt(aes_key),
            secret_hint=_hint(data.agent_secret), version=1, created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(conn)
        session.flush()
        return conn
    conn.corp_id = data.corp_id
    conn.agent_id = data.agent_id
    if data.agent_secret:
        conn.secret_enc = cipher.encrypt(data.agent_secret) or ""
        conn.secret_hint = _hint(data.agent_secret)
    if token:
        conn.token_enc = cipher.encrypt(token) or ""
    if aes_key:
        conn.aes_key_enc = cipher.encrypt(aes_key) or ""
    conn.version += 1
    conn.updated_at = now
    session.flush()
    return conn


def _hint(secret: str) -> str:
    return "…" + secret[-4:] if len(secret) > 8 else "…"


def get_connection(session: Session, principal: Principal) -> WecomConnection:
    require(principal, "read")
    conn = repository.connection_of(session, principal.workspace_id)
    if conn is None:
        raise NotFound(
            "this workspace has no WeCom connection; PUT /api/v1/connectors/wecom first",
            code="wecom_not_connected",
        )
    return conn


def disconnect(session: Session, principal: Principal) -> None:
    require(principal, "admin")
    conn = get_connection(session, principal)
    session.delete(conn)


def callback_path(conn: WecomConnection) -> str:
    return f"/api/v1/connectors/wecom/callback/{conn.id}"


def connection_out(conn: WecomConnection, base_url: str) -> dict[str, Any]:
    return {
        "id": conn.id, "corp_id": conn.corp_id, "agent_id": conn.agent_id,
        "secret_hint": conn.secret_hint, "callback_url": base_url.rstrip("/") + callback_path(conn),
        "last_callback_at": conn.last_callback_at, "created_at": conn.created_at,
        "updated_at": conn.updated_at,
    }  # fmt: skip


def secrets_of(conn: WecomConnection, cipher: PiiCipher) -> Secrets:
    return Secrets(
        corp_id=conn.corp_id,
        secret=cipher.decrypt(conn.secret_enc) or "",
        token=cipher.decrypt(conn.token_enc) or "",
        aes_key=cipher.decrypt(conn.aes_key_enc) or "",
    )


# -- the client ---------------------------------------------------------------------------


def token_cache(runtime: Runtime) -> TokenCache:
    cache: TokenCache = runtime.extras.setdefault("wecom_tokens", TokenCache())
    return cache


def http_client(runtime: Runtime) -> httpx.Client:
    """One pooled client per process (closed with the runtime's other resources)."""
    client: httpx.Client | None = runtime.extras.get("wecom_http")
    if client is None:
        client = httpx.Client(timeout=runtime.settings.wecom_timeout, trust_env=False)
        client = runtime.extras.setdefault("wecom_http", client)
    return client


def client_for(runtime: Runtime, workspace_id: str) -> WecomClient:
    with runtime.read_sessions() as session:
        conn = repository.connection_of(session, workspace_id)
        if conn is None:
            raise Conflict(
                "this workspace has no WeCom connection; PUT /api/v1/connectors/wecom first",
                code="wecom_not_connected",
            )
        secrets = secrets_of(conn, runtime.cipher)
        cache_key = f"{conn.id}:{conn.version}"
    return WecomClient(
        base_url=runtime.settings.wecom_api_base, corp_id=secrets.corp_id,
        secret=secrets.secret, cache_key=cache_key, tokens=token_cache(runtime),
        http=http_client(runtime),
    )  # fmt: skip


def check_credentials(runtime: Runtime, principal: Principal) -> dict[str, Any]:
    """Fetch an access token now: proves the corp id and secret are right."""
    require(principal, "admin")
    client = client_for(runtime, principal.workspace_id)
    client.access_token()
    return {"ok": True, "corp_id": client.corp_id}


# -- callbacks ----------------------------------------------------------------------------


def _secrets_for_callback(runtime: Runtime, connection_id: str) -> tuple[str, Secrets]:
    with runtime.read_sessions() as session:
        conn = repository.connection_by_id(session, connection_id)
        if conn is None:
            raise NotFound("no such WeCom connection", code="wecom_not_connected")
        return conn.workspace_id, secrets_of(conn, runtime.cipher)


def verify_callback_url(
    runtime: Runtime, connection_id: str, *, msg_signature: str, timestamp: str, nonce: str,
    echostr: str, now: float | None = None,
) -> str:  # fmt: skip
    _ws, secrets = _secrets_for_callback(runtime, connection_id)
    return callbacks.verify_url(
        secrets, msg_signature=msg_signature, timestamp=timestamp, nonce=nonce,
        echostr=echostr, now=time.time() if now is None else now,
        max_age=runtime.settings.wecom_callback_max_age,
    )  # fmt: skip


def receive_callback(
    runtime: Runtime, connection_id: str, body: bytes, *, msg_signature: str, timestamp: str,
    nonce: str, now: float | None = None,
) -> callbacks.Applied:  # fmt: skip
    """Verify, decrypt and apply one POSTed callback in one transaction."""
    workspace_id, secrets = _secrets_for_callback(runtime, connection_id)
    xml = callbacks.open_message(
        secrets, body=body, msg_signature=msg_signature, timestamp=timestamp, nonce=nonce,
        now=time.time() if now is None else now, max_age=runtime.settings.wecom_callback_max_age,
    )  # fmt: skip
    spool = runtime.spool
    with session_scope(runtime.sessions) as session:
        applied = callbacks.apply(
            session, workspace_id, xml,
            write_line=spool.append_line if spool is not None else None, cipher=runtime.cipher,
        )  # fmt: skip
        conn = session.get(WecomConnection, connection_id)
        if conn is not None and not applied.duplicate:
            conn.last_callback_at = utcnow()
    return applied


# -- contact ways (联系我 / 加入群聊) -------------------------------------------------------


def check_state(state: str) -> str:
    if not STATE_RE.fullmatch(state):
        raise Invalid(
            "state must be 1–30 letters, digits or _-.: (WeCom's limit); it names the channel",
            code="invalid_state", details={"field": "state"},
        )  # fmt: skip
    return state


def create_way(
    runtime: Runtime, principal: Principal, *, kind: str, state: str, targets: list[str],
    channel: str | None = None, remark: str = "", welcome_text: str | None = None,
) -> WecomContactWay:  # fmt: skip
    """A 联系我 (kind "contact", targets = staff user ids) or 加入群聊 (kind "join", targets =
    up to 5 customer group chat ids) way with its state. One way per (kind, state): asking
    again returns the existing one without calling WeCom."""
    require(principal, "use")
    check_state(state)
    if kind not in ("contact", "join"):
        raise Invalid("kind must be contact or join", details={"field": "kind"})
    if not targets or (kind == "join" and len(targets) > 5) or len(targets) > 100:
        raise Invalid(
            "targets: 1–100 staff user ids for a contact way, 1–5 chat ids for a join way",
            code="invalid_targets", details={"field": "targets"},
        )  # fmt: skip
    if welcome_text is not None and kind != "contact":
        raise Invalid(
            "welcome_text is for contact ways (WeCom sends group welcomes from its own templates)",
            code="invalid_welcome", details={"field": "welcome_text"},
        )  # fmt: skip
    ws = principal.workspace_id
    existing = _way(runtime, ws, kind, state)
    if existing is not None:
        if welcome_text is not None and welcome_text != existing.welcome_text:
            with session_scope(runtime.sessions) as session:
                row = session.get(WecomContactWay, existing.id)
                assert row is not None
                row.welcome_text = welcome_text
            existing = _way(runtime, ws, kind, state)
            assert existing is not None
        return existing
    client = client_for(runtime, ws)
    if kind == "contact":
        answer = client.add_contact_way(state=state, users=targets, remark=remark)
        qr = answer.get("qr_code")
    else:
        answer = client.add_join_way(state=state, chat_ids=targets, remark=remark)
        # add_join_way answers only the config_id; the QR code comes from get_join_way.
        qr = (client.get_join_way(str(answer["config_id"])).get("join_way") or {}).get("qr_code")
    with session_scope(runtime.sessions) as session:
        # A concurrent request may have made it first: then ours at WeCom stays unused and
        # everyone gets the recorded way.
        repository.insert_ignore(
            session, WecomContactWay.__table__,
            {"id": new_id("wcw"), "workspace_id": ws, "kind": kind, "state": state,
             "channel": channel, "config_id": str(answer.get("config_id") or ""),
             "qr_code": qr, "targets": targets, "welcome_text": welcome_text,
             "created_at": utcnow()},
            ["workspace_id", "kind", "state"],
        )  # fmt: skip
    way = _way(runtime, ws, kind, state)
    assert way is not None
    return way


def _way(runtime: Runtime, ws: str, kind: str, state: str) -> WecomContactWay | None:
    with runtime.read_sessions() as session:
        way = session.scalar(
            select(WecomContactWay).where(
                WecomContactWay.workspace_id == ws,
                WecomContactWay.kind == kind,
                WecomContactWay.state == state,
            )
        )
        if way is not None:
            session.expunge(way)
        return way


def list_ways(session: Session, principal: Principal) -> list[WecomContactWay]:
    require(principal, "read")
    return list(
        session.scalars(
            select(WecomContactWay)
            .where(WecomContactWay.workspace_id == principal.workspace_id)
            .order_by(WecomContactWay.id)
        )
    )


# -- welcome messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WelcomeOutcome:
    # sent | failed | expired (the 20 s window passed) | duplicate (this code was used by us)
    # | unknown (WeCom did not answer: maybe sent; a welcome code is not tried twice)
    status: str
    reason: str | None = None
    errcode: int | None = None
    errmsg: str | None = None


def send_welcome_msg(
    runtime: Runtime, workspace_id: str, welcome_code: str, text: str, *,
    now: datetime | None = None,
) -> WelcomeOutcome:  # fmt: skip
    """Send the welcome message of an add callback's ``welcome_code`` (once; WeCom accepts a
    code once and only within 20 seconds of the callback)."""
    text = text.strip()
    if not welcome_code or not text:
        raise Invalid("welcome_code and a non-empty text are needed", code="invalid_welcome")
    if len(text) > 4000:
        raise Invalid("text is at most 4000 characters (WeCom's limit)", code="invalid_welcome")
    now = now or utcnow()
    with session_scope(runtime.sessions) as session:
        follow = repository.follow_by_welcome_code(session, workspace_id, welcome_code)
        if follow is not None and (now - follow.added_at).total_seconds() > WELCOME_WINDOW_SECONDS:
            return WelcomeOutcome(
                "expired", "welcome_window_passed",
                errmsg=f"the welcome code is valid for {int(WELCOME_WINDOW_SECONDS)} s after the "
                "customer was added; send through another channel instead",
            )  # fmt: skip
        fresh = repository.insert_ignore(
            session, WecomWelcome.__table__,
            {"workspace_id": workspace_id, "welcome_code": welcome_code, "status": "sending",
             "created_at": now, "updated_at": now},
            ["workspace_id", "welcome_code"],
        )  # fmt: skip
        if not fresh:
            row = session.get(WecomWelcome, (workspace_id, welcome_code))
            assert row is not None
            return WelcomeOutcome(
                "duplicate", "welcome_code_already_used",
                errcode=row.errcode, errmsg=f"this welcome code was already used ({row.status})",
            )  # fmt: skip
    client = client_for(runtime, workspace_id)
    try:
        client.send_welcome_msg(welcome_code=welcome_code, text=text)
        outcome = WelcomeOutcome("sent")
    except WecomApiError as exc:
        outcome = WelcomeOutcome(
            "failed", WELCOME_CODE_ERRORS.get(exc.errcode, "wecom_error"), exc.errcode, exc.errmsg
        )
    except Unavailable as exc:
        # No answer: WeCom may have sent it, and the code is single-use, so no retry.
        outcome = WelcomeOutcome("unknown", "wecom_unavailable", errmsg=exc.message)
    with session_scope(runtime.sessions) as session:
        row = session.get(WecomWelcome, (workspace_id, welcome_code))
        if row is not None:
            row.status = outcome.status
            row.errcode = outcome.errcode
            row.errmsg = (outcome.errmsg or None) and outcome.errmsg[:500]
            row.updated_at = utcnow()
    return outcome


# -- mass sends (企业群发) with the monthly cap ----------------------------------------------


def month_of(moment: datetime) -> str:
    return moment.astimezone(CAP_TIME_ZONE).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class MassSendOutcome:
    id: str
    # created (staff must confirm in WeCom) | refused (everyone at the monthly cap) | failed |
    # unknown (WeCom did not answer: not retried, the staff member sees any task WeCom made)
    status: str
    msgid: str | None = None
    recipients: list[str] = field(default_factory=list)
    over_cap: list[str] = field(default_factory=list)
    fail_list: list[str] = field(default_factory=list)
    reason: str | None = None
    errcode: int | None = None
    errmsg: str | None = None


def _mass_outcome(row: WecomMassSend) -> MassSendOutcome:
    reason = "monthly_cap" if row.status == "refused" else None
    return MassSendOutcome(
        id=row.id, status=row.status, msgid=row.msgid, recipients=list(row.recipients),
        over_cap=list(row.over_cap), fail_list=list(row.fail_list), reason=reason,
        errcode=row.errcode, errmsg=row.errmsg,
    )  # fmt: skip


def add_msg_template(
    runtime: Runtime, workspace_id: str, *, idempotency_key: str, external_userids: list[str],
    text: str, sender: str | None = None, now: datetime | None = None,
) -> MassSendOutcome:  # fmt: skip
    """Create a mass-send task for staff to confirm. Customers who already received
    ``MONTHLY_CAP`` mass messages this natural month (Beijing time) are left out and listed in
    ``over_cap``; if that is everyone, nothing is sent (status refused, reason monthly_cap).
    The same ``idempotency_key`` returns the recorded outcome and never creates a second task."""
    text = text.strip()
    users = sorted({u.strip() for u in external_userids if u and u.strip()})
    if not idempotency_key or not users or not text:
        raise Invalid(
            "idempotency_key, at least one external_userid and a non-empty text are needed",
            code="invalid_mass_send",
        )
    if len(users) > 10000:
        raise Invalid("at most 10,000 customers per mass send", code="invalid_mass_send")
    month = month_of(now or utcnow())
    with session_scope(runtime.sessions) as session:
        row_id = new_id("wms")
        fresh = repository.insert_ignore(
            session, WecomMassSend.__table__,
            {"id": row_id, "workspace_id": workspace_id, "idempotency_key": idempotency_key,
             "sender": sender, "status": "sending", "month": month, "recipients": [],
             "over_cap": [], "fail_list": [], "content": {"text": text},
             "created_at": utcnow(), "updated_at": utcnow()},
            ["workspace_id", "idempotency_key"],
        )  # fmt: skip
        if not fresh:
            existing = session.scalar(
                select(WecomMassSend).where(
                    WecomMassSend.workspace_id == workspace_id,
                    WecomMassSend.idempotency_key == idempotency_key,
                )
            )
            assert existing is not None
            return _mass_outcome(existing)
        row = repository.reserve_recipients(
            session, row_id, workspace_id, users, month, MONTHLY_CAP, "customer"
        )
        reserved = list(row.recipients)
        if not reserved:
            session.flush()
            return _mass_outcome(row)
    client = client_for(runtime, workspace_id)
    status, msgid, fail_list = "created", None, []
    errcode: int | None = None
    errmsg: str | None = None
    try:
        answer = client.add_msg_template(external_userids=reserved, text=text, sender=sender)
        msgid = str(answer.get("msgid") or "") or None
        fail_list = [str(u) for u in answer.get("fail_list") or []]
    except WecomApiError as exc:
        status, errcode, errmsg = "failed", exc.errcode, exc.errmsg
        fail_list = list(reserved)
    except Exception as exc:  # no answer: WeCom may or may not have made the task
        status, errmsg = "unknown", f"WeCom did not answer: {type(exc).__name__}"
    with session_scope(runtime.sessions) as session:
        # Customers WeCom refused received nothing: their count goes back.
        repository.release_receipts(session, workspace_id, fail_list, month)
        done = session.get(WecomMassSend, row_id)
        assert done is not None
        done.status, done.msgid, done.fail_list = status, msgid, fail_list
        done.errcode, done.errmsg, done.updated_at = errcode, errmsg, utcnow()
        session.flush()
        return _mass_outcome(done)


def monthly_receipts(
    session: Session,
    principal: Principal,
    external_userids: list[str],
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What each customer received this month and what is left under WeCom's cap."""
    require(principal, "read")
    month = month_of(now or utcnow())
    counts = repository.receipts(session, principal.workspace_id, external_userids, month)
    return {
        "month": month, "cap": MONTHLY_CAP,
        "items": [
            {"external_userid": u, "received": counts.get(u, 0),
             "remaining": max(0, MONTHLY_CAP - counts.get(u, 0))}
            for u in external_userids
        ],
    }  # fmt: skip


def mass_send_by_key(runtime: Runtime, workspace_id: str, key: str) -> MassSendOutcome | None:
    """The recorded mass send of an idempotency key (for a caller's lookup after a crash)."""
    with runtime.read_sessions() as session:
        row = session.scalar(
            select(WecomMassSend).where(
                WecomMassSend.workspace_id == workspace_id, WecomMassSend.idempotency_key == key
            )
        )
        return _mass_outcome(row) if row is not None else None


def external_userid_of(runtime: Runtime, workspace_id: str, contact_id: str) -> str | None:
    """The contact's WeCom external_userid: the one an active follow names, else its alias."""
    from liebian.contacts.models import ContactAlias

    with runtime.read_sessions() as session:
        follows = repository.active_follows_of_contact(session, workspace_id, contact_id)
        if follows:
            return follows[0].external_userid
        return session.scalar(
            select(ContactAlias.value).where(
                ContactAlias.workspace_id == workspace_id,
                ContactAlias.contact_id == contact_id,
                ContactAlias.kind == callbacks.ALIAS_KIND,
            )
        )


_CALLBACK_FIELDS = ("UserID", "ExternalUserID", "ChatId", "State", "UpdateDetail", "TagType")


def recent_callbacks(
    session: Session, principal: Principal, limit: int = 50
) -> list[dict[str, Any]]:
    """The callbacks WeCom delivered lately (newest first), for the console: event, change
    and who — never the welcome code or anything else of the message."""
    from liebian.connectors.wecom.models import WecomCallback

    require(principal, "read")
    rows = session.scalars(
        select(WecomCallback)
        .where(WecomCallback.workspace_id == principal.workspace_id)
        .order_by(WecomCallback.received_at.desc(), WecomCallback.id.desc())
        .limit(max(1, min(limit, 200)))
    )
    return [
        {"id": r.id, "event": r.event, "change_type": r.change_type,
         "summary": {k: str(r.data[k])[:64] for k in _CALLBACK_FIELDS if r.data.get(k)},
         "received_at": r.received_at}
        for r in rows
    ]  # fmt: skip
