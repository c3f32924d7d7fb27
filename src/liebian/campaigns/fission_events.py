"""Every fission action is also an event in the event store, written once.

The campaign engine's OLTP tables say what *is* (a participant, a referral, a group); the event
store says what *happened*, so the funnel, retention, breakdown and attribution queries and the
数据 page's 邀请率 / 分享率 / 入群率 work on campaigns without code of their own.

How: a state change calls :func:`emit` with the session that makes it; the line is appended to
the process's spool by an after-commit callback (``kit.db.after_commit``: a rolled-back request
or savepoint writes nothing), and the flusher loads it with the other events. The ``event_id``
is derived from the row the action created (``fx:join:par_…``), so a replay or a second emit
of the same fact is stored once by the store's event_id dedupe. Page views, invite clicks and
shares have no row of their own: they are written to the spool straight away, one per action.

Names (``event``) and who is ``user_id``:

=================  ====================================================  ==================
event              when                                                  user_id
=================  ====================================================  ==================
page_view          a campaign page (/p /g /a) was shown                  the viewer if known
invite_click       someone other than its owner opened an invite link     the viewer if known
share              a participant opened their share kit or poster        the participant
campaign_join      a person joined the campaign                          the participant
invite             a joiner came through an invite (referral created)    the referrer
invite_qualified   the invitee did the qualifying action                 the referrer
group_open         a group buy was opened                                the leader
join_group         a person took a seat in a group (leader included)     the member
group_success      the group filled (revenue = the group's order total)  the leader
group_fail         the group expired unfilled                            the leader
assist_start       an assist / bargain was started                       the owner
assist_help        a friend helped                                       the helper
assist_unlock      the assist reached its goal                           the owner
reward_issued      a reward was issued                                   the receiver
reward_reversed    a reward was reversed                                 the receiver
=================  ====================================================  ==================

Every line carries ``campaign_id`` and, where known, ``channel`` (the entry link's channel),
``properties.participant_id`` and ``properties.referrer`` (the referrer's external id).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from liebian.events import sink as event_sink
from liebian.events.names import FISSION_EVENTS
from liebian.events.store.base import EventRow

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime

log = logging.getLogger("liebian.campaigns")
EVENTS: Final = FISSION_EVENTS


def install(runtime: Runtime) -> None:
    """Put the sink into every session the runtime's factory makes, and turn the ledger's
    reward announcements into events."""
    sink = event_sink.install(runtime)
    from liebian.rewards.service import REWARD_ISSUED, REWARD_REVERSED

    def on_reward(event: str) -> Any:
        def handle(payload: Any) -> None:
            ids = list((payload or {}).get("entry_ids") or ())
            if not ids:
                return
            try:
                _reward_events(runtime.sessions, sink, event, ids)
            except Exception:  # after the commit: the reward stands, only its event is lost
                log.exception("reward events for %d entries not written", len(ids))

        return handle

    runtime.bus.subscribe(REWARD_ISSUED, on_reward("reward_issued"))
    runtime.bus.subscribe(REWARD_REVERSED, on_reward("reward_reversed"))


def line(
    *,
    workspace_id: str,
    event: str,
    event_id: str,
    campaign_id: str,
    user_id: str | None = None,
    visitor_id: str | None = None,
    channel: str | None = None,
    participant_id: str | None = None,
    referrer: str | None = None,
    revenue: int | None = None,
    ip_hash: str | None = None,
    platform: str | None = None,
    properties: Mapping[str, Any] | None = None,
    ts: datetime | None = None,
) -> bytes:
    props: dict[str, Any] = dict(properties or {})
    if participant_id:
        props["participant_id"] = participant_id
    if referrer:
        props["referrer"] = referrer
    now = datetime.now(UTC)
    row = EventRow(
        workspace_id=workspace_id, event_id=event_id, event=event, ts=ts or now, received_at=now,
        visitor_id=visitor_id or None, user_id=user_id or None, channel=channel or None,
        campaign_id=campaign_id, ip_hash=ip_hash, platform=platform, revenue=revenue,
        currency="CNY" if revenue is not None else None, properties=props or None,
    )  # fmt: skip
    return orjson.dumps(row.to_record(), option=orjson.OPT_APPEND_NEWLINE)


def line_template(**fields: Any) -> dict[str, Any]:
    """The record :func:`line` writes for ``fields``, to :func:`stamp` once per request: the
    lean page path's lines, which differ per view only by id, time, visitor and platform."""
    record: dict[str, Any] = orjson.loads(line(event_id="", **fields))
    return record


def stamp(
    template: dict[str, Any], *, event_id: str, at: str, visitor_id: str | None, platform: str
) -> bytes:
    """``line(**fields, event_id=…, visitor_id=…, platform=…)`` of a :func:`line_template`,
    received (and happened) ``at`` (:func:`now_text`)."""
    record = template.copy()
    record["event_id"] = event_id
    record["ts"] = record["received_at"] = at
    record["visitor_id"] = visitor_id or None
    record["platform"] = platform
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


_MILLIS: Final = tuple(f".{ms:03d}" for ms in range(1000))
_second: tuple[int, str] = (-1, "")


def now_text() -> str:
    """Now, as a record's ``ts`` says it (``record_time(datetime.now(UTC))``): the second's
    text is kept, so a page view formats only its milliseconds (``strftime`` per view was
    ~5 µs of a page's ~60, decision 0042)."""
    global _second
    millis = time.time_ns() // 1_000_000  # floored, as datetime.now is
    second, ms = divmod(millis, 1000)
    cached, text = _second
    if cached != second:
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        _second = (second, text)  # one assignment: a racing thread sees either pair
    return text + _MILLIS[ms]


def emit(session: Session, **fields: Any) -> None:
    """Record one fission action with the transaction that makes it true (see module doc)."""
    if event_sink.installed(session):
        event_sink.emit_after_commit(session, line(**fields))


def emit_now(runtime: Runtime, **fields: Any) -> None:
    """Record an action that changes no row (page view, invite click, share) right away."""
    if runtime.spool is not None:
        runtime.spool.append_line(line(**fields))


def _reward_events(
    sessions: sessionmaker[Session], sink: event_sink.SpoolSink, event: str, ids: list[str]
) -> None:
    from liebian.contacts.models import Contact
    from liebian.rewards.models import RewardEntry

    with sessions() as session:
        rows = session.execute(
            select(
                RewardEntry.id, RewardEntry.workspace_id, RewardEntry.campaign_id,
                RewardEntry.kind, RewardEntry.amount, RewardEntry.reason, Contact.external_id,
            )
            .join(Contact, Contact.id == RewardEntry.contact_id)
            .where(RewardEntry.id.in_(ids), RewardEntry.campaign_id.is_not(None))
        ).all()  # fmt: skip
    sink.write(
        b"".join(
            line(
                workspace_id=r.workspace_id, event=event, event_id=f"fx:{event}:{r.id}",
                campaign_id=r.campaign_id, user_id=r.external_id,
                properties={"kind": r.kind, "amount": r.amount, "reason": r.reason, "entry_id": r.id},
            )
            for r in rows
        )
    )  # fmt: skip
