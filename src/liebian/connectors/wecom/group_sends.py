"""企业群发 to customer groups (``add_msg_template`` with ``chat_type`` group) and the results
WeCom reports for every mass send (``get_groupmsg_task`` / ``get_groupmsg_send_result``).

A group mass send is a task for the groups' owner (``sender``): WeCom shows it in the owner's
app and sends nothing until the owner confirms. Like the customer mass sends (service.py),
the record is written before WeCom is called, under a unique (workspace, idempotency_key):

- ``record_group_send`` writes the row (status ``sending``) in the caller's transaction, so a
  caller (the content calendar) commits its own slot and the WeCom task together; the groups
  are counted against WeCom's monthly cap (a customer *or customer group* receives at most 4
  of a corp's mass messages per natural month) in ``wecom_monthly_receipts`` keyed by chat id,
  and groups at the cap are left out (``over_cap``);
- ``dispatch`` claims the row by a conditional UPDATE (``sending`` → ``calling``, committed)
  before the call, so however many callers, retries or recovery passes run, WeCom is asked
  once. WeCom's answer makes it ``created`` (with ``msgid``) or ``failed`` (errcode; the
  groups' counts go back); no answer leaves it ``unknown`` (WeCom may have made the task:
  never asked again). A crash between the claim and the answer leaves ``calling``; the poll
  job turns that into ``unknown`` after ``STALE_CALLING``;
- ``refresh`` asks WeCom what became of a created task and stores it in ``results``; the
  scheduler's ``wecom_group_results`` job does it for tasks younger than ``POLL_DAYS`` that
  are not final, and dispatches ``sending`` rows a crashed caller left behind.

Per recipient, WeCom's status: 0 not sent (the owner has not confirmed: *pending*), 1 sent,
2 not a customer / not in the group, 3 already received its monthly share (*failed*).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from liebian.connectors.wecom import repository
from liebian.connectors.wecom.client import WecomApiError
from liebian.connectors.wecom.models import WecomMassSend
from liebian.connectors.wecom.service import MONTHLY_CAP, client_for, month_of, require
from liebian.kit.auth import Principal
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import Invalid, NotFound
from liebian.kit.ids import new_id

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime

log = logging.getLogger("liebian.connectors.wecom")

MAX_CHATS = 2000  # WeCom: chat_id_list holds at most 2,000 groups
# A row claimed for the call longer than this: the caller crashed mid-call (unknown outcome).
STALE_CALLING = timedelta(minutes=10)
# A recorded row never claimed for this long: its caller crashed after the commit; dispatch.
STALE_SENDING = timedelta(seconds=60)
# Results are asked for while a task is this young and not final.
POLL_DAYS = 7
# errcode of get_groupmsg_send_result: WeCom is still dispatching the task.
DISPATCHING = 41063
ITEM_STATUS = {0: "pending", 1: "sent", 2: "failed", 3: "failed"}
ITEM_REASON = {2: "not_in_group_or_not_customer", 3: "monthly_limit_reached"}


def check_userid(value: str, field_name: str = "sender") -> str:
    """A WeCom userid as the admin console allows it: 1–64 letters, digits, _-.@"""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_\-.@]{1,64}", value or ""):
        raise Invalid(
            f"{field_name} must be a WeCom userid (1–64 letters, digits or _-.@, as in WeCom's "
            "通讯录)", code="invalid_wecom_userid", details={"field": field_name},
        )  # fmt: skip
    return value


def record_group_send(
    session: Session, workspace_id: str, *, idempotency_key: str, sender: str,
    chat_ids: list[str], text: str, source: str | None = None, now: datetime | None = None,
) -> tuple[str, bool]:  # fmt: skip
    """Write the group task in the caller's transaction: ``(row id, fresh)``. The same key
    returns the recorded row (``fresh`` False) and writes nothing."""
    check_userid(sender)
    text = (text or "").strip()
    chats = sorted({c.strip() for c in chat_ids if c and c.strip()})
    if not idempotency_key or not chats or not text:
        raise Invalid(
            "idempotency_key, at least one chat id and a non-empty text are needed",
            code="invalid_mass_send",
        )
    if len(chats) > MAX_CHATS:
        raise Invalid(f"at most {MAX_CHATS} groups per mass send", code="invalid_mass_send")
    if len(text) > 4000:
        raise Invalid("text is at most 4000 characters (WeCom's limit)", code="invalid_mass_send")
    month = month_of(now or utcnow())
    row_id = new_id("wms")
    fresh = repository.insert_ignore(
        session, WecomMassSend.__table__,
        {"id": row_id, "workspace_id": workspace_id, "idempotency_key": idempotency_key,
         "chat_type": "group", "source": source, "sender": sender, "status": "sending",
         "month": month, "recipients": [], "over_cap": [], "fail_list": [],
         "content": {"text": text}, "created_at": utcnow(), "updated_at": utcnow()},
        ["workspace_id", "idempotency_key"],
    )  # fmt: skip
    if not fresh:
        existing = session.scalar(
            select(WecomMassSend.id).where(
                WecomMassSend.workspace_id == workspace_id,
                WecomMassSend.idempotency_key == idempotency_key,
            )
        )
        assert existing is not None
        return existing, False
    repository.reserve_recipients(session, row_id, workspace_id, chats, month, MONTHLY_CAP, "group")
    session.flush()
    return row_id, True


def dispatch(runtime: Runtime, workspace_id: str, row_id: str) -> WecomMassSend:
    """Call WeCom for a recorded group task, once: only the caller whose conditional UPDATE
    moves it from ``sending`` to ``calling`` calls; everyone else gets the record."""
    with session_scope(runtime.sessions) as session:
        claimed = session.execute(
            update(WecomMassSend)
            .where(
                WecomMassSend.id == row_id,
                WecomMassSend.workspace_id == workspace_id,
                WecomMassSend.chat_type == "group",
                WecomMassSend.status == "sending",
            )
            .values(status="calling", updated_at=utcnow())
        )
        won = getattr(claimed, "rowcount", 0) == 1
        row = session.get(WecomMassSend, row_id)
        if row is None:
            raise NotFound("no such mass send", code="mass_send_not_found")
        if not won:
            session.expunge(row)
            return row
        sender, chats, text, month = (
            row.sender or "",
            list(row.recipients),
            row.content["text"],
            row.month,
        )
    status, msgid, fail_list = "created", None, []
    errcode: int | None = None
    errmsg: str | None = None
    try:
        answer = client_for(runtime, workspace_id).add_group_msg_template(
            sender=sender, chat_ids=chats, text=text
        )
        msgid = str(answer.get("msgid") or "") or None
        fail_list = [str(u) for u in answer.get("fail_list") or []]
    except WecomApiError as exc:
        status, errcode, errmsg = "failed", exc.errcode, exc.errmsg
    except Exception as exc:  # no answer: WeCom may or may not have made the task
        status, errmsg = "unknown", f"WeCom did not answer: {type(exc).__name__}"
    with session_scope(runtime.sessions) as session:
        if status == "failed":
            repository.release_receipts(session, workspace_id, chats, month)
        row = session.get(WecomMassSend, row_id)
        assert row is not None
        row.status, row.msgid, row.fail_list = status, msgid, fail_list
        row.errcode, row.errmsg, row.updated_at = (
            errcode,
            (errmsg or None) and errmsg[:500],
            utcnow(),
        )
        session.flush()
        session.expunge(row)
        return row


def add_group_msg_template(
    runtime: Runtime, workspace_id: str, *, idempotency_key: str, sender: str,
    chat_ids: list[str], text: str, source: str | None = None, now: datetime | None = None,
) -> WecomMassSend:  # fmt: skip
    """Record and send one group task (a retry with the same key creates nothing new)."""
    with session_scope(runtime.sessions) as session:
        row_id, _fresh = record_group_send(
            session, workspace_id, idempotency_key=idempotency_key, sender=sender,
            chat_ids=chat_ids, text=text, source=source, now=now,
        )  # fmt: skip
    return dispatch(runtime, workspace_id, row_id)


# -- results --------------------------------------------------------------------------------


def _pages(call: Any, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(100):  # 100 pages of 1,000: far beyond one task
        answer = call(cursor)
        items += [i for i in answer.get(key) or [] if isinstance(i, dict)]
        cursor = str(answer.get("next_cursor") or "")
        if not cursor:
            break
    return items


def refresh(runtime: Runtime, workspace_id: str, row_id: str) -> WecomMassSend:
    """Ask WeCom what became of a created task; store it in ``results``."""
    with runtime.read_sessions() as session:
        row = session.get(WecomMassSend, row_id)
        if row is None or row.workspace_id != workspace_id:
            raise NotFound("no such mass send", code="mass_send_not_found")
        msgid, chat_type, month = row.msgid, row.chat_type, row.month
        before = dict((row.results or {}).get("items") or {})
        session.expunge(row)
    if not msgid:
        return row
    client = client_for(runtime, workspace_id)
    tasks = _pages(lambda c: client.get_groupmsg_task(msgid, c), "task_list")
    senders = {str(t.get("userid")): int(t.get("status") or 0) for t in tasks}
    items: dict[str, int] = {}
    note = None
    try:
        for userid in senders:
            sends = _pages(
                lambda c, u=userid: client.get_groupmsg_send_result(msgid, u, c), "send_list"
            )
            for s in sends:
                target = str(s.get("chat_id") if chat_type == "group" else s.get("external_userid"))
                items[target] = int(s.get("status") or 0)
    except WecomApiError as exc:
        if exc.errcode != DISPATCHING:
            raise
        items, note = before, "dispatching"  # asked again on the next pass
    with session_scope(runtime.sessions) as session:
        # WeCom did not deliver to these (not in the group / not a customer): it did not
        # count against the month either, so ours goes back — once, on the change to 2.
        newly_failed = [t for t, s in items.items() if s == 2 and before.get(t) != 2]
        repository.release_receipts(session, workspace_id, newly_failed, month)
        row = session.get(WecomMassSend, row_id)
        assert row is not None
        row.results = {"senders": senders, "items": items, **({"note": note} if note else {})}
        row.results_at = utcnow()
        session.flush()
        session.expunge(row)
        return row


def is_final(row: WecomMassSend) -> bool:
    """Nothing left to learn from WeCom: not created, or every recipient sent or failed."""
    if row.status != "created":
        return row.status not in ("sending", "calling")
    items = (row.results or {}).get("items") or {}
    return bool(items) and all(s != 0 for s in items.values()) and len(items) >= len(row.recipients)


def poll(
    runtime: Runtime, now: datetime | None = None, *, min_age: timedelta = timedelta(minutes=5)
) -> int:
    """The scheduler's ``wecom_group_results`` pass: dispatch rows a crashed caller left in
    ``sending``, mark rows stuck in ``calling`` unknown, and refresh created tasks that are
    not final (each at most every ``min_age``). Returns how many rows it touched."""
    now = now or utcnow()
    touched = 0
    with session_scope(runtime.sessions) as session:
        stale = session.execute(
            update(WecomMassSend)
            .where(
                WecomMassSend.chat_type == "group",
                WecomMassSend.status == "calling",
                WecomMassSend.updated_at < now - STALE_CALLING,
            )
            .values(
                status="unknown",
                updated_at=now,
                errmsg="the call to WeCom was interrupted; WeCom may have made the task "
                "(the owner sees it in WeCom)",
            )
        )
        touched += int(getattr(stale, "rowcount", 0) or 0)
        rows = session.execute(
            select(WecomMassSend.id, WecomMassSend.workspace_id, WecomMassSend.status,
                   WecomMassSend.updated_at, WecomMassSend.results_at)
            .where(
                WecomMassSend.created_at > now - timedelta(days=POLL_DAYS),
                or_(
                    and_(WecomMassSend.status == "sending",
                         WecomMassSend.updated_at < now - STALE_SENDING),
                    and_(WecomMassSend.status == "created", WecomMassSend.msgid.is_not(None),
                         or_(WecomMassSend.results_at.is_(None),
                             WecomMassSend.results_at < now - min_age)),
                ),
            )
            # The least recently asked first: a backlog is worked through, not starved.
            .order_by(func.coalesce(WecomMassSend.results_at, WecomMassSend.created_at))
            .limit(500)
        ).all()  # fmt: skip
    for row_id, ws, status, _updated_at, _results_at in rows:
        try:
            if status == "sending":
                dispatch(runtime, ws, row_id)
                touched += 1
                continue
            with runtime.read_sessions() as session:
                row = session.get(WecomMassSend, row_id)
                if row is None or is_final(row):
                    continue
            refresh(runtime, ws, row_id)
            touched += 1
        except Exception:  # one workspace's WeCom trouble does not stop the others
            log.exception("wecom mass send %s: results not refreshed; next pass", row_id)
    return touched


# -- what the API and console show -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    target: str
    status: str  # pending (not confirmed yet) | sent | failed | over_cap | refused
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TaskView:
    id: str
    chat_type: str
    status: str
    # pending_confirmation | sent | partly_sent | failed | refused | unknown | sending
    progress: str
    sender: str | None
    msgid: str | None
    month: str
    source: str | None
    text: str
    items: list[Item] = field(default_factory=list)
    errcode: int | None = None
    errmsg: str | None = None
    created_at: datetime | None = None
    results_at: datetime | None = None


def view(row: WecomMassSend) -> TaskView:
    results = (row.results or {}).get("items") or {}
    items: list[Item] = []
    fails = set(row.fail_list)
    for target in row.recipients:
        if row.status == "failed" or target in fails:
            items.append(Item(target, "failed", "wecom_refused"))
        elif target in results:
            code = int(results[target])
            items.append(Item(target, ITEM_STATUS.get(code, "pending"), ITEM_REASON.get(code)))
        else:
            items.append(Item(target, "pending" if row.status == "created" else row.status))
    items += [Item(t, "over_cap", "monthly_cap") for t in row.over_cap]
    states = {i.status for i in items if i.status != "over_cap"}
    if row.status != "created":
        progress = {"sending": "sending", "calling": "sending"}.get(row.status, row.status)
    elif states == {"sent"}:
        progress = "sent"
    elif "pending" in states:
        progress = "pending_confirmation"
    elif "sent" in states:
        progress = "partly_sent"
    else:
        progress = "failed"
    return TaskView(
        id=row.id, chat_type=row.chat_type, status=row.status, progress=progress,
        sender=row.sender, msgid=row.msgid, month=row.month, source=row.source,
        text=str((row.content or {}).get("text") or ""), items=items, errcode=row.errcode,
        errmsg=row.errmsg, created_at=row.created_at, results_at=row.results_at,
    )  # fmt: skip


def get_task(session: Session, principal: Principal, row_id: str) -> WecomMassSend:
    require(principal, "read")
    row = session.get(WecomMassSend, row_id)
    if row is None or row.workspace_id != principal.workspace_id:
        raise NotFound("no such mass send", code="mass_send_not_found")
    return row


def recent(session: Session, principal: Principal, limit: int = 50) -> list[WecomMassSend]:
    """The workspace's mass sends, newest first (customers and groups)."""
    require(principal, "read")
    return list(
        session.scalars(
            select(WecomMassSend)
            .where(WecomMassSend.workspace_id == principal.workspace_id)
            .order_by(WecomMassSend.created_at.desc(), WecomMassSend.id.desc())
            .limit(max(1, min(limit, 200)))
        )
    )


def tasks_of_source(
    session: Session, workspace_id: str, source: str, limit: int = 100
) -> list[WecomMassSend]:
    return list(
        session.scalars(
            select(WecomMassSend)
            .where(WecomMassSend.workspace_id == workspace_id, WecomMassSend.source == source)
            .order_by(WecomMassSend.id.desc())
            .limit(limit)
        )
    )
