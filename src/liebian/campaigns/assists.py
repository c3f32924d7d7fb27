"""Assist (助力) and bargain (砍价): helpers unlock a reward or cut a price to its floor.

One help per helper per activity (unique (assist, helper)); the n-th help is taken once
(unique (assist, helper_index)) and the counter moves by compare-and-swap, so concurrent helps
cannot both be "helper 3" and the price cannot drop below the floor. Cuts come from
``campaigns.bargain`` and are determined by the assist id, so a retried help computes the same
cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from liebian.campaigns import bargain, fission_events, repository, service
from liebian.campaigns.models import Assist, Campaign, CampaignEvent
from liebian.campaigns.referrals import ip_hash
from liebian.campaigns.schemas import AssistConfig
from liebian.contacts import service as contacts
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.errors import Conflict, NotFound
from liebian.kit.ids import new_id
from liebian.rewards import service as ledger

ASSIST_UNLOCKED = "assist.unlocked"


def _config(campaign: Campaign) -> AssistConfig:
    config = service.config_of(campaign)
    assert isinstance(config, AssistConfig)
    return config


def start(
    session: Session,
    cipher: PiiCipher,
    workspace_id: str,
    campaign_id: str,
    external_id: str,
    *,
    visitor_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> Assist:
    """The owner's running activity in this campaign, started if there is none."""
    now = now or utcnow()
    campaign = service.get(session, workspace_id, campaign_id)
    service.require_type(campaign, "assist")
    service.require_running(campaign, now)
    config = _config(campaign)
    owner = contacts.upsert(
        session,
        cipher,
        workspace_id,
        contacts.ContactInput(external_id=external_id, visitor_id=visitor_id),
    )
    existing = repository.open_assist(session, campaign.id, owner.id, now)
    if existing is not None:
        return existing
    bargain_cfg = config.bargain
    assist = Assist(
        id=new_id("ast"),
        workspace_id=workspace_id,
        campaign_id=campaign.id,
        owner_contact_id=owner.id,
        owner_visitor_id=visitor_id or owner.visitor_id,
        owner_ip_hash=ip_hash(cipher, ip),
        owner_user_agent=(user_agent or None) and user_agent[:500],
        mode=config.mode,
        helpers_count=0,
        helpers_required=bargain_cfg.max_helpers if bargain_cfg else (config.helpers_required or 1),
        price_now=bargain_cfg.start_price if bargain_cfg else None,
        status="open",
        expires_at=now + timedelta(hours=config.time_limit_hours),
        created_at=now,
    )
    session.add(assist)
    session.flush()
    fission_events.emit(
        session, workspace_id=workspace_id, event="assist_start",
        event_id=f"fx:assist_start:{assist.id}", campaign_id=campaign.id,
        user_id=owner.external_id, visitor_id=assist.owner_visitor_id,
        ip_hash=assist.owner_ip_hash, ts=now,
        properties={"assist_id": assist.id, "mode": assist.mode},
    )  # fmt: skip
    return assist


def get_assist(session: Session, workspace_id: str, assist_id: str) -> Assist:
    assist = repository.get(session, Assist, workspace_id, assist_id)
    if assist is None:
        raise NotFound(f"no assist {assist_id!r} in this workspace", code="assist_not_found")
    return assist


@dataclass(slots=True)
class AssistView:
    """An activity, its helpers (with their external ids) and, after a help, that help."""

    id: str
    campaign_id: str
    owner_external_id: str | None
    mode: str
    status: str
    helpers_count: int
    helpers_required: int
    price_now: int | None
    expires_at: datetime
    helpers: list[dict[str, Any]]
    cut: int | None = None
    helper_index: int | None = None


def view(session: Session, assist: Assist) -> AssistView:
    conn = repository.hot_connection(session)
    owner = repository.CONTACT_EXTERNAL_ID.execute(conn, {"id": assist.owner_contact_id}).scalar()
    return AssistView(
        id=assist.id, campaign_id=assist.campaign_id, owner_external_id=owner, mode=assist.mode,
        status=assist.status, helpers_count=assist.helpers_count,
        helpers_required=assist.helpers_required, price_now=assist.price_now,
        expires_at=assist.expires_at, helpers=_helpers(conn, assist.id),
    )  # fmt: skip


def _helpers(conn: Connection, assist_id: str) -> list[dict[str, Any]]:
    rows = repository.ASSIST_HELPS.execute(conn, {"assist_id": assist_id}).rows
    return [r._asdict() for r in rows]


def help_assist(
    session: Session,
    cipher: PiiCipher,
    workspace_id: str,
    assist_id: str,
    external_id: str,
    *,
    visitor_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> AssistView:
    # Runs under the write lock, so it is lean (as ``groups.join_group``): Core statements
    # built once, the activity read with its campaign's config, both helper rules in one read.
    now = now or utcnow()
    if visitor_id:  # the contact may learn its visitor id: the full upsert
        helper_id = contacts.upsert(
            session,
            cipher,
            workspace_id,
            contacts.ContactInput(external_id=external_id, visitor_id=visitor_id),
        ).id
        conn = repository.hot_connection(session)  # writes the visitor id first
    else:
        conn = repository.hot_connection(session)
        helper_id = repository.contact_id(
            conn, workspace_id, contacts.check_external_id(external_id)
        )
    assist = repository.ASSIST_FOR_HELP.execute(
        conn, {"assist_id": assist_id, "workspace_id": workspace_id}
    ).first()
    if assist is None:
        raise NotFound(f"no assist {assist_id!r} in this workspace", code="assist_not_found")
    if helper_id == assist.owner_contact_id:
        raise Conflict("you cannot help your own activity", code="self_help")
    # Same browser/device as the owner is the owner with a second account.
    if visitor_id and assist.owner_visitor_id and visitor_id == assist.owner_visitor_id:
        raise Conflict("you cannot help your own activity (same device)", code="self_help")
    helper_ip = ip_hash(cipher, ip)
    if (
        helper_ip
        and user_agent
        and helper_ip == assist.owner_ip_hash
        and user_agent[:500] == assist.owner_user_agent
    ):
        raise Conflict("you cannot help your own activity (same device)", code="self_help")
    already, helped_today = repository.HELPER_HISTORY.execute(
        conn,
        {"assist_id": assist.id, "helper_contact_id": helper_id, "since": repository.day_ago(now)},
    ).one()
    if already:
        raise Conflict("you have already helped this activity", code="already_helped")
    if assist.status != "open" or assist.helpers_count >= assist.helpers_required:
        raise Conflict("this activity needs no more help", code="assist_complete")
    if assist.expires_at <= now:
        raise Conflict("this activity has expired", code="assist_expired")
    config = AssistConfig.model_validate(assist.config)
    if helped_today >= config.max_helps_per_helper_per_day:
        raise Conflict(
            f"you can help at most {config.max_helps_per_helper_per_day} activities a day",
            code="help_limit_reached",
        )

    index = assist.helpers_count
    cut_amount = 0
    price_after: int | None = None
    if config.bargain is not None:
        cut = bargain.next_cut(config.bargain.rules(), assist.id, index)
        cut_amount, price_after = cut.amount, cut.price_after
    reached = index + 1 >= assist.helpers_required
    moved = repository.MOVE_HELP.execute(
        conn,
        {
            "assist_id": assist.id, "index": index, "price_after": price_after,
            "new_status": "unlocked" if reached else "open", "unlocked_at": now if reached else None,
        },
    )  # fmt: skip
    if not moved.rowcount:
        raise Conflict(
            "another help was recorded at the same moment; try again", code="help_conflict"
        )
    try:
        repository.INSERT_HELP.execute(
            conn,
            {
                "id": new_id("ahp"), "assist_id": assist.id, "workspace_id": workspace_id,
                "helper_contact_id": helper_id, "helper_index": index, "cut": cut_amount,
                "price_after": price_after, "visitor_id": visitor_id, "created_at": now,
            },
        )  # fmt: skip
    except IntegrityError as exc:
        # Past the checks above (made under the lock) only a racing duplicate gets here; the
        # request rolls back as a whole, counter included.
        raise Conflict("you have already helped this activity", code="already_helped") from exc
    cached = session.identity_map.get(session.identity_key(Assist, assist.id))
    if cached is not None:  # moved with Core: a copy loaded earlier must not stay stale
        session.expire(cached)
    price_now = price_after if price_after is not None else assist.price_now
    fission_events.emit(
        session, workspace_id=workspace_id, event="assist_help",
        event_id=f"fx:help:{assist.id}:{index}", campaign_id=assist.campaign_id,
        user_id=external_id, visitor_id=visitor_id, referrer=assist.owner_external_id, ts=now,
        properties={"assist_id": assist.id, "index": index, "cut": cut_amount},
    )  # fmt: skip
    if reached:
        _unlocked(session, conn, workspace_id, assist, config, price=price_now, helpers=index + 1)
    helpers = _helpers(repository.hot_connection(session), assist.id)
    return AssistView(
        id=assist.id, campaign_id=assist.campaign_id, owner_external_id=assist.owner_external_id,
        mode=assist.mode,
        status="unlocked" if reached else assist.status, helpers_count=index + 1,
        helpers_required=assist.helpers_required, price_now=price_now,
        expires_at=assist.expires_at, helpers=helpers, cut=cut_amount, helper_index=index,
    )  # fmt: skip


def _unlocked(
    session: Session,
    conn: Connection,
    workspace_id: str,
    assist: Any,
    config: AssistConfig,
    *,
    price: int | None,
    helpers: int,
) -> None:
    """The activity just reached its last help: the owner's reward (unlock mode, while stock
    and budget last), an ``assist.unlocked`` campaign event, and the bus/webhook event.
    ``assist`` is the row read for the help (``repository.ASSIST_FOR_HELP``)."""
    reward = config.reward
    if config.mode == "unlock" and reward is not None:
        money = reward.amount if reward.kind in ("coupon", "cash") else 0
        # Out of stock or budget: no reward.
        if repository.take_stock(conn, assist.campaign_id, assist.config, amount=money):
            ledger.grant(
                session,
                ledger.Grant(
                    workspace_id=workspace_id, contact_id=assist.owner_contact_id,
                    key=f"assist:{assist.id}", kind=reward.kind, amount=reward.amount,
                    name=reward.name, campaign_id=assist.campaign_id, reason="assist",
                    status="issued",
                ),
            )  # fmt: skip
    session.add(
        CampaignEvent(
            id=new_id("cev"), workspace_id=workspace_id, campaign_id=assist.campaign_id,
            kind=ASSIST_UNLOCKED, subject_id=assist.id, contact_id=assist.owner_contact_id,
            payload={"price": price, "helpers": helpers}, created_at=utcnow(),
        )
    )  # fmt: skip
    publish_after_commit(
        session, ASSIST_UNLOCKED, {"assist_id": assist.id, "workspace_id": workspace_id}
    )
    fission_events.emit(
        session, workspace_id=workspace_id, event="assist_unlock",
        event_id=f"fx:unlock:{assist.id}", campaign_id=assist.campaign_id,
        user_id=assist.owner_external_id, properties={"assist_id": assist.id, "helpers": helpers},
    )  # fmt: skip


def expire_assists(session: Session, now: datetime) -> int:
    result = session.execute(
        update(Assist)
        .where(Assist.status == "open", Assist.expires_at <= now)
        .values(status="expired")
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
