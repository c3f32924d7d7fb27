"""Conversions reach the fission engine from event ingestion, through the event hooks.

``POST /api/v1/events`` spools every accepted event and answers; the conversion events a
campaign cares about (purchase/order_paid, refund, signup, join_group, leave_group/unfollow,
active — ``conversions.CONVERSION_EVENTS``) also go to the hooks spool, and the hooks worker
(``events/hooks.py``) hands them here in batches, in arrival order, inside its transaction,
once each. This consumer applies them to campaigns, rewards and commissions set-based
(``conversions.apply_conversions``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from liebian.campaigns.conversions import CONVERSION_EVENTS, apply_conversions
from liebian.events.hooks import HookEvent


class CampaignConversions:
    """The campaigns' event consumer: qualification, rewards, distribution commission."""

    name = "campaigns"
    events = CONVERSION_EVENTS

    def __call__(self, session: Session, events: Sequence[HookEvent]) -> None:
        by_workspace: dict[str, list[HookEvent]] = {}
        for event in events:  # a person is in one workspace: their order is kept
            by_workspace.setdefault(event.workspace_id, []).append(event)
        for workspace_id, batch in by_workspace.items():
            apply_conversions(session, workspace_id, batch)
