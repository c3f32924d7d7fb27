"""The enrol-in-campaign action: a journey step joins the person to a fission campaign as a
participant through campaigns' own join (exactly once with the step's mark), on SQLite and
PostgreSQL; an unknown campaign is refused at save, a paused one fails the step with why."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from journey_support import Clock, workspace_with_contacts
from sqlalchemy import func, select, update

from liebian.app.runtime import Runtime
from liebian.automation import service
from liebian.automation.executor import Executor, ExecutorConfig
from liebian.automation.models import JourneyRun, JourneyStepExecution
from liebian.campaigns.models import Campaign, Participant
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import Invalid

INVITE = {
    "tiers": [{"invites": 1, "reward": {"kind": "coupon", "name": "5元券", "amount": 500}}],
    "qualifying_action": "signup",
}


def _campaign(runtime: Runtime, ws: str) -> str:
    from liebian.campaigns.service import create

    with session_scope(runtime.sessions) as s:
        principal = Principal(workspace_id=ws, role=Role.owner)
        return create(s, principal, campaign_type="invite", name="邀请有礼", config=INVITE).id


def _journey(runtime: Runtime, ws: str, campaign_id: str, contacts: list[str]) -> None:
    definition: dict[str, Any] = {
        "trigger": {"type": "manual"},
        "steps": [{"id": "join", "type": "enrol_campaign", "campaign_id": campaign_id}],
    }
    with session_scope(runtime.sessions) as s:
        j = service.create(s, ws, f"加入活动 {campaign_id}", definition)
        service.publish(s, j)
        service.enrol(s, j, contacts, trigger="manual")


def test_enrol_campaign_joins_once_and_a_paused_campaign_fails_the_step(
    runtime: Runtime,
) -> None:
    ws, contacts = workspace_with_contacts(runtime.sessions, 3)
    cid = _campaign(runtime, ws)
    _journey(runtime, ws, cid, contacts)
    clock = Clock(utcnow() + timedelta(seconds=1))  # steps enrolled now are due
    ex = Executor(runtime.sessions, clock=clock, config=ExecutorConfig(), runtime=runtime)
    try:
        assert ex.run_until_idle() == 3
        with session_scope(runtime.sessions) as s:
            rows = list(s.scalars(select(JourneyStepExecution)))
            assert {(r.status, r.result) for r in rows} == {("done", "joined")}
            assert {r.detail["participant_id"] for r in rows if r.detail} == set(
                s.scalars(select(Participant.id).where(Participant.campaign_id == cid))
            )
            # A crashed worker's step done again (its mark lost): campaigns' join is keyed by
            # (campaign, contact), so the person is still one participant.
            s.execute(update(JourneyStepExecution).values(status="pending", claim_token=None,
                                                          lease_until=None))  # fmt: skip
            s.execute(update(JourneyRun).values(status="active", finished_at=None))
        assert ex.run_until_idle() == 3
        with session_scope(runtime.sessions) as s:
            n = s.scalar(select(func.count()).where(Participant.campaign_id == cid))
            assert n == 3
            assert {r.result for r in s.scalars(select(JourneyStepExecution))} == {"joined_before"}

        # A campaign that is not running: the step fails with campaigns' reason.
        paused = _campaign(runtime, ws)
        with session_scope(runtime.sessions) as s:
            s.execute(update(Campaign).where(Campaign.id == paused).values(status="paused"))
        ws2_contacts = contacts[:1]
        _journey(runtime, ws, paused, ws2_contacts)
        # Enrolled at the real time, which on a loaded machine may be seconds after the clock
        # above was set: set the clock past it (advance(1) was flaky at load ~25).
        clock.now = utcnow() + timedelta(seconds=1)
        assert ex.run_until_idle() == 1
        with session_scope(runtime.sessions) as s:
            row = s.scalars(
                select(JourneyStepExecution).where(JourneyStepExecution.status == "failed")
            ).one()
            assert row.result is not None and row.result.startswith("campaign_not_active")
            assert s.scalar(select(func.count()).where(Participant.campaign_id == paused)) == 0
    finally:
        ex.close()


def test_enrol_campaign_unknown_campaign_is_refused(runtime: Runtime) -> None:
    ws, _ = workspace_with_contacts(runtime.sessions, 1)
    definition = {
        "trigger": {"type": "manual"},
        "steps": [{"id": "join", "type": "enrol_campaign", "campaign_id": "cmp_nope"}],
    }
    with session_scope(runtime.sessions) as s, pytest.raises(Invalid) as err:
        service.create(s, ws, "坏活动", definition)
    assert err.value.code == "unknown_campaign"
    assert err.value.details == {"field": "steps[0].campaign_id"}


def test_invite_link_in_a_message_after_joining(runtime: Runtime, client: Any) -> None:
    """enrol_campaign, then a send naming the campaign: the message carries the person's own
    invite link; the dry run shows it too; campaign fields without a campaign_id are a 422."""
    from journey_support import counting_receiver

    from liebian.automation.explain import dry_run
    from liebian.channels.config import ChannelInput, create_channel

    ws, contacts = workspace_with_contacts(runtime.sessions, 2)
    cid = _campaign(runtime, ws)
    text = (
        "邀请好友：{{ campaign.invite_url }}（{{ campaign.name }}）海报：{{ campaign.poster_url }}"
    )
    with counting_receiver() as rx:
        with session_scope(runtime.sessions) as s:
            chn, _ = create_channel(s, runtime, ws, ChannelInput(kind="webhook", name="hook",
                                                                 config={"url": rx.url}))  # fmt: skip
            steps: list[dict[str, Any]] = [
                {"id": "join", "type": "enrol_campaign", "campaign_id": cid},
                {"id": "msg", "type": "send", "channel_id": chn.id, "campaign_id": cid,
                 "category": "transactional", "content": {"text": text}},
            ]  # fmt: skip
            with pytest.raises(Invalid) as err:
                service.create(s, ws, "坏模板", {"trigger": {"type": "manual"},
                               "steps": [{**steps[1], "campaign_id": None}]})  # fmt: skip
            assert err.value.code in ("invalid_journey", "template_unknown_field")
            bare = {k: v for k, v in steps[1].items() if k != "campaign_id"}
            with pytest.raises(Invalid) as err:
                service.create(s, ws, "坏模板2", {"trigger": {"type": "manual"}, "steps": [bare]})
            assert err.value.code == "template_unknown_field"
            j = service.create(s, ws, "邀请", {"trigger": {"type": "manual"}, "steps": steps})
            service.publish(s, j)
            preview = dry_run(s, None, runtime.cipher, j, contacts[0], base_url="http://sho.rt")
            assert preview["steps"][1]["message"]["text"] == (
                f"邀请好友：http://sho.rt/p/{cid}/（加入活动后生成的邀请码）（邀请有礼）"
                f"海报：http://sho.rt/p/{cid}/me/poster")  # fmt: skip
            service.enrol(s, j, contacts, trigger="manual")
        clock = Clock(utcnow() + timedelta(seconds=1))
        ex = Executor(runtime.sessions, clock=clock, config=ExecutorConfig(), runtime=runtime)
        try:
            ex.run_until_idle()
            clock.advance(seconds=1)
            ex.run_until_idle()
        finally:
            ex.close()
        with session_scope(runtime.sessions) as s:
            codes = dict(s.execute(select(Participant.contact_id, Participant.invite_code)
                                   .where(Participant.campaign_id == cid)).all())  # fmt: skip
        base = runtime.settings.base_url.rstrip("/")
        got = sorted(b.get("content", b)["text"] for b in rx.bodies)
        assert got == sorted(f"邀请好友：{base}/p/{cid}/{codes[c]}（邀请有礼）海报：{base}/p/{cid}/me/poster"
                             for c in contacts)  # fmt: skip
        # The poster link is the share kit's page; it carries no sign-in, so a phone that is
        # not signed in gets the pages' sign-in notice, not someone's poster.
        r = client.get(f"/p/{cid}/me/poster", follow_redirects=False)
        assert r.status_code == 401 and "请先登录" in r.text
