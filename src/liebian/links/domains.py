"""Short domains and their health. Blocking is a manual, recorded decision; no auto-rotation."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.links.models import Domain


def public_base_url(session: Session, workspace_id: str, default_base_url: str) -> str:
    """Where this workspace's short links are served now: the primary healthy domain, else any
    healthy one, else the server's own base URL."""
    rows = session.scalars(
        select(Domain)
        .where(Domain.workspace_id == workspace_id, Domain.status == "healthy")
        .order_by(Domain.is_primary.desc(), Domain.created_at)
        .limit(1)
    ).first()
    if rows is None:
        return default_base_url.rstrip("/")
    return f"https://{rows.host}"
