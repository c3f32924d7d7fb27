"""Every template end to end at service level, on a fast clock: created in one step, started
by its own trigger (events, the date scan; the inactivity template by hand), run through its
waits, branches and rewards, messages counted at a loopback channel receiver."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from journey_support import Clock, counting_receiver, workspace_with_contacts
from sqlalchemy import func, select

from liebian.app.runtime import Runtime
from liebian.automation import service
from liebian.automation.executor import Executor, ExecutorConfig
from liebian.automation.models import JourneyRun, JourneyStepExecution
from liebian.automation.templates import TEMPLATES, Options
from liebian.automation.triggers import apply_events, scan
from liebian.events.hooks import HookEvent
from liebian.kit.db import session_scope

# template → (steps sent per contact 0 / contact 1, rewards, tasks); contact 0 always does
# what a wait_event step waits for, contact 1 never does.
EXPECTED: dict[str, tuple[list[str], list[str], int, int]] = {
    "warmup_7day": (["d0_welcome", "d1_task", "d2_tips", "d4_invite"],
                    ["d0_welcome", "d1_task", "d2_tips", "d4_invite"], 2, 2),
    "first_day_activation": (["task"], ["task", "remind"], 1, 0),
    "winback_30day": (["nudge"], ["nudge", "last"], 2, 0),
    "birthday": (["invite"], [], 1, 0),
    "post_purchase_share": (["ask"], ["ask"], 1, 0),
    "group_buy_reminder": ([], ["remind"], 0, 0),
}  # fmt: skip


def _event(ws: str, name: str, user: str, eid: str, at: Any) -> HookEvent:
    return HookEvent(workspace_id=ws, event_id=eid, event=name, ts=at, received_at=at,
                     user_id=user)  # fmt: skip


def test_every_template_end_to_end(runtime: Runtime) -> None:
    from liebian.channels.config import ChannelInput, create_channel
    from liebian.channels.models import StaffTask
    from liebian.contacts.attributes import set_attributes
    from liebian.rewards.models import RewardEntry

    assert set(EXPECTED) == set(TEMPLATES)
    sessions = runtime.sessions
    clock = Clock()
    with counting_receiver() as rx:
        for template, (sent0, sent1, rewards, tasks) in EXPECTED.items():
            ws, contacts = workspace_with_contacts(sessions, 2)
            users = ["u000000", "u000001"]
            with session_scope(sessions) as s:
                chn, _ = create_channel(s, runtime, ws, ChannelInput(
                    kind="webhook", name="hook", config={"url": rx.url}))  # fmt: skip
                j = service.from_template(s, ws, template, Options(channel_id=chn.id),
                                          publish_now=True)  # fmt: skip
                trigger = j.draft["trigger"]
                jid = j.id
            now = clock()
            with session_scope(sessions) as s:
                if trigger["type"] == "event":
                    apply_events(s, [_event(ws, trigger["event"], u, f"{template}-{u}", now)
                                     for u in users], now=now)  # fmt: skip
                elif trigger["type"] == "date_attribute":
                    bday = (now + timedelta(days=7)).date()
                    set_attributes(
                        s, ws, contacts[0], {"birthday": bday.replace(year=1990).isoformat()}
                    )
                    set_attributes(s, ws, contacts[1], {"birthday": "1990-01-01"})
                else:
                    service.enrol(s, service.get(s, ws, jid), contacts, trigger="manual", now=now)
            if trigger["type"] == "date_attribute":
                with session_scope(sessions) as s:
                    assert scan(s, now) == 1
            before = Counter(rx.keys)
            ex = Executor(sessions, clock=clock, config=ExecutorConfig(allow_private=True),
                          runtime=runtime)  # fmt: skip
            try:
                _run_to_end(ex, clock, runtime, ws, jid, contacts[0], users[0])
            finally:
                ex.close()
            with session_scope(sessions) as s:
                runs = {r.id: r.contact_id for r in s.scalars(
                    select(JourneyRun).where(JourneyRun.journey_id == jid))}  # fmt: skip
                assert all(r.status == "completed" for r in s.scalars(
                    select(JourneyRun).where(JourneyRun.journey_id == jid))), template  # fmt: skip
                got_rewards = s.scalar(select(func.count()).select_from(RewardEntry)
                                       .where(RewardEntry.workspace_id == ws))  # fmt: skip
                got_tasks = s.scalar(select(func.count()).select_from(StaffTask)
                                     .where(StaffTask.workspace_id == ws))  # fmt: skip
            new = Counter(rx.keys) - before
            assert set(new.values()) <= {1}, template
            sent: dict[str, list[str]] = {c: [] for c in contacts}
            for key in sorted(new, key=lambda k: k.split(":")[1]):
                run, step = key.split(":")
                sent[runs[run]].append(step)
            assert sorted(sent[contacts[0]]) == sorted(sent0), (template, sent)
            assert sorted(sent[contacts[1]]) == sorted(sent1), (template, sent)
            assert (got_rewards, got_tasks) == (rewards, tasks), template


def _run_to_end(ex: Executor, clock: Clock, runtime: Runtime, ws: str, jid: str,
                doer: str, doer_user: str) -> None:  # fmt: skip
    """Run what is due, let contact 0 do whatever it is waited for, jump to the next due
    time; until nothing is pending."""
    for _ in range(40):
        ex.run_until_idle()
        with session_scope(runtime.sessions) as s:
            waiting = list(s.execute(
                select(JourneyStepExecution.id, JourneyStepExecution.waiting_event)
                .join(JourneyRun, JourneyRun.id == JourneyStepExecution.run_id)
                .where(JourneyRun.journey_id == jid, JourneyRun.contact_id == doer,
                       JourneyStepExecution.status == "pending",
                       JourneyStepExecution.waiting_event.is_not(None),
                       JourneyStepExecution.event_matched.is_(False))))  # fmt: skip
            if waiting:
                apply_events(s, [_event(ws, ev, doer_user, f"w-{i}", clock())
                                 for i, ev in waiting], now=clock())  # fmt: skip
                continue
            due = s.scalar(
                select(func.min(JourneyStepExecution.due_at)).where(
                    JourneyStepExecution.journey_id == jid,
                    JourneyStepExecution.status == "pending"))  # fmt: skip
        if due is None:
            return
        clock.now = max(clock.now, due)
    raise AssertionError("the journey did not finish")
