"""HTTP for journeys (旅程): parse, authorize, call the service, shape the reply."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.automation import service
from liebian.automation.models import Journey
from liebian.automation.schemas import (
    ERRORS,
    ArchiveOut,
    DryRunIn,
    DryRunOut,
    EnrolIn,
    EnrolOut,
    ExplainOut,
    FromTemplateIn,
    JourneyCreate,
    JourneyOut,
    JourneyUpdate,
    PublishOut,
    StatsOut,
    TemplateOut,
)
from liebian.kit.auth import Principal, Role
from liebian.kit.errors import Invalid

router = APIRouter(tags=["journeys"], responses=ERRORS)

_READ, _WRITE = "read", "write"


def authorize(principal: Principal, action: str) -> None:
    """The one place journeys decide who may do what: analysts read, operators change."""
    principal.require(Role.analyst if action == _READ else Role.operator)


def to_out(j: Journey) -> JourneyOut:
    return JourneyOut(
        id=j.id,
        name=j.name,
        status=j.status,
        live_version=j.live_version,
        draft=j.draft,
        template=j.template,
        created_at=j.created_at,
        updated_at=j.updated_at,
    )


@router.post("/journeys", response_model=JourneyOut, status_code=201)
def create_journey(
    body: JourneyCreate, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> JourneyOut:
    """A draft journey; publish it to start taking people."""
    authorize(principal, _WRITE)
    journey = service.create(
        session,
        principal.workspace_id,
        body.name,
        body.definition,
        allow_private_urls=runtime.settings.allow_private_webhooks,
    )
    return to_out(journey)


@router.get("/journeys", response_model=list[JourneyOut])
def list_journeys(principal: PrincipalDep, session: SessionDep) -> list[JourneyOut]:
    authorize(principal, _READ)
    rows = session.scalars(
        select(Journey)
        .where(Journey.workspace_id == principal.workspace_id)
        .order_by(Journey.created_at.desc())
        .limit(500)
    )
    return [to_out(j) for j in rows]


@router.get("/journey-templates", response_model=list[TemplateOut])
def list_templates(principal: PrincipalDep) -> list[TemplateOut]:
    """Ready journeys to start in one step (POST /journeys/from-template)."""
    authorize(principal, _READ)
    from liebian.automation.templates import TEMPLATES, Options

    out = []
    for tid, (name, make) in TEMPLATES.items():
        definition = make(Options(channel_id="chn_example"))
        out.append(TemplateOut(id=tid, name=name, description=(make.__doc__ or "").strip(),
                               trigger=definition["trigger"], steps=len(definition["steps"])))  # fmt: skip
    return out


@router.post("/journeys/from-template", response_model=JourneyOut, status_code=201)
def create_from_template(
    body: FromTemplateIn, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> JourneyOut:
    authorize(principal, _WRITE)
    from liebian.automation.templates import Options

    options = Options(channel_id=body.channel_id, coupon_amount=body.coupon_amount,
                      reward_amount=body.reward_amount, consultant=body.consultant)  # fmt: skip
    journey = service.from_template(
        session, principal.workspace_id, body.template, options, name=body.name,
        publish_now=body.publish, allow_private_urls=runtime.settings.allow_private_webhooks,
    )  # fmt: skip
    return to_out(journey)


@router.get("/journeys/explain", response_model=ExplainOut)
def explain_contact(contact: str, principal: PrincipalDep, session: SessionDep) -> ExplainOut:
    """Which journeys a contact is in, at which step, what ran when with what result, and why
    a step has not run (scheduled, waiting for an event, quiet hours, paused, exited…)."""
    authorize(principal, _READ)
    from liebian.automation import explain

    contact_id = explain.contact_ref(session, principal.workspace_id, contact)
    runs = explain.explain_contact(session, principal.workspace_id, contact_id)
    return ExplainOut.model_validate({"contact_id": contact_id, "runs": runs})


@router.get("/journeys/{journey_id}", response_model=JourneyOut)
def get_journey(journey_id: str, principal: PrincipalDep, session: SessionDep) -> JourneyOut:
    authorize(principal, _READ)
    return to_out(service.get(session, principal.workspace_id, journey_id))


@router.patch("/journeys/{journey_id}", response_model=JourneyOut)
def update_journey(
    journey_id: str,
    body: JourneyUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> JourneyOut:
    """Edit the draft (and name); running people are not affected until a publish, and even
    then keep the version they started on."""
    authorize(principal, _WRITE)
    journey = service.get(session, principal.workspace_id, journey_id)
    service.update(
        session,
        journey,
        name=body.name,
        definition=body.definition,
        allow_private_urls=runtime.settings.allow_private_webhooks,
    )
    return to_out(journey)


@router.post("/journeys/{journey_id}/publish", response_model=PublishOut)
def publish_journey(
    journey_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> PublishOut:
    authorize(principal, _WRITE)
    journey = service.get(session, principal.workspace_id, journey_id)
    version = service.publish(
        session, journey, allow_private_urls=runtime.settings.allow_private_webhooks
    )
    return PublishOut(id=journey.id, version=version, status=journey.status)


@router.post("/journeys/{journey_id}/pause", response_model=JourneyOut)
def pause_journey(journey_id: str, principal: PrincipalDep, session: SessionDep) -> JourneyOut:
    """Steps falling due while paused wait; nobody new enters."""
    authorize(principal, _WRITE)
    return to_out(service.pause(session, service.get(session, principal.workspace_id, journey_id)))


@router.post("/journeys/{journey_id}/resume", response_model=JourneyOut)
def resume_journey(journey_id: str, principal: PrincipalDep, session: SessionDep) -> JourneyOut:
    authorize(principal, _WRITE)
    journey = service.get(session, principal.workspace_id, journey_id)
    return to_out(service.resume(session, journey))


@router.post("/journeys/{journey_id}/archive", response_model=ArchiveOut)
def archive_journey(journey_id: str, principal: PrincipalDep, session: SessionDep) -> ArchiveOut:
    """End the journey; every active run exits."""
    authorize(principal, _WRITE)
    journey = service.get(session, principal.workspace_id, journey_id)
    exited = service.archive(session, journey)
    return ArchiveOut(id=journey.id, status=journey.status, runs_exited=exited)


@router.post("/journeys/{journey_id}/enrol", response_model=EnrolOut)
def enrol_contacts(
    journey_id: str, body: EnrolIn, principal: PrincipalDep, session: SessionDep
) -> EnrolOut:
    """Start people on the live version by hand: contact ids, external ids or a segment's
    members. The entry rule decides who may enter again."""
    authorize(principal, _WRITE)
    journey = service.get(session, principal.workspace_id, journey_id)
    given = [x for x in (body.contact_ids, body.external_ids, body.segment_id) if x]
    if len(given) != 1:
        raise Invalid(
            "give exactly one of contact_ids, external_ids or segment_id",
            code="invalid_enrolment",
            details={"field": "contact_ids"},
        )
    contacts = service.resolve_audience(
        session,
        principal.workspace_id,
        contact_ids=body.contact_ids,
        external_ids=body.external_ids,
        segment_id=body.segment_id,
    )
    got = service.enrol(session, journey, contacts, trigger="manual")
    return EnrolOut(entered=got.entered, skipped=got.skipped)


@router.post("/journeys/{journey_id}/dry-run", response_model=DryRunOut)
def dry_run(
    journey_id: str, body: DryRunIn, principal: PrincipalDep, session: SessionDep,
    runtime: RuntimeDep,
) -> DryRunOut:  # fmt: skip
    """What a contact would get from this journey now, messages rendered; nothing is sent."""
    authorize(principal, _READ)
    from liebian.automation import explain

    journey = service.get(session, principal.workspace_id, journey_id)
    contact_id = explain.contact_ref(session, principal.workspace_id, body.contact)
    got = explain.dry_run(session, runtime.event_store, runtime.cipher, journey, contact_id,
                          use_draft=body.draft, base_url=runtime.settings.base_url,
                          secret=runtime.secret)  # fmt: skip
    return DryRunOut.model_validate(got)


@router.get("/journeys/{journey_id}/stats", response_model=StatsOut)
def journey_stats(journey_id: str, principal: PrincipalDep, session: SessionDep) -> StatsOut:
    """Entered, active, completed, exited (why), converted (goal event); per step a funnel."""
    authorize(principal, _READ)
    from liebian.automation import explain

    journey = service.get(session, principal.workspace_id, journey_id)
    return StatsOut.model_validate(explain.stats(session, journey))
