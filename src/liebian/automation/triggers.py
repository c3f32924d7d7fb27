"""What starts people on journeys, and the events a running journey waits for.

- **Bus topics** (tags changed, segment entered/exited, community joined/left/answered): the
  :class:`TriggerOutbox` writer, chained into ``kit.bus.publish_after_commit``, inserts a
  ``journey_trigger_outbox`` row **in the publisher's own transaction** (when the workspace
  has a live journey), and :func:`drain_outbox` (the triggers thread of ``liebian serve`` and
  of ``liebian worker``) applies rows and deletes them in one transaction. So a change
  committed just before a crash is still turned into enrolments, and a rolled-back one never
  is; the entry key carries the row id, so a row applied twice (two drainers on SQLite)
  enrols once.
- **Events** (``events/hooks.py``): :class:`JourneyEvents` is a registered consumer that
  selects the events some live journey names (trigger, ``wait_event``, goal). It runs inside the
  hooks worker's transaction, once per event id, so an event enrols a person once.
- **Scans** (:func:`scan`): date attributes with an offset (7 days before a birthday, at a
  local time) and inactivity (no event of a kind for N days).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from liebian.automation import repository, service
from liebian.automation.models import Journey, JourneyTriggerOutbox, JourneyVersion
from liebian.kit.bus import OUTBOX_KEY, OutboxWriter
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.ids import new_id

log = logging.getLogger("liebian.automation.triggers")

TOPIC_TRIGGERS = {
    "segment.entered": "segment_entered",
    "segment.exited": "segment_exited",
    "community.member_joined": "community_joined",
    "community.member_left": "community_left",
    "community.screening_answered": "screening_answered",
}
TAGS_TOPIC = "contact.tags_changed"
TRIGGER_TOPICS = frozenset((*TOPIC_TRIGGERS, TAGS_TOPIC))


def _live_definitions(
    session: Session, workspace_id: str | None = None
) -> list[tuple[Journey, dict[str, Any]]]:
    stmt = (
        select(Journey, JourneyVersion.definition)
        .join(JourneyVersion, (JourneyVersion.journey_id == Journey.id)
              & (JourneyVersion.version == Journey.live_version))
        .where(Journey.status == "live")
    )  # fmt: skip
    if workspace_id is not None:
        stmt = stmt.where(Journey.workspace_id == workspace_id)
    return [(j, dfn) for j, dfn in session.execute(stmt)]


def _matches(trigger: dict[str, Any], kind: str, payload: dict[str, Any]) -> bool:
    if trigger.get("type") != kind:
        return False
    if kind in ("segment_entered", "segment_exited"):
        return bool(trigger.get("segment_id") == payload.get("segment_id"))
    if kind in ("tag_added", "tag_removed"):
        return trigger.get("tag_id") in (payload.get("tag_ids") or [])
    if kind in ("community_joined", "community_left", "screening_answered"):
        wanted = trigger.get("community_id")
        return wanted is None or wanted == payload.get("community_id")
    return False


def _trigger_kind(topic: str, payload: dict[str, Any]) -> str | None:
    """The trigger type a bus change can start journeys of (None: none)."""
    if topic == TAGS_TOPIC:
        return "tag_added" if payload.get("change") == "added" else "tag_removed"
    return TOPIC_TRIGGERS.get(topic)


def apply_topic(
    session: Session, topic: str, payload: dict[str, Any], now: datetime, key: str = ""
) -> int:
    """Enrol the people a bus change names in every live journey it triggers. ``key`` names
    the change (the outbox row): an every-time journey's entry key includes it, so applying
    one change twice enrols once."""
    ws = payload.get("workspace_id")
    if not ws:
        return 0
    kind = _trigger_kind(topic, payload)
    if kind is None:
        return 0
    contacts = list(payload.get("contact_ids") or [])
    if payload.get("contact_id"):
        contacts.append(payload["contact_id"])
    if not contacts:
        return 0
    entered = 0
    occurrence = (
        key
        or "|".join(str(payload.get(k, "")) for k in ("segment_id", "version", "change"))
        + f"|{now.isoformat()}"
    )
    for journey, definition in _live_definitions(session, ws):
        if _matches(definition.get("trigger") or {}, kind, payload):
            got = service.enrol(session, journey, contacts, trigger=f"{kind}",
                                trigger_key=f"{topic}:{occurrence}", now=now)  # fmt: skip
            entered += got.entered
    return entered


class TriggerOutbox:
    """The bus-trigger writer in ``kit.bus.publish_after_commit``: a trigger topic of a
    workspace with a live journey becomes a ``journey_trigger_outbox`` row in the
    publisher's transaction. Chained in front of the writer already installed (the webhook
    outbox), which it calls first."""

    def __init__(self, inner: OutboxWriter | None = None) -> None:
        self.inner = inner

    def wants(self, session: Session, topic: str) -> bool:
        return topic in TRIGGER_TOPICS or (
            self.inner is not None and self.inner.wants(session, topic)
        )

    def __call__(self, session: Session, topic: str, payload: Any) -> None:
        if self.inner is not None:
            self.inner(session, topic, payload)
        if topic not in TRIGGER_TOPICS or not isinstance(payload, dict):
            return
        ws = payload.get("workspace_id")
        kind = _trigger_kind(topic, payload)
        if not ws or kind is None:
            return
        # Only when a live journey of the workspace starts on this kind of change (its live
        # version's trigger type, what ``apply_topic`` matches first): a journey step that
        # tags people, in a workspace whose live journeys start otherwise, writes no row
        # for the triggers thread to read and delete (decision 0054).
        live = session.scalar(
            select(Journey.id)
            .join(JourneyVersion, (JourneyVersion.journey_id == Journey.id)
                  & (JourneyVersion.version == Journey.live_version))
            .where(Journey.workspace_id == ws, Journey.status == "live",
                   JourneyVersion.definition[("trigger", "type")].as_string() == kind)
            .limit(1)
        )  # fmt: skip
        if live is None:
            return  # nobody would be enrolled: write nothing
        session.execute(
            insert(JourneyTriggerOutbox).values(
                id=new_id("jto"), workspace_id=ws, topic=topic, payload=payload,
                created_at=utcnow(),
            )
        )  # fmt: skip


def install(sessions: sessionmaker[Session]) -> None:
    """Chain :class:`TriggerOutbox` into every session the factory makes (server, workers
    and CLI alike); idempotent."""
    info = sessions.kw.setdefault("info", {})
    current = info.get(OUTBOX_KEY)
    if not isinstance(current, TriggerOutbox):
        info[OUTBOX_KEY] = TriggerOutbox(current)


def drain_outbox(
    sessions: sessionmaker[Session], now: datetime | None = None, *, limit: int = 200
) -> int:
    """Apply the oldest outbox rows and delete them, in one transaction per chunk (each row
    in a savepoint: a row that fails stays, logged, and is tried again next time). On
    PostgreSQL concurrent drainers skip each other's rows."""
    entered = 0
    while True:
        with session_scope(sessions) as session:
            rows = list(
                session.execute(
                    select(JourneyTriggerOutbox.id, JourneyTriggerOutbox.topic,
                           JourneyTriggerOutbox.payload)
                    .order_by(JourneyTriggerOutbox.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )  # fmt: skip
            done: list[str] = []
            for row_id, topic, payload in rows:
                try:
                    with session.begin_nested():
                        entered += apply_topic(session, topic, payload, now or utcnow(), row_id)
                    done.append(row_id)
                except Exception:
                    log.exception("journey trigger %s (%s) failed; kept", row_id, topic)
            if done:
                session.execute(
                    delete(JourneyTriggerOutbox).where(JourneyTriggerOutbox.id.in_(done))
                )
        if len(rows) < limit or not done:
            return entered


# -- events ------------------------------------------------------------------------------------


def _where_ok(where: dict[str, Any] | None, properties: dict[str, Any] | None) -> bool:
    if not where:
        return True
    props = properties or {}
    return all(props.get(k) == v for k, v in where.items())


class JourneyEvents:
    """The hooks consumer: event triggers, ``wait_event`` steps and goal conversions."""

    name = "journeys"
    events: frozenset[str] = frozenset()
    select_needs = "user_id"  # select() is false without one (events/hooks.py)

    def __init__(self) -> None:
        # Names some live journey cares about; refreshed by :meth:`refresh` (the journeys
        # thread, and after a publish in this process). ``select`` runs on the request path.
        self.names: frozenset[str] = frozenset()

    def refresh(self, session: Session) -> None:
        names: set[str] = set()
        for _journey, definition in _live_definitions(session):
            trigger = definition.get("trigger") or {}
            if trigger.get("type") == "event":
                names.add(trigger["event"])
            if definition.get("goal_event"):
                names.add(definition["goal_event"])
            names.update(
                s["event"] for s in definition.get("steps", []) if s.get("type") == "wait_event"
            )
        # Runs of paused journeys and of older versions wait too.
        from liebian.automation.models import JourneyStepExecution as E

        names.update(
            n
            for (n,) in session.execute(
                select(E.waiting_event)
                .where(E.waiting_event.is_not(None), E.status == "pending")
                .distinct()
            )
            if n
        )
        self.names = frozenset(names)

    def select(self, event: Any) -> bool:
        return event.get("event") in self.names and bool(event.get("user_id"))

    def __call__(self, session: Session, events: Sequence[Any]) -> None:
        # A selecting consumer is handed every fresh event of the batch: keep only ours.
        names = self.names
        mine = [e for e in events if e.event in names]
        if mine:
            apply_events(session, mine)


def apply_events(session: Session, events: Iterable[Any], now: datetime | None = None) -> int:
    """Hook events → enrolments, matched waits, conversions (inside the caller's transaction)."""
    from liebian.automation.models import JourneyRun
    from liebian.contacts.models import Contact

    now = now or utcnow()
    by_ws: dict[str, list[Any]] = {}
    for e in events:
        if e.user_id:
            by_ws.setdefault(e.workspace_id, []).append(e)
    entered = 0
    for ws, items in by_ws.items():
        journeys = _live_definitions(session, ws)
        users = list({e.user_id for e in items})
        ids = dict(session.execute(select(Contact.external_id, Contact.id).where(
            Contact.workspace_id == ws, Contact.external_id.in_(users))).all())  # fmt: skip
        # Waits first (one UPDATE per event name): a run an event starts below is not
        # matched by that same event.
        waits: dict[str, set[str]] = {}
        for e in items:
            if e.user_id in ids:
                waits.setdefault(e.event, set()).add(ids[e.user_id])
        for name, who in waits.items():
            repository.match_waiting(session, ws, name, sorted(who), now)
        for e in items:
            contact = ids.get(e.user_id)
            if contact is None:
                continue
            for journey, definition in journeys:
                trigger = definition.get("trigger") or {}
                if trigger.get("type") == "event" and trigger.get("event") == e.event \
                        and _where_ok(trigger.get("where"), e.properties):  # fmt: skip
                    got = service.enrol(session, journey, [contact], trigger=f"event:{e.event}",
                                        trigger_key=e.event_id, now=now)  # fmt: skip
                    entered += got.entered
                if definition.get("goal_event") == e.event:
                    session.execute(
                        update(JourneyRun)
                        .where(JourneyRun.journey_id == journey.id,
                               JourneyRun.contact_id == contact,
                               JourneyRun.converted_at.is_(None))
                        .values(converted_at=now)
                        .execution_options(synchronize_session=False)
                    )  # fmt: skip
    return entered


# -- periodic scans ------------------------------------------------------------------------------


def scan(session: Session, now: datetime, event_store: Any = None) -> int:
    """Date-attribute and inactivity triggers of every live journey (idempotent per day:
    the trigger key is the day, so a second scan the same day enrols nobody again)."""
    entered = 0
    for journey, definition in _live_definitions(session):
        trigger = definition.get("trigger") or {}
        if trigger.get("type") == "date_attribute":
            entered += _scan_dates(session, journey, trigger, now)
        elif trigger.get("type") == "inactivity":
            entered += _scan_inactive(session, journey, trigger, now, event_store)
    return entered


def _scan_dates(session: Session, journey: Journey, trigger: dict[str, Any], now: datetime) -> int:
    from liebian.contacts.models import ContactAttribute

    zone = ZoneInfo(service.workspace_zone(session, journey.workspace_id))
    today = now.astimezone(zone).date()
    offset = int(trigger.get("offset_days") or 0)
    # "7 days before a birthday" = offset -7: today + 7 is the date we look for.
    target = today - timedelta(days=offset)
    yearly = bool(trigger.get("yearly", True))
    rows = session.execute(
        select(ContactAttribute.contact_id, ContactAttribute.value_date).where(
            ContactAttribute.workspace_id == journey.workspace_id,
            ContactAttribute.key == trigger["attribute"],
            ContactAttribute.value_date.is_not(None),
        )
    )
    contacts = [c for c, v in rows if _date_hits(_as_date(v), target, yearly)]
    if not contacts:
        return 0
    at = trigger.get("at")
    due = now
    if at:
        h, m = (int(x) for x in at.split(":"))
        due = max(now, datetime.combine(today, time(h, m), tzinfo=zone).astimezone(now.tzinfo))
    got = service.enrol(session, journey, contacts, trigger=f"date:{trigger['attribute']}",
                        trigger_key=f"date:{today.isoformat()}", now=now, due=due)  # fmt: skip
    return got.entered


def _as_date(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else value


def _date_hits(value: date, target: date, yearly: bool) -> bool:
    if not yearly:
        return value == target
    if (value.month, value.day) == (2, 29) and target.month == 2 and target.day == 28:
        try:
            date(target.year, 2, 29)
        except ValueError:
            return True  # a 29 February birthday counts on the 28th in other years
    return (value.month, value.day) == (target.month, target.day)


def _scan_inactive(
    session: Session, journey: Journey, trigger: dict[str, Any], now: datetime, store: Any
) -> int:
    from liebian.segments.evaluation import evaluate

    days = int(trigger["days"])
    cutoff = (now - timedelta(days=days)).isoformat()
    condition = {"type": "event_time", "event": trigger["event"], "which": "last",
                 "op": "before", "value": cutoff}  # fmt: skip
    try:
        contacts = sorted(evaluate(session, store, journey.workspace_id, condition, now=now))
    except Exception:
        log.exception("inactivity scan of journey %s failed", journey.id)
        return 0
    if not contacts:
        return 0
    day = now.date().isoformat()
    return service.enrol(session, journey, contacts, trigger=f"inactive:{trigger['event']}",
                         trigger_key=f"inactive:{day}", now=now).entered  # fmt: skip
