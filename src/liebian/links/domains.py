"""Short domains and their health. Blocking is a manual, recorded decision; no auto-rotation.

Why no automatic failover or rotation: WeChat's external-link rules treat switching domains to
get around a block as evasion, which gets the next domain (and the account) banned too. So an
operator marks a domain blocked, with a reason; from then on new short URLs and QR codes are
built on a healthy domain of the workspace (see docs/decisions/0002-domain-health.md).

Rules and queries live together here because the domain is small; HTTP is in
``domains_api.py`` and the CLI in ``cli.py``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from liebian.kit.auth import Principal, Role
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.db import Base, UTCDateTime
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.links.models import Domain

HEALTHY = "healthy"
BLOCKED = "blocked"
DOMAINS_CHANGED = "domains.changed"

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class DomainStatusChange(Base):
    """Who changed a domain's health, when and why: the history behind ``Domain.note``."""

    __tablename__ = "domain_status_changes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(500), default="")
    # An API key id, a member id or "cli": whoever made the call.
    actor: Mapped[str] = mapped_column(String(60), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts on a domain: an API principal, or the operator at the CLI."""

    workspace_id: str
    name: str

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        principal.require(Role.admin)
        return cls(principal.workspace_id, principal.key_id or principal.member_id or "")


def public_base_url(session: Session, workspace_id: str, default_base_url: str) -> str:
    """Where this workspace's short links are served now: the primary domain while it is
    healthy; once an operator has blocked it, another healthy domain (the failover they chose
    by blocking); with no primary, or nothing healthy, the server's own base URL. A domain
    added without 设为主域名 is never used on its own."""
    domains = session.execute(
        select(Domain.host, Domain.is_primary, Domain.status)
        .where(Domain.workspace_id == workspace_id)
        .order_by(Domain.is_primary.desc(), Domain.created_at)
    ).all()
    if not domains or not domains[0].is_primary:
        return default_base_url.rstrip("/")
    healthy = next((d for d in domains if d.status == HEALTHY), None)
    if healthy is None:
        return default_base_url.rstrip("/")
    return f"https://{healthy.host}"


def normalize_host(value: str) -> str:
    """A bare DNS name, lower-case, IDNA (punycode) for Chinese names; raises Invalid otherwise.

    Short domains are served over HTTPS by name, so IP addresses, ports, paths and schemes are
    refused rather than silently stripped: the operator should see what they typed was wrong.
    """
    host = (value or "").strip().rstrip(".").lower()
    hint = "give a bare host name such as s.example.com (no scheme, port or path)"
    if not host or any(c in host for c in "/:@?#[] \\"):
        raise Invalid(f"'{value[:100]}' is not a host name; {hint}", code="invalid_host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise Invalid("short domains must be names, not IP addresses", code="invalid_host")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise Invalid(
            f"'{value[:100]}' is not a valid host name; {hint}", code="invalid_host"
        ) from None
    labels = host.split(".")
    if (
        len(host) > 253
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise Invalid(f"'{value[:100]}' is not a valid host name; {hint}", code="invalid_host")
    return host


def list_domains(session: Session, workspace_id: str) -> list[Domain]:
    return list(
        session.scalars(
            select(Domain)
            .where(Domain.workspace_id == workspace_id)
            .order_by(Domain.is_primary.desc(), Domain.created_at, Domain.id)
        )
    )


def get_domain(session: Session, workspace_id: str, domain_id: str) -> Domain:
    domain = session.scalars(
        select(Domain).where(Domain.id == domain_id, Domain.workspace_id == workspace_id)
    ).first()
    if domain is None:
        raise NotFound(f"no domain {domain_id} in this workspace", code="domain_not_found")
    return domain


def find_domain(session: Session, workspace_id: str, id_or_host: str) -> Domain:
    """By id or host name (the CLI lets operators type the host)."""
    domain = session.scalars(
        select(Domain).where(
            Domain.workspace_id == workspace_id,
            (Domain.id == id_or_host) | (Domain.host == id_or_host.strip().lower()),
        )
    ).first()
    if domain is None:
        raise NotFound(f"no domain '{id_or_host}' in this workspace", code="domain_not_found")
    return domain


def history(session: Session, domain: Domain, limit: int = 50) -> list[DomainStatusChange]:
    return list(
        session.scalars(
            select(DomainStatusChange)
            .where(DomainStatusChange.domain_id == domain.id)
            .order_by(DomainStatusChange.id.desc())
            .limit(limit)
        )
    )


def add_domain(session: Session, actor: Actor, host: str, *, is_primary: bool = False) -> Domain:
    host = normalize_host(host)
    # Host names are unique across the whole system (the redirect resolves a request's Host to
    # one workspace); say so without revealing which workspace holds it.
    if session.scalars(select(Domain.id).where(Domain.host == host)).first() is not None:
        raise Conflict(f"the domain {host} is already registered", code="domain_taken")
    # Only when asked: an operator adding a domain with 设为主域名 unticked (a backup, one
    # still being set up) must not have every short URL move onto it.
    primary = is_primary
    if primary:
        _clear_primary(session, actor.workspace_id)
    now = utcnow()
    domain = Domain(
        id=new_id("dom"),
        workspace_id=actor.workspace_id,
        host=host,
        status=HEALTHY,
        is_primary=primary,
        note="",
        created_at=now,
        status_changed_at=now,
    )
    session.add(domain)
    try:
        session.flush()
    except IntegrityError:
        # Lost a race with another insert of the same host.
        raise Conflict(f"the domain {host} is already registered", code="domain_taken") from None
    _record(session, domain, actor, "added")
    session.flush()
    _changed(session, actor.workspace_id)
    return domain


def make_primary(session: Session, actor: Actor, domain_id: str) -> Domain:
    domain = get_domain(session, actor.workspace_id, domain_id)
    if not domain.is_primary:
        _clear_primary(session, actor.workspace_id)
        domain.is_primary = True
        session.flush()
        _changed(session, actor.workspace_id)
    return domain


def block_domain(session: Session, actor: Actor, domain_id: str, reason: str) -> Domain:
    """Mark a domain blocked (e.g. WeChat shows its "停止访问" page for it).

    Idempotent: blocking a blocked domain changes nothing, so a retried call is harmless.
    """
    reason = reason.strip()
    if not reason:
        raise Invalid(
            "say why the domain is blocked (e.g. '微信内提示停止访问'); it is kept in the history",
            code="reason_required",
        )
    domain = get_domain(session, actor.workspace_id, domain_id)
    if domain.status == BLOCKED:
        return domain
    return _set_status(session, actor, domain, BLOCKED, reason)


def unblock_domain(session: Session, actor: Actor, domain_id: str, note: str = "") -> Domain:
    domain = get_domain(session, actor.workspace_id, domain_id)
    if domain.status == HEALTHY:
        return domain
    return _set_status(session, actor, domain, HEALTHY, note.strip())


def delete_domain(session: Session, actor: Actor, domain_id: str) -> None:
    domain = get_domain(session, actor.workspace_id, domain_id)
    session.delete(domain)
    session.flush()
    _changed(session, actor.workspace_id)


def _set_status(session: Session, actor: Actor, domain: Domain, status: str, note: str) -> Domain:
    domain.status = status
    domain.note = note[:500]
    domain.status_changed_at = utcnow()
    _record(session, domain, actor, status, note)
    session.flush()
    _changed(session, actor.workspace_id)
    return domain


def _record(session: Session, domain: Domain, actor: Actor, status: str, note: str = "") -> None:
    session.add(
        DomainStatusChange(
            id=new_id("dsc"),
            domain_id=domain.id,
            workspace_id=domain.workspace_id,
            status=status,
            note=note[:500],
            actor=actor.name[:60],
            created_at=utcnow(),
        )
    )


def _clear_primary(session: Session, workspace_id: str) -> None:
    session.execute(
        update(Domain)
        .where(Domain.workspace_id == workspace_id, Domain.is_primary.is_(True))
        .values(is_primary=False)
        .execution_options(synchronize_session="fetch")
    )


def _changed(session: Session, workspace_id: str) -> None:
    # Short URLs of every link in the workspace may have moved: caches keyed by workspace
    # (base URL, rendered QR codes) drop their entry once the change is committed.
    publish_after_commit(session, DOMAINS_CHANGED, workspace_id)
