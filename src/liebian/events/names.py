"""Names of the events liebian writes into the event store itself.

Analytics treats these as known in every workspace, so a report on clicks or joins before the
first one happened answers zeros instead of "unknown event" (that check exists to catch typos
in the names a workspace sends itself).
"""

from __future__ import annotations

from typing import Final

CLICK: Final = "click"  # the redirect and live-code scans (redirect/clicks.py)

# Fission actions (campaigns/fission_events.py documents when each is written and its user_id).
FISSION_EVENTS: Final = (
    "page_view", "invite_click", "share", "campaign_join", "invite", "invite_qualified",
    "group_open", "join_group", "group_success", "group_fail", "assist_start", "assist_help",
    "assist_unlock", "reward_issued", "reward_reversed",
)  # fmt: skip

SYSTEM_EVENTS: Final = frozenset((CLICK, *FISSION_EVENTS))
