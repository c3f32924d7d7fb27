"""The durable executor on SQLite and PostgreSQL: each (run, step) once, versions kept,
pauses respected, a crashed claim resumed, deliveries counted at a loopback receiver."""

from __future__ import annotations

from typing import Any

from journey_support import Clock, counting_receiver, make_tag, workspace_with_contacts
from sqlalchemy import func, select

from liebian.app.runtime import Runtime
from liebian.automation import repository, service
from liebian.automation.executor import Executor, ExecutorConfig
from liebian.automation.models import JourneyRun, JourneyStepExecution
from liebian.kit.db import session_scope


def _definition(url: str, tag_vip: str, tag_done: str) -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "entry": {"mode": "once"},
        "steps": [
            {"id": "hello", "type": "webhook", "url": url, "payload": {"msg": "欢迎"}},
            {"id": "day1", "type": "wait", "duration": {"days": 1}},
            {
                "id": "vip",
                "type": "branch",
                "condition": {"type": "tags", "match": "any", "tags": [tag_vip]},
                "then": "coupon",
                "else": "tag",
            },
            {
                "id": "coupon",
                "type": "grant_reward",
                "kind": "coupon",
                "amount": 500,
                "name": "新人券",
                "next": "tag",
            },
            {"id": "tag", "type": "add_tag", "tag_ids": [tag_done]},
        ],
    }


def _executor(runtime: Runtime, clock: Clock, **kw: Any) -> Executor:
    config = ExecutorConfig(allow_private=True, **kw)
    return Executor(runtime.sessions, clock=clock, config=config, runtime=runtime)


def test_each_step_once_versions_pause_and_crash(runtime: Runtime) -> None:
    from liebian.contacts.tags import add_tags
    from liebian.rewards.models import RewardEntry

    sessions = runtime.sessions
    ws, contacts = workspace_with_contacts(sessions, 4)
    vip, done = make_tag(sessions, ws, "VIP"), make_tag(sessions, ws, "已完成")
    clock = Clock()
    with counting_receiver(fail_first=1) as rx:
        with session_scope(sessions) as s:
            add_tags(s, ws, [contacts[0]], [vip])
            j = service.create(
                s, ws, "新人旅程", _definition(rx.url, vip, done), allow_private_urls=True
            )
            assert service.publish(s, j, allow_private_urls=True) == 1
            got = service.enrol(s, j, contacts[:3], trigger="manual", now=clock())
            # once ever: the same people again are skipped
            again = service.enrol(s, j, contacts[:3], trigger="manual", now=clock())
            jid = j.id
        assert (got.entered, again.entered, again.skipped) == (3, 0, 3)
        ex = _executor(runtime, clock, retry_backoff=__import__("datetime").timedelta(seconds=30))
        try:
            ex.run_until_idle()
            # The receiver refused the first POST: that step waits for its retry.
            assert rx.total == 2
            clock.advance(seconds=31)
            ex.run_until_idle()
            assert rx.total == 3 and set(rx.keys.values()) == {1}
            # Version 2 is published while everyone waits a day: they finish on version 1.
            with session_scope(sessions) as s:
                j = service.get(s, ws, jid)
                draft = dict(j.draft)
                draft["steps"] = [
                    *draft["steps"][:2],
                    {"id": "bye", "type": "add_tag", "tag_ids": [vip]},
                ]
                service.update(s, j, definition=draft, allow_private_urls=True)
                assert service.publish(s, j, allow_private_urls=True) == 2
                service.enrol(s, j, [contacts[3]], trigger="manual", now=clock())
                service.pause(s, j)
            clock.advance(days=1, seconds=1)
            # Paused: nothing due runs.
            assert ex.run_until_idle() == 0
            with session_scope(sessions) as s:
                service.resume(s, service.get(s, ws, jid))
            # A worker claims the due steps and dies before doing anything.
            with session_scope(sessions) as s:
                lost = repository.claim(s, clock(), clock() + ex.config.lease, "dead", 500)
            assert lost
            assert ex.run_until_idle() == 0  # leased to the dead worker
            clock.advance(seconds=ex.config.lease.total_seconds() + 1)
            ex.run_until_idle()
            clock.advance(days=2)
            assert ex.run_until_idle() == 1  # contact 3 (version 2): bye, a day after day1
            assert ex.run_until_idle() == 0
        finally:
            ex.close()
        with session_scope(sessions) as s:
            runs = {r.contact_id: r for r in s.scalars(select(JourneyRun))}
            assert {r.status for r in runs.values()} == {"completed"}
            assert {r.version for c, r in runs.items() if c != contacts[3]} == {1}
            assert runs[contacts[3]].version == 2
            steps = list(s.scalars(select(JourneyStepExecution)))
            per_run: dict[str, list[str]] = {}
            for e in steps:
                per_run.setdefault(e.run_id, []).append(e.step_id)
            paths = sorted(tuple(sorted(v)) for v in per_run.values())
            # contact 0 is VIP: coupon; 1 and 2: no coupon; 3 ran version 2.
            assert paths == sorted(
                [
                    ("coupon", "day1", "hello", "tag", "vip"),
                    ("day1", "hello", "tag", "vip"),
                    ("day1", "hello", "tag", "vip"),
                    ("bye", "day1", "hello"),
                ]
            )
            assert {e.status for e in steps} == {"done"}
            rewards = list(s.scalars(select(RewardEntry)))
            assert [(r.contact_id, r.amount, r.status) for r in rewards] == [
                (contacts[0], 500, "issued")
            ]
            retried = [e for e in steps if e.step_id == "vip"]
            assert max(e.attempts for e in retried) == 2  # the dead worker's claim, then ours
            from liebian.contacts.models import ContactTag

            tagged = set(s.scalars(select(ContactTag.contact_id).where(ContactTag.tag_id == done)))
            assert tagged == set(contacts[:3])
            assert s.scalar(select(func.count()).select_from(JourneyStepExecution)) == 16
    assert rx.total == 4  # three v1 webhooks + contact 3's, each key once
    assert set(rx.keys.values()) == {1}


def test_exit_condition_and_archive(runtime: Runtime) -> None:
    sessions = runtime.sessions
    ws, contacts = workspace_with_contacts(sessions, 3)
    buyer = make_tag(sessions, ws, "已购")
    clock = Clock()
    definition = {
        "trigger": {"type": "manual"},
        "entry": {"mode": "every_time"},
        "exit": {"type": "tags", "match": "any", "tags": [buyer]},
        "steps": [
            {"id": "w", "type": "wait", "duration": {"hours": 2}},
            {"id": "t", "type": "add_tag", "tag_ids": [buyer]},
        ],
    }
    with session_scope(sessions) as s:
        from liebian.contacts.tags import add_tags

        j = service.create(s, ws, "挽回", definition)
        service.publish(s, j)
        service.enrol(s, j, contacts, trigger="manual", now=clock())
        # every_time, but never twice at once
        assert service.enrol(s, j, contacts, trigger="manual", now=clock()).entered == 0
        jid = j.id
    from liebian.events.spool import Spool

    runtime.spool = Spool(runtime.settings.spool_dir)
    ex = _executor(runtime, clock)
    try:
        ex.run_until_idle()
        with session_scope(sessions) as s:
            add_tags(s, ws, [contacts[0]], [buyer])
        clock.advance(hours=3)
        ex.run_until_idle()
        with session_scope(sessions) as s:
            runs = {r.contact_id: r for r in s.scalars(select(JourneyRun))}
            assert runs[contacts[0]].status == "exited"
            assert runs[contacts[0]].exit_reason == "exit_condition"
            assert runs[contacts[1]].status == "completed"
            # every_time: finished people may enter again
            j = service.get(s, ws, jid)
            assert service.enrol(s, j, contacts[1:], trigger="manual", now=clock()).entered == 2
            assert service.archive(s, j, clock()) == 2
        assert ex.run_until_idle() == 0
    finally:
        ex.close()
    # every finished step and run is an event in the spool (after its commit)
    import orjson

    lines = [
        orjson.loads(x)
        for path in sorted(runtime.settings.spool_dir.glob("seg-*"))
        for x in path.read_bytes().splitlines()
        if x
    ]
    props = [orjson.loads(e["properties"]) if isinstance(e["properties"], str) else e["properties"]
             for e in lines]  # fmt: skip
    events = sorted(
        (e["event"], e["user_id"], p.get("step_id")) for e, p in zip(lines, props, strict=True)
    )
    assert events == sorted([
        ("journey_step", "u000000", "w"), ("journey_step", "u000001", "w"),
        ("journey_step", "u000002", "w"), ("journey_step", "u000000", "t"),
        ("journey_step", "u000001", "t"), ("journey_step", "u000002", "t"),
        ("journey_exited", "u000000", None), ("journey_completed", "u000001", None),
        ("journey_completed", "u000002", None),
    ])  # fmt: skip


def test_send_step_through_channels_quiet_hours_template_and_task(runtime: Runtime) -> None:
    from datetime import UTC, datetime

    from liebian.channels.config import ChannelInput, create_channel
    from liebian.channels.models import StaffTask
    from liebian.contacts.service import ContactInput, upsert

    sessions = runtime.sessions
    ws, _ = workspace_with_contacts(sessions, 0)
    with session_scope(sessions) as s:
        people = [
            upsert(s, runtime.cipher, ws, ContactInput(external_id="n1", nickname="小红")).id,
            upsert(s, runtime.cipher, ws, ContactInput(external_id="n2")).id,
        ]
    # 22:00 in Shanghai: inside the default quiet hours (21:00–09:00).
    clock = Clock(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    with counting_receiver() as rx:
        with session_scope(sessions) as s:
            chn, _secret = create_channel(
                s, runtime, ws, ChannelInput(kind="webhook", name="hook", config={"url": rx.url})
            )
            definition = {
                "trigger": {"type": "manual"},
                "steps": [
                    {"id": "hi", "type": "send", "channel_id": chn.id,
                     "content": {"text": "{{ contact.nickname | default('朋友') }}，欢迎加入"}},
                    {"id": "call", "type": "task", "title": "1v1 回访 {{ contact.external_id }}"},
                ],
            }  # fmt: skip
            j = service.create(s, ws, "欢迎", definition)
            service.publish(s, j)
            service.enrol(s, j, people, trigger="manual", now=clock())
        ex = _executor(runtime, clock)
        try:
            ex.run_until_idle()
            assert rx.total == 0  # deferred to 09:00
            with session_scope(sessions) as s:
                waiting = list(s.scalars(select(JourneyStepExecution)))
                assert {e.result for e in waiting} == {"deferred:quiet_hours"}
                assert {e.status for e in waiting} == {"pending"}
                from liebian.automation.explain import explain_contact

                (run,) = explain_contact(s, ws, people[0], clock())
                assert run["steps"][0]["why_not"] == "deferred:quiet_hours"
            clock.advance(hours=11, minutes=1)
            ex.run_until_idle()
            assert ex.run_until_idle() == 0
        finally:
            ex.close()
    assert rx.total == 2 and set(rx.keys.values()) == {1}
    texts = sorted(b.get("content", b).get("text", "") for b in rx.bodies)
    assert texts == sorted(["朋友，欢迎加入", "小红，欢迎加入"]), rx.bodies
    with session_scope(sessions) as s:
        tasks = sorted(t.title for t in s.scalars(select(StaffTask)))
        assert tasks == ["1v1 回访 n1", "1v1 回访 n2"]
        assert {r.status for r in s.scalars(select(JourneyRun))} == {"completed"}
