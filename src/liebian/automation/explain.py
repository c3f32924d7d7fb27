"""Explain and test: where a person is in which journeys and why, a dry run of a journey on
one contact (nothing sent or written), and per-step stats as a funnel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liebian.automation import definition as d
from liebian.automation import service
from liebian.automation.content import MissingField, linked_slugs, render_content
from liebian.automation.models import Journey, JourneyRun, JourneyStepExecution
from liebian.kit.clock import utcnow
from liebian.kit.errors import Invalid

E = JourneyStepExecution


def _why(e: JourneyStepExecution, journey: Journey, now: datetime) -> str | None:
    """Why a step has not run (yet), in words an operator reads."""
    if e.status == "pending":
        if journey.status == "paused":
            return "journey_paused"
        if e.result and e.result.startswith("deferred:"):
            return e.result  # deferred:quiet_hours / frequency_cap / monthly_cap
        if e.result and e.result.startswith("retry:"):
            return e.result
        if e.waiting_event and not e.event_matched:
            return f"waiting_for_event:{e.waiting_event}"
        if e.due_at > now:
            return "scheduled"
        return "due"
    if e.status == "skipped":
        return e.result
    if e.status == "done" and e.result and e.result.startswith("suppressed:"):
        return e.result  # suppressed:opted_out …
    if e.status == "failed":
        return e.result
    return None


def explain_contact(
    session: Session, workspace_id: str, contact_id: str, now: datetime | None = None
) -> list[dict[str, Any]]:
    now = now or utcnow()
    runs = list(
        session.scalars(
            select(JourneyRun)
            .where(JourneyRun.workspace_id == workspace_id, JourneyRun.contact_id == contact_id)
            .order_by(JourneyRun.entered_at.desc())
            .limit(100)
        )
    )
    out = []
    for run in runs:
        journey = session.get(Journey, run.journey_id)
        assert journey is not None
        steps = list(session.scalars(select(E).where(E.run_id == run.id).order_by(E.created_at)))
        out.append({
            "run_id": run.id, "journey_id": journey.id, "journey_name": journey.name,
            "journey_status": journey.status, "version": run.version, "status": run.status,
            "current_step": run.current_step, "trigger": run.trigger,
            "entered_at": run.entered_at, "finished_at": run.finished_at,
            "exit_reason": run.exit_reason, "converted_at": run.converted_at,
            "steps": [{
                "step_id": e.step_id, "type": e.step_type, "status": e.status,
                "result": e.result, "due_at": e.due_at, "started_at": e.started_at,
                "finished_at": e.finished_at, "attempts": e.attempts,
                "why_not": _why(e, journey, now), "detail": e.detail,
            } for e in steps],
        })  # fmt: skip
    return out


def _context(session: Session, cipher: Any, contact_id: str, journey_name: str) -> dict[str, Any]:
    from liebian.contacts.attributes import values_of
    from liebian.contacts.models import Contact, ContactTag, Tag

    contact = session.get(Contact, contact_id)
    assert contact is not None
    fields: dict[str, Any] = {"id": contact.id, "external_id": contact.external_id,
                              "orders_count": contact.orders_count}  # fmt: skip
    nickname = cipher.decrypt(contact.nickname_enc) if cipher is not None else None
    for k, v in (("nickname", nickname), ("first_channel", contact.first_channel),
                 ("last_channel", contact.last_channel)):  # fmt: skip
        if v:
            fields[k] = v
    attributes = {k: v for k, v in values_of(session, contact.workspace_id, contact.id).items()
                  if v is not None}  # fmt: skip
    tags = list(session.scalars(select(Tag.name).join(ContactTag, ContactTag.tag_id == Tag.id)
                                .where(ContactTag.contact_id == contact.id)))  # fmt: skip
    return {"contact": fields, "attributes": attributes, "tags": tags,
            "journey": {"name": journey_name}}  # fmt: skip


def _campaign(
    session: Session, workspace_id: str, campaign_id: str, contact_id: str, base_url: str,
    joins_on_the_way: bool,
) -> dict[str, Any] | None:  # fmt: skip
    from liebian.campaigns.models import Campaign, Participant
    from liebian.links.domains import public_base_url

    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return None
    code = session.scalar(select(Participant.invite_code).where(
        Participant.campaign_id == campaign_id, Participant.contact_id == contact_id))  # fmt: skip
    if code is None and not joins_on_the_way:
        return None
    base = public_base_url(session, workspace_id, base_url).rstrip("/")
    shown = code or "（加入活动后生成的邀请码）"
    return {"name": campaign.name, "invite_code": shown,
            "invite_url": f"{base}/p/{campaign_id}/{shown}",
            "poster_url": f"{base}/p/{campaign_id}/me/poster"}  # fmt: skip


def _links(
    session: Session, workspace_id: str, step: dict[str, Any], context: dict[str, Any],
    base_url: str, secret: bytes | None,
) -> dict[str, str]:  # fmt: skip
    """The short links the step's content names, as the executor fills them in."""
    from liebian.kit.crypto import person_link_token
    from liebian.links.domains import public_base_url
    from liebian.links.models import Link

    named = set().union(*(linked_slugs(v) for v in step["content"].values() if isinstance(v, str)))
    if not named:
        return {}
    slugs = session.scalars(
        select(Link.slug).where(Link.workspace_id == workspace_id, Link.slug.in_(named))
    ).all()
    base = public_base_url(session, workspace_id, base_url).rstrip("/")
    user_id = context["contact"].get("external_id")
    suffix = f"?lb_u={person_link_token(user_id, secret)}" if user_id and secret else ""
    return {slug: f"{base}/{slug}{suffix}" for slug in slugs}


def dry_run(
    session: Session,
    event_store: Any,
    cipher: Any,
    journey: Journey,
    contact_id: str,
    *,
    use_draft: bool = False,
    now: datetime | None = None,
    base_url: str = "",
    secret: bytes | None = None,
) -> dict[str, Any]:
    """The path ``contact_id`` would take now, with each message rendered: branches and the
    exit condition evaluated on the contact's data, waits added up, ``wait_event`` steps
    assumed to time out. Nothing is sent or written. A send step naming a campaign shows the
    person's invite link (a placeholder when an earlier step of the path joins them)."""
    from liebian.segments.evaluation import evaluate

    now = now or utcnow()
    if use_draft or journey.live_version is None:
        definition = journey.draft
    else:
        definition = service.definition_of(session, journey.id, journey.live_version)
    steps = d.step_map(definition)
    context = _context(session, cipher, contact_id, journey.name)
    zone = service.workspace_zone(session, journey.workspace_id)

    def holds(condition: Any) -> bool:
        return contact_id in evaluate(session, event_store, journey.workspace_id, condition,
                                      [contact_id], now=now)  # fmt: skip

    exit_now = bool(definition.get("exit")) and holds(definition["exit"])
    path: list[dict[str, Any]] = []
    joined: set[str] = set()  # campaigns an earlier step of this path joins them to
    at = now
    current: str | None = definition["steps"][0]["id"]
    while current is not None and current != d.END and len(path) < d.MAX_STEPS:
        step, following = steps[current]
        entry: dict[str, Any] = {"step_id": current, "type": step["type"], "at": at}
        nxt = d.next_of(step, following)
        kind = step["type"]
        if kind == "wait":
            if "duration" in step:
                at = at + d.duration(step["duration"], "duration")
            else:
                t, days = d.until_spec(step["until"], "until")
                at = d.wait_until(at, t, days, zone)
            entry["until"] = at
        elif kind == "wait_event":
            entry["note"] = f"waits for {step['event']}; shown as if it times out"
            at = at + d.duration(step["timeout"], "timeout")
            nxt = d._target(step, "timeout_next", following)
        elif kind == "branch":
            yes = holds(step["condition"])
            entry["branch"] = "then" if yes else "else"
            nxt = d._target(step, "then" if yes else "else", following)
        elif kind == "split":
            pick = d.split_pick(f"dry:{contact_id}", current, step["paths"])
            entry["path"] = pick
            p = step["paths"][pick]
            nxt = p["next"] if p.get("next") is not None else (d.END if "next" in p else nxt)
        elif kind == "enrol_campaign":
            joined.add(step["campaign_id"])
        elif kind == "send":
            context.pop("campaign", None)
            if step.get("campaign_id"):
                found = _campaign(session, journey.workspace_id, step["campaign_id"], contact_id,
                                  base_url, step["campaign_id"] in joined)  # fmt: skip
                if found is not None:
                    context["campaign"] = found
            context["links"] = _links(session, journey.workspace_id, step, context, base_url,
                                      secret)  # fmt: skip
            try:
                entry["message"] = render_content(step["content"], context)
            except MissingField as exc:
                entry["problem"] = f"missing_field: {exc} (would not be sent)"
            entry["channel_id"] = step["channel_id"]
        elif kind == "grant_reward":
            entry["reward"] = {"kind": step["kind"], "amount": step["amount"],
                               "name": step.get("name", "")}  # fmt: skip
        path.append(entry)
        current = nxt
    return {"journey_id": journey.id, "contact_id": contact_id, "would_exit": exit_now,
            "steps": path}  # fmt: skip


def stats(session: Session, journey: Journey) -> dict[str, Any]:
    """Entered, active, completed, exited by reason, converted; per step of the live (or
    draft) definition: reached, done, failed, skipped, pending, and results."""
    runs = dict(session.execute(
        select(JourneyRun.status, func.count()).where(JourneyRun.journey_id == journey.id)
        .group_by(JourneyRun.status)).all())  # fmt: skip
    reasons = dict(session.execute(
        select(JourneyRun.exit_reason, func.count())
        .where(JourneyRun.journey_id == journey.id, JourneyRun.status == "exited")
        .group_by(JourneyRun.exit_reason)).all())  # fmt: skip
    converted = session.scalar(select(func.count()).select_from(JourneyRun).where(
        JourneyRun.journey_id == journey.id, JourneyRun.converted_at.is_not(None))) or 0  # fmt: skip
    rows = session.execute(
        select(E.step_id, E.status, E.result, func.count())
        .where(E.journey_id == journey.id)
        .group_by(E.step_id, E.status, E.result)
    ).all()
    per: dict[str, dict[str, Any]] = {}
    for step_id, status, result, n in rows:
        s = per.setdefault(step_id, {"reached": 0, "done": 0, "failed": 0, "skipped": 0,
                                     "pending": 0, "results": {}})  # fmt: skip
        s["reached"] += n
        s[status] = s.get(status, 0) + n
        label = (result or status).split(":")[0] if status != "done" else (result or "done")
        if label.startswith("waited until"):
            label = "waited"
        s["results"][label[:60]] = s["results"].get(label[:60], 0) + n
    if journey.live_version is not None:
        definition = service.definition_of(session, journey.id, journey.live_version)
    else:
        definition = journey.draft
    entered = sum(runs.values())
    steps = []
    for step in definition.get("steps", []):
        s = per.pop(step["id"], {"reached": 0, "done": 0, "failed": 0, "skipped": 0,
                                 "pending": 0, "results": {}})  # fmt: skip
        s.update(step_id=step["id"], type=step["type"], label=step.get("label"),
                 conversion=round(s["reached"] / entered, 4) if entered else 0.0)  # fmt: skip
        steps.append(s)
    # Steps of older versions no longer in the live definition.
    for step_id, s in per.items():
        s.update(step_id=step_id, type="(older version)", label=None,
                 conversion=round(s["reached"] / entered, 4) if entered else 0.0)  # fmt: skip
        steps.append(s)
    return {"journey_id": journey.id, "entered": entered, "active": runs.get("active", 0),
            "completed": runs.get("completed", 0), "exited": runs.get("exited", 0),
            "exit_reasons": {k or "": v for k, v in reasons.items()}, "converted": converted,
            "steps": steps}  # fmt: skip


def contact_ref(session: Session, workspace_id: str, ref: str) -> str:
    """A contact id or external id → the contact id."""
    from liebian.contacts.models import Contact

    by_id = session.get(Contact, ref)
    if by_id is not None and by_id.workspace_id == workspace_id:
        return by_id.id
    found = session.scalar(select(Contact.id).where(Contact.workspace_id == workspace_id,
                                                    Contact.external_id == ref))  # fmt: skip
    if found is None:
        raise Invalid(f"no contact {ref!r} in this workspace (give its id or external id)",
                      code="unknown_contact", details={"field": "contact"})  # fmt: skip
    return found
