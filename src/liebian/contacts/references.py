"""The rows of other domains that name a contact, looked up by table name in the shared
metadata (``liebian.models_registry`` loads every domain's models) so that ``contacts`` — which
campaigns, rewards and risk import — imports none of them back.

Each entry says how a merge moves the rows: ``scope`` lists the columns that, with the contact
column, are unique; a row whose survivor twin already exists stays with the merged contact
(the survivor keeps its own), and the merge reports how many stayed. ``keyed`` names columns
that hold the contact id as a key of their own (a community member's ``holder``): where they
name the merged contact they name the survivor after the move.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table

from liebian.kit.db import Base


@dataclass(frozen=True, slots=True)
class ContactReference:
    table: str
    column: str
    scope: tuple[str, ...] = ()  # unique together with ``column``
    timeline: bool = False
    keyed: tuple[str, ...] = ()  # hold the contact id as a key too: moved with it


REFERENCES: tuple[ContactReference, ...] = (
    ContactReference("participants", "contact_id", scope=("campaign_id",)),
    ContactReference("referrals", "referrer_contact_id"),
    ContactReference("referrals", "referee_contact_id"),
    ContactReference("campaign_groups", "leader_contact_id"),
    ContactReference("campaign_group_members", "contact_id", scope=("group_id",)),
    ContactReference("assists", "owner_contact_id"),
    ContactReference("assist_helps", "helper_contact_id", scope=("assist_id",)),
    ContactReference("campaign_conversions", "contact_id"),
    ContactReference("campaign_events", "contact_id"),
    ContactReference("reward_entries", "contact_id"),
    # A person in a community once: the survivor keeps its own place where both had one.
    ContactReference("community_members", "contact_id", scope=("community_id",), keyed=("holder",)),
    # A run stays with its journey version; where both ran a journey, the survivor keeps its
    # own (never two active runs of one journey for one person).
    ContactReference("journey_runs", "contact_id", scope=("journey_id",)),
)


def table(name: str) -> Table:
    try:
        return Base.metadata.tables[name]
    except KeyError:
        # A process that never imported the registry (a script): load every model once.
        import liebian.models_registry  # noqa: F401

        return Base.metadata.tables[name]
