"""Channel configuration per workspace, guard settings (quiet hours) and opt-outs.

Secrets (SMTP password, robot key, SMS / webhook signing secret) are encrypted with the
runtime's cipher and never returned; :func:`channel_out` shows a hint (the last 4 characters).
A generated webhook secret is returned once, by create (like webhooks' endpoints).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from liebian.channels.base import adapter_kind
from liebian.channels.guards import parse_hhmm
from liebian.channels.models import Channel, ChannelGuardSettings, ChannelOptOut
from liebian.kit.clock import utcnow
from liebian.kit.errors import Invalid, NotFound
from liebian.kit.ids import new_id

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime

_UNSET: Any = object()


@dataclass
class ChannelInput:
    kind: str
    name: str
    config: Mapping[str, Any]
    secret: str | None = None
    cap_count: int | None = None
    cap_hours: int = 24
    monthly_cap: int | None = None
    active: bool = True


def _check_caps(cap_count: int | None, cap_hours: int, monthly_cap: int | None) -> None:
    if cap_count is not None and not 1 <= cap_count <= 1000:
        raise Invalid("cap_count is 1 to 1000 messages (or null: no cap)",
                      details={"field": "cap_count"})  # fmt: skip
    if not 1 <= cap_hours <= 24 * 31:
        raise Invalid("cap_hours is 1 to 744 hours", details={"field": "cap_hours"})
    if monthly_cap is not None and not 0 <= monthly_cap <= 10_000:
        raise Invalid("monthly_cap is 0 to 10000 (or null)", details={"field": "monthly_cap"})


def _hint(secret: str | None) -> str | None:
    return ("…" + secret[-4:]) if secret and len(secret) >= 8 else ("…" if secret else None)


def create_channel(
    session: Session, runtime: Runtime, workspace_id: str, data: ChannelInput
) -> tuple[Channel, str | None]:
    """(channel, the generated secret to show once or None)."""
    from liebian.channels.service import adapter_context

    kind = adapter_kind(data.kind)
    name = data.name.strip()
    if not name or len(name) > 100:
        raise Invalid("name is required (at most 100 characters)", details={"field": "name"})
    _check_caps(data.cap_count, data.cap_hours, data.monthly_cap)
    config, secret = kind.check_config(data.config, data.secret, adapter_context(runtime))
    now = utcnow()
    channel = Channel(
        id=new_id("chn"), workspace_id=workspace_id, kind=kind.kind, name=name, config=config,
        secret_enc=runtime.cipher.encrypt(secret) if secret else None, secret_hint=_hint(secret),
        active=data.active, cap_count=data.cap_count, cap_hours=data.cap_hours,
        monthly_cap=data.monthly_cap, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(channel)
    session.flush()
    # Only a secret the kind made up (a webhook's signing secret) is shown, once; a key the
    # operator pasted (the robot's, inside its URL) is never echoed back.
    generated = secret if getattr(kind, "generates_secret", False) and not data.secret else None
    return channel, generated


def get_channel(session: Session, workspace_id: str, channel_id: str) -> Channel:
    channel = session.get(Channel, channel_id)
    if channel is None or channel.workspace_id != workspace_id:
        raise NotFound(f"no channel {channel_id!r} in this workspace", code="channel_not_found")
    return channel


def list_channels(session: Session, workspace_id: str) -> list[Channel]:
    return list(
        session.scalars(
            select(Channel).where(Channel.workspace_id == workspace_id).order_by(Channel.id)
        )
    )


def update_channel(
    session: Session,
    runtime: Runtime,
    workspace_id: str,
    channel_id: str,
    *,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    secret: str | None = None,
    cap_count: int | None = _UNSET,
    cap_hours: int | None = None,
    monthly_cap: int | None = _UNSET,
    active: bool | None = None,
) -> Channel:
    """Change what is given; a new ``config`` is checked whole (with the stored secret when
    no new one is given)."""
    from liebian.channels.service import adapter_context

    channel = get_channel(session, workspace_id, channel_id)
    kind = adapter_kind(channel.kind)
    if name is not None:
        if not name.strip() or len(name) > 100:
            raise Invalid("name is 1 to 100 characters", details={"field": "name"})
        channel.name = name.strip()
    new_caps = (
        channel.cap_count if cap_count is _UNSET else cap_count,
        channel.cap_hours if cap_hours is None else cap_hours,
        channel.monthly_cap if monthly_cap is _UNSET else monthly_cap,
    )
    _check_caps(*new_caps)
    channel.cap_count, channel.cap_hours, channel.monthly_cap = new_caps
    if config is not None or secret is not None:
        old_secret = runtime.cipher.decrypt(channel.secret_enc) if channel.secret_enc else None
        clean, kept = kind.check_config(
            config if config is not None else channel.config,
            secret or old_secret,
            adapter_context(runtime),
        )
        channel.config = clean
        channel.secret_enc = runtime.cipher.encrypt(kept) if kept else None
        channel.secret_hint = _hint(kept)
    if active is not None:
        channel.active = active
    channel.updated_at = utcnow()
    session.flush()
    return channel


def channel_out(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id, "kind": channel.kind, "name": channel.name, "config": channel.config,
        "has_secret": channel.secret_enc is not None, "secret_hint": channel.secret_hint,
        "active": channel.active, "cap_count": channel.cap_count, "cap_hours": channel.cap_hours,
        "monthly_cap": channel.monthly_cap, "created_at": channel.created_at,
        "updated_at": channel.updated_at,
    }  # fmt: skip


# -- quiet hours ------------------------------------------------------------------------------


def guard_settings(session: Session, workspace_id: str) -> dict[str, Any]:
    from liebian.channels.service import quiet_hours, workspace_timezone

    enabled, start, end = quiet_hours(session, workspace_id)
    return {"quiet_enabled": enabled, "quiet_start": start, "quiet_end": end,
            "timezone": workspace_timezone(session, workspace_id)}  # fmt: skip


def set_guard_settings(
    session: Session, workspace_id: str, *, enabled: bool, start: str, end: str
) -> dict[str, Any]:
    parse_hhmm(start, "quiet_start")
    parse_hhmm(end, "quiet_end")
    row = session.get(ChannelGuardSettings, workspace_id)
    if row is None:
        row = ChannelGuardSettings(workspace_id=workspace_id)
        session.add(row)
    row.quiet_enabled, row.quiet_start, row.quiet_end = enabled, start, end
    row.updated_at = utcnow()
    session.flush()
    return guard_settings(session, workspace_id)


# -- opt-outs ---------------------------------------------------------------------------------


def opt_out(
    session: Session, workspace_id: str, contact_id: str, channel_id: str, via: str = "api"
) -> None:
    """Idempotent; ``channel_id`` "*" opts out of every channel."""
    if channel_id != "*":
        get_channel(session, workspace_id, channel_id)
    if session.get(ChannelOptOut, (workspace_id, contact_id, channel_id)) is None:
        with session.begin_nested():
            session.add(ChannelOptOut(workspace_id=workspace_id, contact_id=contact_id,
                                      channel_id=channel_id, via=via, created_at=utcnow()))  # fmt: skip


def opt_in(session: Session, workspace_id: str, contact_id: str, channel_id: str) -> None:
    session.execute(
        delete(ChannelOptOut).where(
            ChannelOptOut.workspace_id == workspace_id,
            ChannelOptOut.contact_id == contact_id,
            ChannelOptOut.channel_id == channel_id,
        )
    )


def opt_outs(session: Session, workspace_id: str, contact_id: str) -> list[ChannelOptOut]:
    return list(
        session.scalars(
            select(ChannelOptOut)
            .where(
                ChannelOptOut.workspace_id == workspace_id, ChannelOptOut.contact_id == contact_id
            )
            .order_by(ChannelOptOut.channel_id)
        )
    )
