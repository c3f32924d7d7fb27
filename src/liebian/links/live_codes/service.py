"""Live code rules: targets in order, capacity never exceeded, one alert per crossing.

A scan takes the first usable target in position order (enabled, not expired, scans below
capacity) through an atomic conditional UPDATE and moves on to the next when that one is full
or expired. When, after a scan, fewer than ``alert_below`` usable targets remain, one
``live_code_alerts`` row is written and ``live_code.low_targets`` published after commit; the
``alerted_at`` latch keeps further scans quiet until an operator's change (new target, larger
capacity, re-enabling) brings the usable count back up, which re-arms it.

Expiry needs no job: "usable" is evaluated against the clock at each scan, so an expired
target is skipped by the next scan (and the alert, if it crossed, fires on that scan).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from liebian.kit.auth import Principal, Role
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import as_utc, utcnow
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.links.domains import public_base_url
from liebian.links.live_codes import repository as repo
from liebian.links.live_codes.models import LiveCodeAlert
from liebian.links.live_codes.schemas import (
    MAX_TARGETS,
    LiveCodeCreate,
    LiveCodeOut,
    LiveCodeUpdate,
    TargetCreate,
    TargetIn,
    TargetOut,
    TargetStatus,
    TargetUpdate,
)
from liebian.links.models import LiveCode, LiveCodeTarget, Slug
from liebian.links.slugs import is_reserved, random_slug
from liebian.links.validation import validate_destination

SLUG_CHANGED = "slug.changed"
LOW_TARGETS = "live_code.low_targets"
KIND = "live_code"


# -- reads -------------------------------------------------------------------------------


def get(session: Session, principal: Principal, live_code_id: str) -> LiveCode:
    live_code = repo.get(session, principal.workspace_id, live_code_id)
    if live_code is None:
        raise NotFound(f"no live code {live_code_id} in this workspace", code="live_code_not_found")
    return live_code


def list_page(
    session: Session, principal: Principal, cursor: str | None, limit: int, channel: str | None
) -> list[LiveCode]:
    return repo.list_page(session, principal.workspace_id, cursor, limit, channel)


def list_alerts(
    session: Session, principal: Principal, live_code_id: str, cursor: str | None, limit: int
) -> list[LiveCodeAlert]:
    get(session, principal, live_code_id)  # scopes to the workspace, 404 otherwise
    return repo.list_alerts(session, live_code_id, cursor, limit)


def target_status(target: LiveCodeTarget, now: datetime) -> TargetStatus:
    if not target.enabled:
        return "disabled"
    if target.expires_at is not None and as_utc(target.expires_at) <= now:
        return "expired"
    if target.scans >= target.capacity:
        return "full"
    return "active"


def short_url(session: Session, live_code: LiveCode, base_url: str) -> str:
    return f"{public_base_url(session, live_code.workspace_id, base_url)}/{live_code.slug}"


def present(session: Session, live_code: LiveCode, base_url: str) -> LiveCodeOut:
    """The API view: per-target scans, places left, status, and which target serves now."""
    now = utcnow()
    api = f"{base_url.rstrip('/')}/api/v1/live-codes/{live_code.id}"
    targets = []
    current: str | None = None
    for t in sorted(live_code.targets, key=lambda t: (t.position, t.id)):
        status = target_status(t, now)
        if status == "active" and current is None:
            current = t.id
        targets.append(
            TargetOut(
                id=t.id,
                position=t.position,
                label=t.label,
                kind="url" if t.url is not None else "image",
                url=t.url,
                image_url=f"{api}/targets/{t.id}/image" if t.image_type else None,
                image_type=t.image_type,
                capacity=t.capacity,
                scans=t.scans,
                remaining=max(t.capacity - t.scans, 0),
                expires_at=t.expires_at,
                enabled=t.enabled,
                status=status,
                created_at=t.created_at,
            )
        )
    return LiveCodeOut(
        id=live_code.id,
        slug=live_code.slug,
        name=live_code.name,
        channel=live_code.channel,
        short_url=short_url(session, live_code, base_url),
        qr_url=f"{api}/qr",
        alert_below=live_code.alert_below,
        alerted_at=live_code.alerted_at,
        usable_targets=sum(1 for t in targets if t.status == "active"),
        total_scans=sum(t.scans for t in targets),
        current_target_id=current,
        targets=targets,
        created_at=live_code.created_at,
    )


# -- writes ------------------------------------------------------------------------------


def create(
    session: Session, principal: Principal, body: LiveCodeCreate, blocklist: Sequence[str] = ()
) -> LiveCode:
    principal.require(Role.operator)
    for i, target in enumerate(body.targets):
        _check_url(target.url, blocklist, f"targets[{i}].url")
    slug = body.slug or _random_slug(session)
    _check_slug_free(session, slug)
    now = utcnow()
    live_code = LiveCode(
        id=new_id("lc"),
        workspace_id=principal.workspace_id,
        slug=slug,
        name=body.name,
        channel=body.channel,
        alert_below=body.alert_below,
        alerted_at=None,
        created_at=now,
    )
    live_code.targets = [_new_target(live_code.id, i, t, now) for i, t in enumerate(body.targets)]
    session.add(
        Slug(slug=slug, kind=KIND, target_id=live_code.id, workspace_id=live_code.workspace_id)
    )
    session.add(live_code)
    try:
        session.flush()
    except IntegrityError:
        # Another request took the slug between the check and the insert.
        raise _slug_conflict(slug) from None
    _changed(session, live_code)
    return live_code


def update(
    session: Session, principal: Principal, live_code_id: str, body: LiveCodeUpdate
) -> LiveCode:
    principal.require(Role.operator)
    live_code = get(session, principal, live_code_id)
    fields = body.model_fields_set
    if "name" in fields and body.name is not None:
        live_code.name = body.name
    if "channel" in fields:
        live_code.channel = body.channel
    if "alert_below" in fields and body.alert_below is not None:
        live_code.alert_below = body.alert_below
    session.flush()
    _after_target_change(session, live_code)
    return live_code


def delete(session: Session, principal: Principal, live_code_id: str) -> None:
    principal.require(Role.operator)
    live_code = get(session, principal, live_code_id)
    slug = live_code.slug
    session.delete(live_code)
    session.flush()
    repo.delete_slug(session, slug)
    publish_after_commit(session, SLUG_CHANGED, slug)


def add_target(
    session: Session,
    principal: Principal,
    live_code_id: str,
    body: TargetCreate,
    blocklist: Sequence[str] = (),
) -> LiveCode:
    principal.require(Role.operator)
    _check_url(body.url, blocklist, "url")
    live_code = get(session, principal, live_code_id)
    ordered = _ordered(live_code)
    if len(ordered) >= MAX_TARGETS:
        raise Invalid(f"a live code holds at most {MAX_TARGETS} targets", code="too_many_targets")
    target = _new_target(live_code.id, 0, body, utcnow())
    position = len(ordered) if body.position is None else min(body.position, len(ordered))
    ordered.insert(position, target)
    live_code.targets.append(target)
    _renumber(ordered)
    session.flush()
    _after_target_change(session, live_code)
    return live_code


def update_target(
    session: Session,
    principal: Principal,
    live_code_id: str,
    target_id: str,
    body: TargetUpdate,
    blocklist: Sequence[str] = (),
) -> LiveCode:
    principal.require(Role.operator)
    _check_url(body.url, blocklist, "url")
    live_code = get(session, principal, live_code_id)
    target = _target(live_code, target_id)
    fields = body.model_fields_set
    if body.label is not None:
        target.label = body.label
    if body.url is not None:
        target.url, target.image, target.image_type = body.url, None, None
    if body.image_bytes is not None:
        target.url, target.image, target.image_type = None, body.image_bytes, body.image_type
    if body.capacity is not None:
        target.capacity = body.capacity
    if "expires_at" in fields:
        target.expires_at = body.expires_at
    if body.enabled is not None:
        target.enabled = body.enabled
    if body.position is not None:
        ordered = [t for t in _ordered(live_code) if t.id != target.id]
        ordered.insert(min(body.position, len(ordered)), target)
        _renumber(ordered)
    session.flush()
    _after_target_change(session, live_code)
    return live_code


def remove_target(
    session: Session, principal: Principal, live_code_id: str, target_id: str
) -> LiveCode:
    principal.require(Role.operator)
    live_code = get(session, principal, live_code_id)
    target = _target(live_code, target_id)
    live_code.targets.remove(target)  # delete-orphan cascade deletes the row
    _renumber(_ordered(live_code))
    session.flush()
    _after_target_change(session, live_code)
    return live_code


def reorder(
    session: Session, principal: Principal, live_code_id: str, target_ids: list[str]
) -> LiveCode:
    principal.require(Role.operator)
    live_code = get(session, principal, live_code_id)
    by_id = {t.id: t for t in live_code.targets}
    if len(target_ids) != len(set(target_ids)) or set(target_ids) != set(by_id):
        raise Invalid(
            "target_ids must list every target of this live code exactly once",
            code="invalid_order",
            details={"expected": sorted(by_id), "given": target_ids},
        )
    _renumber([by_id[i] for i in target_ids])
    session.flush()
    _after_target_change(session, live_code)
    return live_code


# -- the scan ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScanResult:
    live_code: repo.ScanHead
    target: repo.Candidate | None  # None: every target is full, expired or disabled
    counted: bool  # whether this scan took a place (bots and HEAD requests only look)
    rescan: bool = False  # the holder already had a place: shown it again, nothing taken


def scan(
    session: Session,
    live_code_id: str,
    *,
    count: bool = True,
    now: datetime | None = None,
    holders: Sequence[str] = (),
) -> ScanResult | None:
    """Serve one scan: claim a place on the first usable target, in position order.

    Returns None for an unknown live code. With ``count=False`` the current target is only
    looked up, so link-preview bots do not use up a group's places. ``holders`` (a visitor id
    and/or a hash standing for a cookie-less phone) keep their place: a re-scan shows the
    same target and takes no second place; a new place is recorded under the first.
    """
    now = now or utcnow()
    head = repo.scan_head(session, live_code_id)
    if head is None:
        return None
    holder = holders[0] if holders else None
    if count and holder:
        seat = repo.seat_target(session, live_code_id, holders, now)
        if seat is not None:
            return ScanResult(head, seat, counted=False, rescan=True)
    chosen: repo.Candidate | None = None
    for candidate in repo.usable_candidates(session, live_code_id, now):
        # A failed claim means a concurrent scan took the last place (or it just expired):
        # fall through to the next target rather than over-filling this one.
        if not count or repo.claim_place(session, candidate.id, now):
            chosen = candidate
            break
    if (
        count
        and holder
        and chosen is not None
        and not repo.take_seat(session, live_code_id, holder, chosen.id, now)
    ):
        # The same phone's concurrent scan got a place first: give this one back.
        repo.release_place(session, chosen.id)
        seat = repo.seat_target(session, live_code_id, holders, now)
        return ScanResult(head, seat, counted=False, rescan=True)
    if count:
        _check_low_targets(session, head, now)
    return ScanResult(head, chosen, counted=count and chosen is not None)


def image_signature(secret: bytes, target_id: str) -> str:
    """Lets the scan page show a target's image without an API key, and only that image."""
    digest = hmac.new(secret, f"live-code-image:{target_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def check_image_signature(secret: bytes, target_id: str, signature: str) -> bool:
    # compare_digest refuses str with non-ASCII characters (TypeError): compare bytes.
    return hmac.compare_digest(
        image_signature(secret, target_id).encode(), signature.encode("utf-8", "replace")
    )


# -- helpers -----------------------------------------------------------------------------


def _check_low_targets(session: Session, head: repo.ScanHead, now: datetime) -> None:
    if head.alert_below <= 0 or head.alerted:
        return
    usable = repo.count_usable(session, head.id, now)
    if usable >= head.alert_below or not repo.latch_alert(session, head.id, now):
        return
    alert = LiveCodeAlert(
        id=new_id("lca"),
        workspace_id=head.workspace_id,
        live_code_id=head.id,
        kind="low_targets",
        usable=usable,
        threshold=head.alert_below,
        created_at=now,
    )
    repo.add_alert(session, alert)
    publish_after_commit(
        session,
        LOW_TARGETS,
        {
            "alert_id": alert.id,
            "workspace_id": head.workspace_id,
            "live_code_id": head.id,
            "slug": head.slug,
            "usable": usable,
            "threshold": head.alert_below,
        },
    )


def _after_target_change(session: Session, live_code: LiveCode) -> None:
    # An operator's fix (more targets, more capacity) re-arms the alert for the next crossing.
    if live_code.alerted_at is not None:
        usable = repo.count_usable(session, live_code.id, utcnow())
        if usable >= live_code.alert_below:
            repo.rearm_alert(session, live_code.id)
    _changed(session, live_code)


def _changed(session: Session, live_code: LiveCode) -> None:
    publish_after_commit(session, SLUG_CHANGED, live_code.slug)


def _new_target(live_code_id: str, position: int, body: TargetIn, now: datetime) -> LiveCodeTarget:
    return LiveCodeTarget(
        id=new_id("lct"),
        live_code_id=live_code_id,
        position=position,
        label=body.label,
        url=body.url,
        image=body.image_bytes,
        image_type=body.image_type,
        capacity=body.capacity,
        scans=0,
        expires_at=body.expires_at,
        enabled=body.enabled,
        created_at=now,
    )


def _ordered(live_code: LiveCode) -> list[LiveCodeTarget]:
    return sorted(live_code.targets, key=lambda t: (t.position, t.id))


def _renumber(ordered: list[LiveCodeTarget]) -> None:
    for i, target in enumerate(ordered):
        if target.position != i:
            target.position = i


def _target(live_code: LiveCode, target_id: str) -> LiveCodeTarget:
    for target in live_code.targets:
        if target.id == target_id:
            return target
    raise NotFound(f"no target {target_id} in live code {live_code.id}", code="target_not_found")


def _check_url(url: str | None, blocklist: Sequence[str], field: str) -> None:
    if url is not None:
        validate_destination(url, tuple(blocklist), field=field)


def _check_slug_free(session: Session, slug: str) -> None:
    if is_reserved(slug):
        raise Invalid(
            f"slug '{slug}' is reserved for the application; choose another",
            code="reserved_slug",
            details={"field": "slug"},
        )
    if repo.slug_taken(session, slug):
        raise _slug_conflict(slug)


def _slug_conflict(slug: str) -> Conflict:
    return Conflict(
        f"the slug '{slug}' is already in use by a link or live code; choose another",
        code="slug_taken",
        details={"field": "slug"},
    )


def _random_slug(session: Session) -> str:
    for _ in range(20):
        slug = random_slug()
        if not is_reserved(slug) and not repo.slug_taken(session, slug):
            return slug
    raise Conflict("could not find a free slug; try again", code="slug_exhausted")
