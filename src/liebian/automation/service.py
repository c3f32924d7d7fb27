"""Journeys: the rules. Check and version definitions, change state, enrol people.

A definition is edited as a draft; ``publish`` freezes it as the next version and new runs
start on it, while every run keeps the version it started on. Paused journeys keep their
runs (steps falling due wait, ``repository.claim`` skips them); archiving ends every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.automation import definition as d
from liebian.automation import repository
from liebian.automation.content import check_template, linked_slugs
from liebian.automation.models import Journey, JourneyVersion
from liebian.kit.clock import utcnow
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id


def workspace_zone(session: Session, workspace_id: str) -> str:
    from liebian.workspaces.models import Workspace

    zone = session.scalar(select(Workspace.timezone).where(Workspace.id == workspace_id))
    return zone or "Asia/Shanghai"


def check_definition(
    session: Session,
    workspace_id: str,
    data: Any,
    *,
    allow_private_urls: bool = False,
    require_reachable: bool = False,
    journey_id: str | None = None,
) -> dict[str, Any]:
    """The structure (definition.py), then everything it names must exist in the workspace:
    conditions (segments' checker), tags, segments, attributes, journeys, public webhook
    URLs, safe templates. Raises a 422 naming the field; returns the definition to store."""
    from liebian.contacts.models import AttributeDef, Tag
    from liebian.segments import service as segments
    from liebian.segments.conditions import ConditionInvalid
    from liebian.segments.models import Segment
    from liebian.webhooks.urls import check_url

    checked = d.check_definition(data, require_reachable=require_reachable)
    for path, cond in checked.conditions:
        try:
            segments.check_condition(session, workspace_id, cond)
        except ConditionInvalid as exc:
            inner = exc.path.removeprefix("$")
            raise Invalid(
                f"{path}{inner}: {exc.message.split(': ', 1)[-1]}",
                code=exc.code,
                details={"field": f"{path}{inner}"},
            ) from None
    if checked.tag_ids:
        known = set(
            session.scalars(
                select(Tag.id).where(
                    Tag.workspace_id == workspace_id,
                    Tag.id.in_([t for _, t in checked.tag_ids]),
                )
            )
        )
        for path, tag in checked.tag_ids:
            if tag not in known:
                raise d.bad(path, f"no tag {tag!r} in this workspace", "unknown_tag")
    for path, sid in checked.segment_ids:
        seg = session.get(Segment, sid)
        if seg is None or seg.workspace_id != workspace_id:
            raise d.bad(path, f"no segment {sid!r} in this workspace", "unknown_segment")
    attr_keys = frozenset(
        session.scalars(select(AttributeDef.key).where(AttributeDef.workspace_id == workspace_id))
    )
    for path, key in checked.attributes:
        if key not in attr_keys:
            raise d.bad(
                path,
                f"unknown attribute {key!r}: define it first (POST /api/v1/contact-attributes)",
                "unknown_attribute",
            )
    for path, jid in checked.journey_ids:
        other = repository.get(session, workspace_id, jid)
        if other is None:
            raise d.bad(path, f"no journey {jid!r} in this workspace", "unknown_journey")
        if jid == journey_id:
            raise d.bad(path, "a journey cannot enrol people in itself", "journey_loop")
    for path, cid in checked.campaign_ids:
        from liebian.campaigns.models import Campaign

        campaign = session.get(Campaign, cid)
        if campaign is None or campaign.workspace_id != workspace_id:
            raise d.bad(path, f"no campaign {cid!r} in this workspace", "unknown_campaign")
    for path, url in checked.urls:
        try:
            check_url(url, allow_private=allow_private_urls)
        except Invalid as exc:
            raise d.bad(path, exc.message, exc.code) from None
    named = set().union(*(linked_slugs(text) for _, text in checked.templates))
    link_slugs = frozenset(_workspace_slugs(session, workspace_id, named))
    for path, text in checked.templates:
        step_path = path.split(".", 1)[0]
        check_template(
            text,
            path,
            attr_keys,
            campaign=step_path in checked.campaign_steps,
            link_slugs=link_slugs,
        )
    _check_channels(session, workspace_id, checked.channel_ids)
    return checked.definition


def _workspace_slugs(session: Session, workspace_id: str, slugs: set[str]) -> list[str]:
    """Those of ``slugs`` that name a short link of the workspace."""
    if not slugs:
        return []
    from liebian.links.models import Link

    return list(
        session.scalars(
            select(Link.slug).where(Link.workspace_id == workspace_id, Link.slug.in_(slugs))
        )
    )


def _check_channels(session: Session, workspace_id: str, refs: list[tuple[str, str]]) -> None:
    """Channel ids must name a configured channel of the workspace."""
    if not refs:
        return
    from liebian.channels.models import Channel

    for path, cid in refs:
        channel = session.get(Channel, cid)
        if channel is None or channel.workspace_id != workspace_id:
            raise d.bad(path, f"no channel {cid!r} in this workspace", "unknown_channel")


# -- journeys ---------------------------------------------------------------------------------


def get(session: Session, workspace_id: str, journey_id: str) -> Journey:
    journey = repository.get(session, workspace_id, journey_id)
    if journey is None:
        raise NotFound(f"no journey {journey_id!r} in this workspace", code="journey_not_found")
    return journey


def _check_name(session: Session, workspace_id: str, name: str, own: str | None = None) -> str:
    value = name.strip()
    if not value or len(value) > 100:
        raise Invalid("name must be 1–100 characters", details={"field": "name"})
    other = repository.by_name(session, workspace_id, value)
    if other is not None and other.id != own:
        raise Conflict(
            f"a journey named {value!r} exists already; pick another name",
            code="journey_name_taken",
            details={"field": "name"},
        )
    return value


def create(
    session: Session,
    workspace_id: str,
    name: str,
    definition: Any,
    *,
    allow_private_urls: bool = False,
    template: str | None = None,
) -> Journey:
    value = _check_name(session, workspace_id, name)
    journey_id = new_id("jrn")
    draft = check_definition(
        session,
        workspace_id,
        definition,
        allow_private_urls=allow_private_urls,
        journey_id=journey_id,
    )
    now = utcnow()
    journey = Journey(
        id=journey_id,
        workspace_id=workspace_id,
        name=value,
        status="draft",
        draft=draft,
        template=template,
        created_at=now,
        updated_at=now,
    )
    session.add(journey)
    session.flush()
    return journey


def update(
    session: Session,
    journey: Journey,
    *,
    name: str | None = None,
    definition: Any = None,
    allow_private_urls: bool = False,
) -> Journey:
    if journey.status == "archived":
        raise Conflict(
            "an archived journey cannot change; duplicate it instead", code="journey_archived"
        )
    if name is not None:
        journey.name = _check_name(session, journey.workspace_id, name, journey.id)
    if definition is not None:
        journey.draft = check_definition(
            session,
            journey.workspace_id,
            definition,
            allow_private_urls=allow_private_urls,
            journey_id=journey.id,
        )
    journey.updated_at = utcnow()
    session.flush()
    return journey


def publish(session: Session, journey: Journey, *, allow_private_urls: bool = False) -> int:
    """Freeze the draft as the next version and go live; running people stay on theirs."""
    if journey.status == "archived":
        raise Conflict("an archived journey cannot be published", code="journey_archived")
    definition = check_definition(
        session,
        journey.workspace_id,
        journey.draft,
        allow_private_urls=allow_private_urls,
        require_reachable=True,
        journey_id=journey.id,
    )
    number = (journey.live_version or 0) + 1
    latest = session.scalar(
        select(JourneyVersion.version)
        .where(JourneyVersion.journey_id == journey.id)
        .order_by(JourneyVersion.version.desc())
        .limit(1)
    )
    number = max(number, (latest or 0) + 1)
    now = utcnow()
    session.add(
        JourneyVersion(
            journey_id=journey.id, version=number, definition=definition, published_at=now
        )
    )
    journey.live_version = number
    journey.status = "live"
    journey.updated_at = now
    session.flush()
    return number


def pause(session: Session, journey: Journey) -> Journey:
    if journey.status != "live":
        raise Conflict(
            f"only a live journey can be paused (this one is {journey.status})",
            code="journey_not_live",
        )
    journey.status = "paused"
    journey.updated_at = utcnow()
    return journey


def resume(session: Session, journey: Journey) -> Journey:
    if journey.status != "paused":
        raise Conflict(
            f"only a paused journey can be resumed (this one is {journey.status})",
            code="journey_not_paused",
        )
    journey.status = "live"
    journey.updated_at = utcnow()
    return journey


def archive(session: Session, journey: Journey, now: datetime | None = None) -> int:
    """End the journey: every active run exits (reason ``archived``)."""
    journey.status = "archived"
    journey.updated_at = now or utcnow()
    session.flush()
    return repository.exit_active_runs(session, journey.id, now or utcnow(), "archived")


def definition_of(session: Session, journey_id: str, version: int) -> dict[str, Any]:
    row = repository.version(session, journey_id, version)
    if row is None:
        raise NotFound(f"journey {journey_id} has no version {version}")
    return row.definition


# -- enrolment --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrolled:
    entered: int
    skipped: int


def enrol(
    session: Session,
    journey: Journey,
    contact_ids: Sequence[str],
    *,
    trigger: str,
    trigger_key: str | None = None,
    now: datetime | None = None,
    due: datetime | None = None,
) -> Enrolled:
    """Start ``contact_ids`` on the live version, as the entry rule allows: once ever (the
    contact is the entry key), every time (the trigger occurrence is), or once per N days; never
    while the contact has an active run of this journey. Each new run's first step is due at
    ``due`` (default now). Set-based: a segment of 100k contacts is a few statements a chunk."""
    if journey.status != "live" or journey.live_version is None:
        raise Conflict(
            f"only a live journey takes people (this one is {journey.status})",
            code="journey_not_live",
        )
    now = now or utcnow()
    definition = definition_of(session, journey.id, journey.live_version)
    entry = definition.get("entry") or {"mode": "once"}
    first = definition["steps"][0]
    contacts = list(dict.fromkeys(contact_ids))
    occurrence = trigger_key or new_id("trg")
    if entry["mode"] == "once_per_days":
        last = repository.latest_entries(session, journey.id, contacts)
        window = timedelta(days=int(entry["days"]))
        contacts = [c for c in contacts if c not in last or now - last[c] >= window]
    rows = [
        {
            "id": new_id("jrr"),
            "workspace_id": journey.workspace_id,
            "journey_id": journey.id,
            "version": journey.live_version,
            "contact_id": c,
            "entry_key": c if entry["mode"] == "once" else f"{c}:{occurrence}"[:200],
            "status": "active",
            "current_step": first["id"],
            "trigger": trigger[:200],
            "exit_reason": None,
            "entered_at": now,
            "finished_at": None,
            "converted_at": None,
        }
        for c in contacts
    ]
    created = repository.insert_runs(session, rows)
    start = due or now
    repository.insert_steps(
        session,
        [
            repository.step_row(
                run_id,
                journey.workspace_id,
                journey.id,
                first,
                _first_due(first, start),
                now,
                first.get("event") if first["type"] == "wait_event" else None,
            )
            for run_id, _ in created
        ],
    )
    if created:
        repository.wake_after_commit(session)
    return Enrolled(entered=len(created), skipped=len(contact_ids) - len(created))


def _first_due(step: dict[str, Any], start: datetime) -> datetime:
    if step["type"] == "wait_event":
        return start + d.duration(step["timeout"], "timeout")
    return start


def live_journeys(session: Session, workspace_id: str | None = None) -> list[Journey]:
    stmt = select(Journey).where(Journey.status == "live")
    if workspace_id is not None:
        stmt = stmt.where(Journey.workspace_id == workspace_id)
    return list(session.scalars(stmt))


def resolve_audience(
    session: Session,
    workspace_id: str,
    *,
    contact_ids: Sequence[str] | None = None,
    external_ids: Sequence[str] | None = None,
    segment_id: str | None = None,
) -> list[str]:
    """Contact ids for a manual enrolment; unknown ids are a 422 naming them."""
    from liebian.contacts.models import Contact

    if segment_id is not None:
        from liebian.segments import service as segments

        where = segments.member_filter(session, workspace_id, segment_id)
        return list(session.scalars(select(Contact.id).where(where)))
    if external_ids:
        wanted = list(dict.fromkeys(external_ids))
        found = dict(
            session.execute(
                select(Contact.external_id, Contact.id).where(
                    Contact.workspace_id == workspace_id, Contact.external_id.in_(wanted)
                )
            ).all()
        )
        missing = [e for e in wanted if e not in found]
        if missing:
            raise Invalid(
                f"no contact with external id {missing[0]!r} in this workspace",
                code="unknown_contact",
                details={"field": "external_ids", "missing": missing[:20]},
            )
        return [found[e] for e in wanted]
    wanted = list(dict.fromkeys(contact_ids or []))
    known = set(
        session.scalars(
            select(Contact.id).where(Contact.workspace_id == workspace_id, Contact.id.in_(wanted))
        )
    )
    missing = [c for c in wanted if c not in known]
    if missing:
        raise Invalid(
            f"no contact {missing[0]!r} in this workspace",
            code="unknown_contact",
            details={"field": "contact_ids", "missing": missing[:20]},
        )
    return wanted


def from_template(
    session: Session,
    workspace_id: str,
    template: str,
    options: Any,
    *,
    name: str | None = None,
    publish_now: bool = False,
    allow_private_urls: bool = False,
) -> Journey:
    """A journey from a template in one step (a draft, or live with ``publish_now``). A
    template that needs a date attribute (birthday) defines it when missing."""
    from liebian.automation.templates import build
    from liebian.contacts.models import AttributeDef

    default_name, definition = build(template, options)
    trigger = definition["trigger"]
    if trigger["type"] == "date_attribute":
        key = trigger["attribute"]
        if session.get(AttributeDef, (workspace_id, key)) is None:
            from liebian.contacts.attributes import define

            define(session, workspace_id, key, "date", "生日" if key == "birthday" else key)
    journey = create(session, workspace_id, name or default_name, definition,
                     allow_private_urls=allow_private_urls, template=template)  # fmt: skip
    if publish_now:
        publish(session, journey, allow_private_urls=allow_private_urls)
    return journey
