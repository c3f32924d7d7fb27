"""Triggers and steps not covered elsewhere, on SQLite and PostgreSQL: a tag removed and a
segment left (through the trigger outbox), remove_tag, and enrol_journey handing the person on
to another journey."""

from __future__ import annotations

from datetime import timedelta

from journey_support import Clock, make_tag, workspace_with_contacts
from sqlalchemy import select

from liebian.app.runtime import Runtime
from liebian.automation import service
from liebian.automation.executor import Executor, ExecutorConfig
from liebian.automation.models import JourneyRun
from liebian.automation.triggers import drain_outbox, install
from liebian.contacts.models import ContactTag
from liebian.contacts.tags import add_tags, remove_tags
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope


def test_tag_removed_segment_exited_remove_tag_and_enrol_journey(runtime: Runtime) -> None:
    sessions = runtime.sessions
    install(sessions)
    ws, contacts = workspace_with_contacts(sessions, 3)
    vip, marker, done, left = (make_tag(sessions, ws, n) for n in ("VIP", "标记", "完成", "离开"))
    with session_scope(sessions) as s:
        follow = service.create(s, ws, "后续", {
            "trigger": {"type": "manual"},
            "steps": [{"id": "d", "type": "add_tag", "tag_ids": [done]}]})  # fmt: skip
        service.publish(s, follow)
        lapsed = service.create(s, ws, "取消 VIP", {
            "trigger": {"type": "tag_removed", "tag_id": vip},
            "steps": [{"id": "un", "type": "remove_tag", "tag_ids": [marker]},
                      {"id": "next", "type": "enrol_journey", "journey_id": follow.id}]})  # fmt: skip
        service.publish(s, lapsed)
        from liebian.segments.models import Segment

        s.add(Segment(id="seg_y", workspace_id=ws, name="活跃", kind="static"))
        s.flush()
        gone = service.create(s, ws, "离开人群", {
            "trigger": {"type": "segment_exited", "segment_id": "seg_y"},
            "steps": [{"id": "l", "type": "add_tag", "tag_ids": [left]}]})  # fmt: skip
        service.publish(s, gone)
        ids = (follow.id, lapsed.id, gone.id)
    with session_scope(sessions) as s:
        add_tags(s, ws, contacts, [vip, marker])
    with session_scope(sessions) as s:
        remove_tags(s, ws, contacts[:2], [vip])
        publish_after_commit(s, "segment.exited", {"workspace_id": ws, "segment_id": "seg_y",
                                                   "contact_ids": [contacts[2]]})  # fmt: skip
    clock = Clock(utcnow() + timedelta(seconds=1))
    assert drain_outbox(sessions, clock()) == 3
    ex = Executor(sessions, clock=clock, config=ExecutorConfig(), runtime=runtime)
    try:
        ex.run_until_idle()
        clock.advance(seconds=1)
        ex.run_until_idle()
    finally:
        ex.close()
    with session_scope(sessions) as s:
        runs = {(r.journey_id, r.contact_id, r.status) for r in s.scalars(select(JourneyRun))}
        tags = {(t.contact_id, t.tag_id) for t in s.scalars(select(ContactTag))}
    follow_id, lapsed_id, gone_id = ids
    assert runs == {
        *((lapsed_id, c, "completed") for c in contacts[:2]),
        *((follow_id, c, "completed") for c in contacts[:2]),
        (gone_id, contacts[2], "completed"),
    }
    assert {(c, t) for c, t in tags if t != vip} == {
        (contacts[0], done), (contacts[1], done),
        (contacts[2], marker), (contacts[2], left),
    }  # fmt: skip
