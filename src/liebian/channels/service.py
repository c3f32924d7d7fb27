"""``send()``: one message per idempotency key, exactly once, behind the guards.

    from liebian.channels.service import send, SendRequest, SendOutcome
    outcome = send(session, runtime, SendRequest(workspace_id=…, channel_id="chn_…",
                   contact_id="ctc_…" | None, content={…}, idempotency_key="run:step",
                   source="journey", category="marketing"))

How it stays exactly once (decision 0025):

1. The record ``channel_sends`` (unique (workspace_id, idempotency_key)) is inserted as
   ``sending`` with a claim (``claimed_until``) and **committed** before the adapter is called
   — ``send()`` commits the session it is given. A concurrent caller with the same key loses
   the insert (the unique key), reads the record and is told ``deferred`` / ``in_flight``
   until the claim ends, or gets the settled outcome.
2. The adapter's answer is written with a conditional UPDATE (status still ``sending`` and the
   same attempt), committed, and the event (message_sent / message_failed) spooled after it.
3. A record still ``sending`` after its claim ended belongs to a dead process. The next
   ``send()`` with that key, or the recovery job (:func:`recover`), takes it over with a
   conditional UPDATE (one winner) and asks ``adapter.lookup``: delivered → marked sent
   without sending; not delivered, or the channel cannot tell → sent again *with the same
   idempotency key*, which webhook and SMS receivers dedupe (``Idempotency-Key`` /
   ``out_id``) and SMTP carries as a stable Message-ID.

Guards (guards.py) are decided before the insert and recorded with it: a suppressed send is
settled for its key; a deferred one (quiet hours) is re-judged by the next call with the key
after ``deferred_until`` and by the recovery job, which sends it when the window opens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from liebian.channels import events
from liebian.channels.base import (
    AdapterContext,
    AdapterKind,
    DeliveryResult,
    OutboundMessage,
    SendOutcome,
    SendRequest,
    adapter_kind,
)
from liebian.channels.guards import DEFAULT_QUIET, Verdict, judge, month_bounds, quiet_until
from liebian.channels.models import Channel, ChannelGuardSettings, ChannelOptOut, ChannelSend
from liebian.kit.clock import as_utc, utcnow
from liebian.kit.errors import Conflict, DomainError, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.kit.netguard import PinnedTransport, parse_networks

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime
    from liebian.contacts.models import Contact

__all__ = ["SendOutcome", "SendRequest", "recover", "send", "send_many"]

log = logging.getLogger("liebian.channels")

MAX_KEY = 200
MAX_ATTEMPTS = 5
# How long a claim lasts: longer than any adapter call can take (HTTP/SMTP timeout 10 s).
LEASE_SECONDS = 60.0
# The recovery job retries a retryable failure after 30 s, 60 s, 120 s, 240 s.
RETRY_BACKOFF = 30.0
SETTLED = frozenset({"sent", "suppressed", "pending_staff"})
CAP_COUNTED = ("sending", "sent", "pending_staff")


# -- helpers the API and other domains use ------------------------------------------------------


_HTTP_KEY = "channels.http"
_http_lock = threading.Lock()


def adapter_context(runtime: Runtime, http: httpx.Client | None = None) -> AdapterContext:
    """The SSRF policy and the process's pooled HTTP client for adapters (PinnedTransport:
    each request resolves its host once, refuses private addresses unless allowed, and
    connects to the address it checked)."""
    settings = runtime.settings
    networks = parse_networks(settings.allowed_private_networks)
    allow_private = settings.allow_private_webhooks
    if http is None:
        with _http_lock:
            http = runtime.extras.get(_HTTP_KEY)
            if http is None:
                http = httpx.Client(
                    timeout=settings.webhook_timeout,
                    follow_redirects=False,
                    transport=PinnedTransport(allowed=networks, allow_all=allow_private),
                )
                runtime.extras[_HTTP_KEY] = http
    # The runtime, for adapters that go through a connector (wecom_customer).
    return AdapterContext(
        http, allow_private, networks, settings.webhook_timeout, extras={"runtime": runtime}
    )


def workspace_timezone(session: Session, workspace_id: str) -> str:
    from liebian.workspaces.models import Workspace

    tz = session.scalar(select(Workspace.timezone).where(Workspace.id == workspace_id))
    return tz or "Asia/Shanghai"


def _zone_and_quiet(session: Session, workspace_id: str) -> tuple[str, bool, str, str]:
    """The workspace's time zone and quiet hours in one query."""
    from liebian.workspaces.models import Workspace

    row = session.execute(
        select(
            Workspace.timezone,
            ChannelGuardSettings.quiet_enabled,
            ChannelGuardSettings.quiet_start,
            ChannelGuardSettings.quiet_end,
        )
        .outerjoin(ChannelGuardSettings, ChannelGuardSettings.workspace_id == Workspace.id)
        .where(Workspace.id == workspace_id)
    ).first()
    if row is None or row.quiet_enabled is None:
        return (row.timezone if row else None) or "Asia/Shanghai", True, *DEFAULT_QUIET
    return row.timezone or "Asia/Shanghai", row.quiet_enabled, row.quiet_start, row.quiet_end


def quiet_hours(session: Session, workspace_id: str) -> tuple[bool, str, str]:
    row = session.get(ChannelGuardSettings, workspace_id)
    if row is None:
        return True, *DEFAULT_QUIET
    return row.quiet_enabled, row.quiet_start, row.quiet_end


def unsubscribe_url(runtime: Runtime, workspace_id: str, contact_id: str, channel_id: str) -> str:
    from liebian.channels.unsubscribe import make_token

    token = make_token(runtime.secret, workspace_id, contact_id, channel_id)
    return f"{runtime.settings.base_url.rstrip('/')}/h5/unsubscribe/{token}"


def outcome_of(record: ChannelSend, *, replayed: bool = False) -> SendOutcome:
    return SendOutcome(
        send_id=record.id,
        status=record.status,  # type: ignore[arg-type]
        reason=record.reason,
        deferred_until=as_utc(record.deferred_until) if record.deferred_until else None,
        provider_message_id=record.provider_message_id,
        retryable=record.retryable,
        error=record.error,
        task_id=record.task_id,
        replayed=replayed,
    )


# -- send -------------------------------------------------------------------------------------


def send(
    session: Session,
    runtime: Runtime,
    request: SendRequest,
    *,
    now: datetime | None = None,
    http: httpx.Client | None = None,
) -> SendOutcome:
    """Send ``request`` once for its idempotency key. Commits ``session`` (before the adapter
    call and after it). Bad input raises kit.errors (nothing written)."""
    now = now or utcnow()
    key = _checked_key(request)
    channel = _channel(session, request.workspace_id, request.channel_id)
    kind = adapter_kind(channel.kind)
    content = kind.check_content(request.content)
    contact = _contact(session, request.workspace_id, request.contact_id, kind)

    record = _by_key(session, request.workspace_id, key)
    if record is not None:
        if record.channel_id != channel.id or record.contact_id != (
            contact.id if contact else None
        ):
            raise Conflict(
                "this idempotency_key was already used for another channel or contact; "
                "use a new key for a different message",
                code="idempotency_key_reused", details={"send_id": record.id},
            )  # fmt: skip
        return _resume(session, runtime, channel, kind, record, contact, now, http)

    verdict = _judge(session, runtime, channel, kind, contact, request.category, now)
    record = _new_record(request, channel, kind, contact, key, content, verdict, now)
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        # Another caller inserted this key first: its record decides.
        existing = _by_key(session, request.workspace_id, key)
        if existing is None:
            raise
        return _resume(session, runtime, channel, kind, existing, contact, now, http)
    external_id = contact.external_id if contact else None
    if verdict is not None:
        event = "message_suppressed" if verdict.status == "suppressed" else "message_deferred"
        events.emit(session, runtime.spool, event, record, channel, external_id,
                    deferred_until=_iso(verdict.deferred_until))  # fmt: skip
        session.commit()
        return outcome_of(record)
    if kind.addressing == "staff":
        _to_staff(session, runtime, channel, record, contact)
        session.commit()
        return outcome_of(record)
    session.commit()  # durable before the adapter is called
    return _deliver(session, runtime, channel, kind, record, contact, now, http, recovering=False)


def _checked_key(request: SendRequest) -> str:
    """The request's idempotency key, after the checks every send makes (Invalid: nothing
    written)."""
    key = (request.idempotency_key or "").strip()
    if not key or len(key) > MAX_KEY:
        raise Invalid(f"idempotency_key is required (1 to {MAX_KEY} characters)",
                      code="invalid_idempotency_key", details={"field": "idempotency_key"})  # fmt: skip
    if request.category not in ("marketing", "transactional"):
        raise Invalid("category is marketing or transactional", details={"field": "category"})
    return key


def _new_record(
    request: SendRequest,
    channel: Channel,
    kind: AdapterKind,
    contact: Contact | None,
    key: str,
    content: Any,
    verdict: Verdict | None,
    now: datetime,
) -> ChannelSend:
    """The send's record for a key never seen: held by the guards' verdict, or claimed for the
    first attempt (staff tasks are never claimed: a person sends them)."""
    record = ChannelSend(
        id=new_id("snd"), workspace_id=request.workspace_id, channel_id=channel.id,
        contact_id=contact.id if contact else None, idempotency_key=key, source=request.source[:32],
        category=request.category, content=content, status="sending", attempts=0,
        created_at=now, updated_at=now,
    )  # fmt: skip
    if verdict is not None:
        record.status, record.reason = verdict.status, verdict.reason
        record.deferred_until = verdict.deferred_until
    elif kind.addressing != "staff":
        record.attempts, record.claimed_until = 1, now + timedelta(seconds=LEASE_SECONDS)
    return record


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _channel(session: Session, workspace_id: str, channel_id: str) -> Channel:
    channel = session.get(Channel, channel_id)
    if channel is None or channel.workspace_id != workspace_id:
        raise NotFound(f"no channel {channel_id!r} in this workspace", code="channel_not_found",
                       details={"field": "channel_id"})  # fmt: skip
    return channel


def _contact(
    session: Session, workspace_id: str, contact_id: str | None, kind: AdapterKind
) -> Contact | None:
    if contact_id is None:
        if kind.addressing in ("email", "phone"):
            raise Invalid(f"contact_id is required: a {kind.kind} channel writes to a person",
                          details={"field": "contact_id"})  # fmt: skip
        return None
    from liebian.contacts.service import find

    return find(session, workspace_id, contact_id, "contact_id")


def _by_key(session: Session, workspace_id: str, key: str) -> ChannelSend | None:
    return session.scalar(
        select(ChannelSend)
        .where(ChannelSend.workspace_id == workspace_id, ChannelSend.idempotency_key == key)
        .execution_options(populate_existing=True)
    )


def _address(runtime: Runtime, kind: AdapterKind, contact: Contact | None) -> str | None:
    if contact is None:
        return None
    if kind.addressing == "email":
        return runtime.cipher.decrypt(contact.email_enc)
    if kind.addressing == "phone":
        return runtime.cipher.decrypt(contact.phone_enc)
    return None


def _judge(
    session: Session,
    runtime: Runtime,
    channel: Channel,
    kind: AdapterKind,
    contact: Contact | None,
    category: str,
    now: datetime,
    facts: dict[Any, Any] | None = None,
) -> Verdict | None:
    """The first guard that applies (guards.py). ``facts``: what a batch read once for all
    its messages — ``("zq", workspace)`` → zone and quiet hours, ``"opted_out"`` → the set of
    (workspace, contact, channel or "*") opt-outs of the batch's contacts."""
    if not channel.active:
        return Verdict("suppressed", "channel_disabled")
    marketing = category == "marketing"
    monthly_cap = (
        channel.monthly_cap if channel.monthly_cap is not None else kind.default_monthly_cap
    )
    # Only what a rule needs is read: a transactional send without a monthly cap reads nothing.
    tz, quiet = "Asia/Shanghai", None
    if marketing or monthly_cap is not None:
        zq = facts.get(("zq", channel.workspace_id)) if facts is not None else None
        if zq is None:
            zq = _zone_and_quiet(session, channel.workspace_id)
            if facts is not None:
                facts[("zq", channel.workspace_id)] = zq
        tz, enabled, start, end = zq
        quiet = quiet_until(now, tz, start, end) if enabled and marketing else None
    has_address = kind.addressing not in ("email", "phone") or bool(
        contact is not None
        and (contact.email_enc if kind.addressing == "email" else contact.phone_enc)
    )
    opted_out, window, month_sends, month_end = False, [], 0, None
    if contact is not None and marketing and facts is not None and "opted_out" in facts:
        known = facts["opted_out"]
        opted_out = (channel.workspace_id, contact.id, channel.id) in known or (
            channel.workspace_id, contact.id, "*") in known  # fmt: skip
    elif contact is not None and marketing:
        opted_out = (
            session.scalar(
                select(func.count())
                .select_from(ChannelOptOut)
                .where(
                    ChannelOptOut.workspace_id == channel.workspace_id,
                    ChannelOptOut.contact_id == contact.id,
                    ChannelOptOut.channel_id.in_((channel.id, "*")),
                )
            )
            or 0
        ) > 0
    if contact is not None:
        recent = select(ChannelSend.created_at).where(
            ChannelSend.workspace_id == channel.workspace_id,
            ChannelSend.contact_id == contact.id,
            ChannelSend.channel_id == channel.id,
            ChannelSend.status.in_(CAP_COUNTED),
        )
        if channel.cap_count is not None and marketing:
            since = now - timedelta(hours=channel.cap_hours)
            window = [
                as_utc(t)
                for t in session.scalars(
                    recent.where(
                        ChannelSend.category == "marketing", ChannelSend.created_at >= since
                    )
                )
            ]
        if monthly_cap is not None:
            month_start, month_end = month_bounds(now, tz)
            month_sends = (
                session.scalar(
                    select(func.count()).select_from(
                        recent.where(ChannelSend.created_at >= month_start).subquery()
                    )
                )
                or 0
            )
    return judge(
        category=category, now=now, opted_out=opted_out, has_address=has_address,
        cap_count=channel.cap_count, cap_window_sends=window, cap_hours=channel.cap_hours,
        monthly_cap=monthly_cap, month_sends=month_sends, month_end=month_end, quiet=quiet,
    )  # fmt: skip


def _to_staff(
    session: Session,
    runtime: Runtime,
    channel: Channel,
    record: ChannelSend,
    contact: Contact | None,
) -> None:
    from liebian.channels.tasks import create_task

    who = f"（{contact.external_id}）" if contact else ""
    task = create_task(
        session, record.workspace_id,
        kind="send_message", title=record.content.get("title") or f"请通过{channel.name}发送消息{who}",
        body=str(record.content.get("text") or ""), contact_id=record.contact_id,
        assignee=channel.config.get("assignee"), source=record.source,
        dedupe_key=f"send:{record.id}", send_id=record.id,
    )  # fmt: skip
    record.status, record.task_id = "pending_staff", task.id
    session.flush()
    events.emit(session, runtime.spool, "message_pending_staff", record, channel,
                contact.external_id if contact else None, task_id=task.id)  # fmt: skip


def _claim(session: Session, record: ChannelSend, now: datetime) -> bool:
    """Take ``record`` for one attempt (one winner among racing callers); commits."""
    result = session.execute(
        update(ChannelSend)
        .where(
            ChannelSend.id == record.id,
            ChannelSend.status == record.status,
            ChannelSend.attempts == record.attempts,
        )
        .values(
            status="sending",
            attempts=record.attempts + 1,
            claimed_until=now + timedelta(seconds=LEASE_SECONDS),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    won = result.rowcount == 1  # type: ignore[attr-defined]
    session.commit()
    if won:
        _known(record, status="sending", attempts=record.attempts + 1,
               claimed_until=now + timedelta(seconds=LEASE_SECONDS), updated_at=now)  # fmt: skip
    else:
        session.refresh(record)
    return won


def _known(record: ChannelSend, **values: Any) -> None:
    """Put what an UPDATE just wrote into the loaded record without marking it changed (no
    second UPDATE, no re-read)."""
    for key, value in values.items():
        set_committed_value(record, key, value)


def _resume(
    session: Session,
    runtime: Runtime,
    channel: Channel,
    kind: AdapterKind,
    record: ChannelSend,
    contact: Contact | None,
    now: datetime,
    http: httpx.Client | None,
) -> SendOutcome:
    """The key was seen before: replay its outcome, or carry it on (deferred that is due, a
    retryable failure, a claim left by a dead process)."""
    status = record.status
    recovering = False
    if status in SETTLED:
        return outcome_of(record, replayed=True)
    if status == "failed":
        if not record.retryable or record.attempts >= MAX_ATTEMPTS:
            return outcome_of(record, replayed=True)
    elif status == "deferred":
        if record.deferred_until is not None and as_utc(record.deferred_until) > now:
            return outcome_of(record, replayed=True)
        verdict = _judge(session, runtime, channel, kind, contact, record.category, now)
        if verdict is not None:
            changed = (record.status, record.reason) != (verdict.status, verdict.reason)
            record.status, record.reason = verdict.status, verdict.reason
            record.deferred_until, record.updated_at = verdict.deferred_until, now
            if changed and verdict.status == "suppressed":
                events.emit(session, runtime.spool, "message_suppressed", record, channel,
                            contact.external_id if contact else None)  # fmt: skip
            session.commit()
            return outcome_of(record)
        if kind.addressing == "staff":
            _to_staff(session, runtime, channel, record, contact)
            session.commit()
            return outcome_of(record)
    elif status == "sending":
        claimed = as_utc(record.claimed_until) if record.claimed_until else now
        if claimed > now:
            return SendOutcome(record.id, "deferred", reason="in_flight", deferred_until=claimed,
                               replayed=True)  # fmt: skip
        recovering = True
    if not _claim(session, record, now):
        # Someone else took it this instant: report what they hold.
        return _resume_view(record, now)
    return _deliver(session, runtime, channel, kind, record, contact, now, http,
                    recovering=recovering)  # fmt: skip


def _resume_view(record: ChannelSend, now: datetime) -> SendOutcome:
    if record.status == "sending":
        until = as_utc(record.claimed_until) if record.claimed_until else now
        return SendOutcome(record.id, "deferred", reason="in_flight", deferred_until=until,
                           replayed=True)  # fmt: skip
    return outcome_of(record, replayed=True)


def _deliver(
    session: Session,
    runtime: Runtime,
    channel: Channel,
    kind: AdapterKind,
    record: ChannelSend,
    contact: Contact | None,
    now: datetime,
    http: httpx.Client | None,
    *,
    recovering: bool,
) -> SendOutcome:
    """Call the adapter for the attempt ``record`` holds (committed as ``sending``), then mark."""
    result = _call_adapter(runtime, channel, kind, record, contact, http, recovering=recovering)
    marked = _mark(session, runtime, channel, record, contact, result, recovering=recovering)
    session.commit()
    if not marked:
        session.refresh(record)
        return _resume_view(record, utcnow())
    return outcome_of(record)


def _call_adapter(
    runtime: Runtime,
    channel: Channel,
    kind: AdapterKind,
    record: ChannelSend,
    contact: Contact | None,
    http: httpx.Client | None,
    *,
    recovering: bool,
) -> DeliveryResult:
    """The adapter's answer for the attempt ``record`` holds; no database access (this runs
    with no transaction open, in pool threads for a batch)."""
    ctx = adapter_context(runtime, http)
    try:
        secret = runtime.cipher.decrypt(channel.secret_enc) if channel.secret_enc else None
        adapter = kind.build(channel.config, secret, ctx)
        unsub = (
            unsubscribe_url(runtime, record.workspace_id, contact.id, channel.id)
            if contact is not None and record.category == "marketing"
            else None
        )
        message = OutboundMessage(
            send_id=record.id, workspace_id=record.workspace_id, channel_id=channel.id,
            idempotency_key=record.idempotency_key, content=record.content,
            category=record.category, contact_id=record.contact_id,
            contact_external_id=contact.external_id if contact else None,
            address=_address(runtime, kind, contact), unsubscribe_url=unsub,
        )  # fmt: skip
        result: DeliveryResult | None = adapter.lookup(message) if recovering else None
        if result is None or not result.delivered:
            result = adapter.send(message)
    except Exception as exc:  # a bug in an adapter must not leave the record claimed forever
        log.exception("channel %s adapter failed on %s", channel.kind, record.id)
        result = DeliveryResult.fail("adapter_error", f"{type(exc).__name__}: {exc}",
                                     retryable=True)  # fmt: skip
    return result


def _mark(
    session: Session,
    runtime: Runtime,
    channel: Channel,
    record: ChannelSend,
    contact: Contact | None,
    result: DeliveryResult,
    *,
    recovering: bool,
) -> bool:
    """Write the adapter's answer for the attempt ``record`` holds (only its holder can) and
    its event; the caller commits. False: the attempt was taken over meanwhile."""
    done = utcnow()
    values: dict[str, Any] = {"claimed_until": None, "updated_at": done}
    if result.delivered:
        values.update(status="sent", sent_at=done, provider_message_id=result.provider_message_id,
                      reason=None, error=None, retryable=False)  # fmt: skip
    else:
        values.update(status="failed", reason=result.error_code, error=result.error,
                      retryable=result.retryable)  # fmt: skip
    marked = session.execute(
        update(ChannelSend)
        .where(
            ChannelSend.id == record.id,
            ChannelSend.status == "sending",
            ChannelSend.attempts == record.attempts,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if marked != 1:
        return False
    _known(record, **values)
    external_id = contact.external_id if contact else None
    if result.delivered:
        events.emit(session, runtime.spool, "message_sent", record, channel, external_id,
                    recovered=recovering or None)  # fmt: skip
    else:
        events.emit(session, runtime.spool, "message_failed", record, channel, external_id,
                    attempt=record.attempts, retryable=record.retryable)  # fmt: skip
    return True


# -- a batch: one transaction records it, the adapters are called in a pool, one marks it ------


def send_many(
    runtime: Runtime,
    requests: Sequence[SendRequest],
    *,
    now: datetime | None = None,
    threads: int = 8,
    http: httpx.Client | None = None,
) -> list[SendOutcome | DomainError]:
    """``send()`` for many messages with two commits in all instead of two per message: the
    new keys' records (guards judged, ``sending`` with a claim) are inserted in one
    transaction and committed before any adapter is called; the adapters are called in a
    pool of ``threads``; the answers are marked in one transaction. Exactly once per key as
    ``send()`` (the same records, claims and conditional marks); a key seen before (a replay,
    a retry, a claim left by a dead process) goes through ``send()`` itself. A request that
    is bad input gets its error in its place (nothing written for it); the others go on.

    A process killed between the adapter calls and the mark leaves up to ``len(requests)``
    records ``sending``: recovery resends them with their key (decision 0025), so a caller
    that wants a small resend window passes small batches."""
    now = now or utcnow()
    out: list[SendOutcome | DomainError | None] = [None] * len(requests)
    later: list[int] = []
    deliver: list[tuple[int, Channel, AdapterKind, ChannelSend, Contact | None]] = []
    channels: dict[str, Channel] = {}
    with runtime.sessions() as session:
        facts = _batch_facts(session, requests)
        for i, request in enumerate(requests):
            try:
                with session.begin_nested():
                    got = _record_new(session, runtime, request, now, channels, facts)
            except DomainError as exc:
                out[i] = exc
                continue
            except IntegrityError:
                later.append(i)  # inserted meanwhile by someone else: send() reads it
                continue
            if got is None:
                later.append(i)
                continue
            channel, kind, record, contact, verdict = got
            if verdict is not None or kind.addressing == "staff":
                out[i] = outcome_of(record)
            else:
                deliver.append((i, channel, kind, record, contact))
        session.commit()  # every record durable before any adapter is called
        results: list[DeliveryResult] = []
        if deliver:
            calls = [
                lambda c=c, k=k, r=r, p=p: _call_adapter(runtime, c, k, r, p, http,
                                                         recovering=False)
                for _, c, k, r, p in deliver
            ]  # fmt: skip
            if threads > 1 and len(calls) > 1:
                with ThreadPoolExecutor(min(threads, len(calls))) as pool:
                    results = list(pool.map(lambda call: call(), calls))
            else:
                results = [call() for call in calls]
            taken: list[int] = []
            for (i, channel, _kind, record, contact), result in zip(deliver, results, strict=True):
                if _mark(session, runtime, channel, record, contact, result, recovering=False):
                    out[i] = outcome_of(record)
                else:
                    taken.append(i)
            session.commit()
            for i in taken:  # taken over meanwhile (a lease that ran out): what it is now
                _, _, _, record, _ = next(d for d in deliver if d[0] == i)
                session.refresh(record)
                out[i] = _resume_view(record, utcnow())
    for i in later:
        try:
            with runtime.sessions() as session:
                out[i] = send(session, runtime, requests[i], now=now, http=http)
        except DomainError as exc:
            out[i] = exc
    return [o for o in out if o is not None]


def _batch_facts(session: Session, requests: Sequence[SendRequest]) -> dict[Any, Any]:
    """Read once for a batch: its contacts, their opt-outs, the keys already recorded."""
    from liebian.contacts.models import Contact

    ids = sorted({r.contact_id for r in requests if r.contact_id})
    keys = sorted({(r.workspace_id, (r.idempotency_key or "").strip()) for r in requests})
    facts: dict[Any, Any] = {"contacts": {}, "opted_out": set(), "keys": set()}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        facts["contacts"].update(
            (c.id, c) for c in session.scalars(select(Contact).where(Contact.id.in_(chunk)))
        )
        facts["opted_out"].update(
            tuple(row)
            for row in session.execute(
                select(ChannelOptOut.workspace_id, ChannelOptOut.contact_id,
                       ChannelOptOut.channel_id).where(ChannelOptOut.contact_id.in_(chunk))
            )
        )  # fmt: skip
    for start in range(0, len(keys), 500):
        chunk_keys = keys[start : start + 500]
        facts["keys"].update(
            tuple(row)
            for row in session.execute(
                select(ChannelSend.workspace_id, ChannelSend.idempotency_key).where(
                    ChannelSend.idempotency_key.in_([k for _, k in chunk_keys])
                )
            )
        )
    return facts


def _record_new(
    session: Session,
    runtime: Runtime,
    request: SendRequest,
    now: datetime,
    channels: dict[str, Channel],
    facts: dict[Any, Any],
) -> tuple[Channel, AdapterKind, ChannelSend, Contact | None, Verdict | None] | None:
    """``send()``'s checks and record for a key never seen (None: seen — ``send()`` resumes
    it); flushed inside the caller's savepoint, committed by the caller."""
    key = _checked_key(request)
    channel = channels.get(request.channel_id)
    if channel is None:
        channel = channels[request.channel_id] = _channel(
            session, request.workspace_id, request.channel_id
        )
    elif channel.workspace_id != request.workspace_id:
        channel = _channel(session, request.workspace_id, request.channel_id)
    kind = adapter_kind(channel.kind)
    content = kind.check_content(request.content)
    known = facts["contacts"].get(request.contact_id or "")
    if known is not None and known.workspace_id == request.workspace_id:
        contact: Contact | None = known
    else:
        contact = _contact(session, request.workspace_id, request.contact_id, kind)
    if (request.workspace_id, key) in facts["keys"]:
        return None  # seen before: send() resumes it
    facts["keys"].add((request.workspace_id, key))  # a repeat in the batch: send() after commit
    verdict = _judge(session, runtime, channel, kind, contact, request.category, now, facts)
    record = _new_record(request, channel, kind, contact, key, content, verdict, now)
    session.add(record)
    session.flush()
    external_id = contact.external_id if contact else None
    if verdict is not None:
        event = "message_suppressed" if verdict.status == "suppressed" else "message_deferred"
        events.emit(session, runtime.spool, event, record, channel, external_id,
                    deferred_until=_iso(verdict.deferred_until))  # fmt: skip
    elif kind.addressing == "staff":
        _to_staff(session, runtime, channel, record, contact)
    return channel, kind, record, contact, verdict


# -- delivery receipts (bounces) -------------------------------------------------------------

RECEIPTS = {"delivered": "message_delivered", "bounced": "message_bounced"}


def record_receipt(
    session: Session,
    runtime: Runtime,
    workspace_id: str,
    channel_id: str,
    *,
    idempotency_key: str | None,
    provider_message_id: str | None,
    result: str,
    detail: str | None = None,
) -> ChannelSend:
    """A provider's later word on a sent message (an SMS delivery report, a mail bounce that
    the brand's system forwards): ``delivered`` or ``bounced``. The record stays ``sent`` (it
    was handed over); a bounce sets ``reason`` = "bounced" and ``error`` = the detail. The
    event is written once per record and result."""
    if result not in RECEIPTS:
        raise Invalid("result is delivered or bounced", details={"field": "result"})
    _channel(session, workspace_id, channel_id)
    query = select(ChannelSend).where(
        ChannelSend.workspace_id == workspace_id, ChannelSend.channel_id == channel_id
    )
    if idempotency_key:
        query = query.where(ChannelSend.idempotency_key == idempotency_key)
    elif provider_message_id:
        query = query.where(ChannelSend.provider_message_id == provider_message_id)
    else:
        raise Invalid("give idempotency_key or provider_message_id of the message",
                      details={"field": "idempotency_key"})  # fmt: skip
    record = session.scalars(query.limit(1)).first()
    if record is None:
        raise NotFound("no message with that key or provider id on this channel",
                       code="send_not_found")  # fmt: skip
    if record.status != "sent":
        raise Conflict(f"the message is {record.status}; only a sent message gets a receipt",
                       code="send_not_sent")  # fmt: skip
    if result == "bounced":
        record.reason, record.error = "bounced", (detail or "")[:500] or None
        record.updated_at = utcnow()
    from liebian.contacts.models import Contact

    contact = session.get(Contact, record.contact_id) if record.contact_id else None
    channel = session.get(Channel, channel_id)
    assert channel is not None
    events.emit(session, runtime.spool, RECEIPTS[result], record, channel,
                contact.external_id if contact else None, detail=detail)  # fmt: skip
    session.flush()
    return record


# -- recovery (the scheduler's job) ----------------------------------------------------------


def _retry_due(record: ChannelSend, now: datetime) -> bool:
    """A retryable failure waits RETRY_BACKOFF * 2^(attempts-1) after its last attempt."""
    wait = RETRY_BACKOFF * 2 ** max(0, record.attempts - 1)
    return as_utc(record.updated_at) + timedelta(seconds=wait) <= now


def recover(runtime: Runtime, *, now: datetime | None = None, limit: int = 200) -> int:
    """Carry on sends nobody will call again: claims left by dead processes, deferred sends
    whose quiet hours ended, and retryable failures whose backoff has passed. Each in its own session; returns how many were handled."""
    from liebian.kit.db import session_scope

    now = now or utcnow()
    with runtime.read_sessions() as session:
        due = list(
            session.execute(
                select(ChannelSend.workspace_id, ChannelSend.idempotency_key)
                .where(
                    ((ChannelSend.status == "sending") & (ChannelSend.claimed_until < now))
                    | (
                        (ChannelSend.status == "deferred")
                        & (ChannelSend.reason == "quiet_hours")
                        & (ChannelSend.deferred_until <= now)
                    )
                    | (
                        (ChannelSend.status == "failed")
                        & ChannelSend.retryable.is_(True)
                        & (ChannelSend.attempts < MAX_ATTEMPTS)
                        & (ChannelSend.updated_at <= now - timedelta(seconds=RETRY_BACKOFF))
                    )
                )
                .limit(limit)
            )
        )
    handled = 0
    for workspace_id, key in due:
        try:
            with session_scope(runtime.sessions) as session:
                record = _by_key(session, workspace_id, key)
                if record is None or (record.status == "failed" and not _retry_due(record, now)):
                    continue
                channel = _channel(session, workspace_id, record.channel_id)
                kind = adapter_kind(channel.kind)
                contact = _contact(session, workspace_id, record.contact_id, kind)
                _resume(session, runtime, channel, kind, record, contact, now, None)
                handled += 1
        except Exception:
            log.exception("channel send %s not recovered", key)
    return handled
