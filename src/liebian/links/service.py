"""Business rules for links: validation, slugs, tags, bulk import/export.

Every function takes the acting principal and only touches that workspace's rows. Changes
publish ``slug.changed`` after commit so the redirect cache drops stale entries.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from liebian.kit.auth import Principal, Role
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.csv_safe import neutralize, restore
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.kit.netguard import Network
from liebian.kit.passwords import hash_link_password
from liebian.links import repository
from liebian.links.models import Link, LinkTag, Slug
from liebian.links.schemas import BulkError, LinkCreate, LinkFields, LinkUpdate
from liebian.links.slugs import is_reserved, random_slug
from liebian.links.validation import validate_destination

SLUG_CHANGED = "slug.changed"
_link_rows: TypeAdapter[list[LinkCreate]] = TypeAdapter(list[LinkCreate])
MAX_BULK = 10_000
CSV_LIST_SEPARATOR = "|"
CSV_COLUMNS = (
    "url", "slug", "title", "channel", "campaign_id", "tags", "utm_source", "utm_medium",
    "utm_campaign", "utm_term", "utm_content", "expires_at", "expired_url", "max_clicks",
    "ios_url", "android_url", "allowed_platforms", "browser_guide",
)  # fmt: skip


@dataclass(frozen=True)
class LinkPolicy:
    """Server-wide values the rules need, passed in by the boundary."""

    blocklist: tuple[str, ...] = ()
    allowed_networks: tuple[Network, ...] = ()


def _check_urls(data: LinkFields | LinkUpdate, policy: LinkPolicy) -> None:
    for field in ("url", "expired_url", "ios_url", "android_url"):
        value = getattr(data, field, None)
        if value:
            validate_destination(
                value, policy.blocklist, field=field, allowed_networks=policy.allowed_networks
            )
    for i, variant in enumerate(data.variants or []):
        validate_destination(
            variant.url,
            policy.blocklist,
            field=f"variants[{i}].url",
            allowed_networks=policy.allowed_networks,
        )


def _check_slug(slug: str) -> None:
    if is_reserved(slug):
        raise Invalid(
            f"slug '{slug}' is reserved for the application; choose another",
            code="reserved_slug",
            details={"field": "slug"},
        )


def _link_values(workspace_id: str, slug: str, data: LinkFields) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": new_id("lnk"),
        "workspace_id": workspace_id,
        "slug": slug,
        "url": data.url,
        "title": data.title,
        "channel": data.channel,
        "campaign_id": data.campaign_id,
        "utm": data.utm.model_dump(exclude_none=True) if data.utm else {},
        "expires_at": data.expires_at,
        "expired_url": data.expired_url,
        "max_clicks": data.max_clicks,
        "password_hash": hash_link_password(data.password) if data.password else None,
        "allowed_platforms": data.allowed_platforms,
        "ios_url": data.ios_url,
        "android_url": data.android_url,
        "variants": [v.model_dump() for v in data.variants] if data.variants else None,
        "browser_guide": data.browser_guide,
        "created_at": now,
        "updated_at": now,
    }


def _free_random_slug(session: Session, reserved: set[str]) -> str:
    for _ in range(20):
        candidate = random_slug()
        if candidate not in reserved and not repository.taken_slugs(session, [candidate]):
            return candidate
    raise Conflict("could not find a free random slug; try again")  # pragma: no cover


def create_link(session: Session, actor: Principal, data: LinkCreate, policy: LinkPolicy) -> Link:
    actor.require(Role.operator)
    _check_urls(data, policy)
    if data.slug is not None:
        _check_slug(data.slug)
        if repository.taken_slugs(session, [data.slug]):
            raise Conflict(
                f"slug '{data.slug}' is already taken", code="slug_taken", details={"field": "slug"}
            )
        slug = data.slug
    else:
        slug = _free_random_slug(session, set())
    values = _link_values(actor.workspace_id, slug, data)
    link = Link(**values)
    link.tag_rows = [LinkTag(tag=t, workspace_id=actor.workspace_id) for t in data.tags]
    session.add(Slug(slug=slug, kind="link", target_id=link.id, workspace_id=actor.workspace_id))
    session.add(link)
    try:
        session.flush()
    except IntegrityError as exc:
        # Two creates raced for the same slug: the loser gets the same answer as a late caller.
        raise Conflict(
            f"slug '{slug}' is already taken", code="slug_taken", details={"field": "slug"}
        ) from exc
    publish_after_commit(session, SLUG_CHANGED, slug)
    return link


def get_link(session: Session, actor: Principal, link_id: str) -> Link:
    link = repository.get_link(session, actor.workspace_id, link_id)
    if link is None:
        raise NotFound(f"no link '{link_id}' in this workspace")
    return link


def update_link(
    session: Session, actor: Principal, link_id: str, data: LinkUpdate, policy: LinkPolicy
) -> Link:
    actor.require(Role.operator)
    link = get_link(session, actor, link_id)
    _check_urls(data, policy)
    sent = data.model_fields_set
    if "url" in sent and data.url is None:
        raise Invalid("url cannot be cleared", details={"field": "url"})
    simple = (
        "url", "title", "channel", "campaign_id", "expires_at", "expired_url", "max_clicks",
        "allowed_platforms", "ios_url", "android_url", "browser_guide",
    )  # fmt: skip
    for field in simple:
        if field in sent:
            value = getattr(data, field)
            if field in ("title",) and value is None:
                value = ""
            if field == "browser_guide" and value is None:
                value = False
            setattr(link, field, value)
    if "utm" in sent:
        link.utm = data.utm.model_dump(exclude_none=True) if data.utm else {}
    if "variants" in sent:
        link.variants = [v.model_dump() for v in data.variants] if data.variants else None
    if "password" in sent:
        link.password_hash = hash_link_password(data.password) if data.password else None
    if "tags" in sent:
        link.tag_rows = [LinkTag(tag=t, workspace_id=actor.workspace_id) for t in data.tags or []]
    if link.expired_url and not link.expires_at and not link.max_clicks:
        raise Invalid(
            "expired_url needs expires_at or max_clicks", details={"field": "expired_url"}
        )
    link.updated_at = utcnow()
    session.flush()
    publish_after_commit(session, SLUG_CHANGED, link.slug)
    return link


def delete_link(session: Session, actor: Principal, link_id: str) -> None:
    actor.require(Role.operator)
    link = get_link(session, actor, link_id)
    slug = link.slug
    session.delete(link)
    repository.delete_slug(session, slug)
    session.flush()
    publish_after_commit(session, SLUG_CHANGED, slug)


def list_links(
    session: Session,
    actor: Principal,
    *,
    tag: str | None = None,
    channel: str | None = None,
    search: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> list[Link]:
    return repository.list_links(
        session,
        actor.workspace_id,
        tag=tag,
        channel=channel,
        search=search,
        cursor=cursor,
        limit=limit,
    )


# --- bulk -------------------------------------------------------------------------------------


class BulkRejected(Invalid):
    """The whole batch was refused; ``details`` lists every bad row."""

    code = "bulk_rejected"


def bulk_create(
    session: Session, actor: Principal, rows: Sequence[dict[str, Any]], policy: LinkPolicy
) -> list[dict[str, Any]]:
    """All or nothing: every row is checked first; one bad row rejects the batch and lists all
    problems by row number (1-based), so the caller fixes them and sends the batch again."""
    actor.require(Role.operator)
    if not rows:
        raise Invalid("send at least one link")
    if len(rows) > MAX_BULK:
        raise Invalid(f"at most {MAX_BULK} links per call; got {len(rows)}", code="bulk_too_large")
    errors: list[BulkError] = []
    parsed: list[tuple[int, LinkCreate]] = []
    try:
        # Fast path: the whole batch through pydantic at once; row-by-row only to name errors.
        candidates = list(enumerate(_link_rows.validate_python(rows), start=1))
    except ValidationError:
        candidates = []
        for number, raw in enumerate(rows, start=1):
            try:
                candidates.append((number, LinkCreate.model_validate(raw)))
            except ValidationError as exc:
                for err in exc.errors():
                    field = ".".join(str(p) for p in err["loc"]) or None
                    errors.append(BulkError(row=number, field=field, message=err["msg"]))
    for number, data in candidates:
        try:
            _check_urls(data, policy)
            if data.slug is not None:
                _check_slug(data.slug)
            parsed.append((number, data))
        except Invalid as exc:
            field = (exc.details or {}).get("field") if isinstance(exc.details, dict) else None
            errors.append(BulkError(row=number, field=field, message=exc.message))
    custom: dict[str, int] = {}
    for number, data in parsed:
        if data.slug is None:
            continue
        if data.slug in custom:
            errors.append(
                BulkError(
                    row=number,
                    field="slug",
                    message=f"slug '{data.slug}' repeats row {custom[data.slug]}",
                )
            )
        else:
            custom[data.slug] = number
    for slug in repository.taken_slugs(session, custom):
        errors.append(
            BulkError(row=custom[slug], field="slug", message=f"slug '{slug}' is already taken")
        )
    if errors:
        errors.sort(key=lambda e: e.row)
        raise BulkRejected(
            f"{len({e.row for e in errors})} of {len(rows)} rows are invalid; nothing was created",
            details=[e.model_dump() for e in errors],
        )
    generated = _free_random_slugs(
        session, sum(1 for _, d in parsed if d.slug is None), set(custom)
    )
    links: list[dict[str, Any]] = []
    slugs: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    for _number, data in parsed:
        slug = data.slug if data.slug is not None else generated.pop()
        values = _link_values(actor.workspace_id, slug, data)
        links.append(values)
        slugs.append(
            {
                "slug": slug,
                "kind": "link",
                "target_id": values["id"],
                "workspace_id": actor.workspace_id,
            }
        )
        tags.extend(
            {"link_id": values["id"], "tag": t, "workspace_id": actor.workspace_id}
            for t in data.tags
        )
    try:
        repository.bulk_insert(session, links, slugs, tags)
    except IntegrityError as exc:
        raise Conflict(
            "another request took one of these slugs meanwhile; send the batch again"
        ) from exc
    for values in links:
        publish_after_commit(session, SLUG_CHANGED, values["slug"])
    return links


def _free_random_slugs(session: Session, count: int, avoid: set[str]) -> list[str]:
    result: set[str] = set()
    while len(result) < count:
        batch = {random_slug() for _ in range(count - len(result))} - avoid - result
        batch -= repository.taken_slugs(session, batch)
        result |= batch
    return list(result)


def parse_csv(text: str) -> list[dict[str, Any]]:
    """CSV rows → link dicts. Lists (tags, allowed_platforms) use '|' inside a cell.
    Empty cells mean "not set". Raises BulkRejected naming each malformed row."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    try:
        return _read_csv_rows(reader)
    except csv.Error as exc:
        # The csv module stops at what it cannot read (a bare CR inside an unquoted cell, a
        # cell over its field size limit): name the line so the file can be fixed.
        raise Invalid(
            f"the CSV cannot be read at line {reader.line_num}: {exc}; quote cells that hold"
            " line breaks and keep each cell under 131,072 characters",
            code="bad_csv",
            details={"line": reader.line_num},
        ) from exc


def _read_csv_rows(reader: csv.DictReader[str]) -> list[dict[str, Any]]:
    if not reader.fieldnames or "url" not in reader.fieldnames:
        raise Invalid("CSV needs a header row with at least a 'url' column", code="bad_csv")
    unknown = [f for f in reader.fieldnames if f not in CSV_COLUMNS]
    if unknown:
        raise Invalid(
            f"unknown CSV columns: {', '.join(unknown)}; allowed: {', '.join(CSV_COLUMNS)}",
            code="bad_csv",
        )
    rows: list[dict[str, Any]] = []
    errors: list[BulkError] = []
    for number, record in enumerate(reader, start=1):
        if None in record:
            errors.append(BulkError(row=number, message="row has more cells than the header"))
            continue
        row: dict[str, Any] = {}
        utm: dict[str, str] = {}
        for key, value in record.items():
            value = restore((value or "").strip())
            if value == "":
                continue
            if key.startswith("utm_"):
                utm[key[4:]] = value
            elif key in ("tags", "allowed_platforms"):
                row[key] = [v.strip() for v in value.split(CSV_LIST_SEPARATOR) if v.strip()]
            elif key == "browser_guide":
                row[key] = value.lower() in ("1", "true", "yes", "y", "是")
            else:
                row[key] = value
        if utm:
            row["utm"] = utm
        rows.append(row)
    if errors:
        raise BulkRejected(
            f"{len(errors)} CSV rows are malformed; nothing was created",
            details=[e.model_dump() for e in errors],
        )
    return rows


def export_csv(links: Iterable[Link]) -> Iterable[str]:
    """The same columns the importer reads, so an export can be edited and imported again."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return value

    writer.writerow(CSV_COLUMNS)
    yield "\ufeff" + flush()  # BOM so Excel opens Chinese text as UTF-8
    for link in links:
        utm = link.utm or {}
        writer.writerow(
            neutralize(cell) for cell in [
                link.url, link.slug, link.title, link.channel or "", link.campaign_id or "",
                CSV_LIST_SEPARATOR.join(link.tags), utm.get("source", ""), utm.get("medium", ""),
                utm.get("campaign", ""), utm.get("term", ""), utm.get("content", ""),
                link.expires_at.isoformat() if link.expires_at else "", link.expired_url or "",
                link.max_clicks or "", link.ios_url or "", link.android_url or "",
                CSV_LIST_SEPARATOR.join(link.allowed_platforms or []),
                "true" if link.browser_guide else "",
            ]
        )  # fmt: skip
        yield flush()
