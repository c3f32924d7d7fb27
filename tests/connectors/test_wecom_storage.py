"""Storage behaviour of the WeCom connector on SQLite and PostgreSQL, under real concurrency:
a callback delivered many times at once is applied once; concurrent mass sends never take a
customer past WeCom's monthly cap (counted at the loopback WeCom); the corp tag mirror."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from wecom_fake import AES_KEY, CORP_ID, SECRET, TOKEN, contact_event, fake_wecom, seal

from liebian.app.runtime import Runtime
from liebian.connectors.wecom import service, tags
from liebian.connectors.wecom.callbacks import TOPIC_CONTACT_ADDED
from liebian.connectors.wecom.models import WecomCallback, WecomMassSend, WecomMonthlyReceipt
from liebian.contacts import tags as contact_tags
from liebian.contacts.models import Tag
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.workspaces.service import create_workspace

THREADS = 8


def _connected(runtime: Runtime, url: str) -> tuple[Principal, str]:
    runtime.settings.wecom_api_base = url
    with session_scope(runtime.sessions) as session:
        ws = create_workspace(session, "企微")
        principal = Principal(ws.id, Role.owner)
        conn = service.connect(
            session, principal, runtime.cipher,
            service.ConnectionInput(CORP_ID, SECRET, TOKEN, AES_KEY),
        )  # fmt: skip
        return principal, conn.id


def _race(work: Callable[[int], Any], n: int = THREADS) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_concurrent_callbacks_and_mass_sends(runtime: Runtime) -> None:
    added: list[Any] = []
    runtime.bus.subscribe(TOPIC_CONTACT_ADDED, added.append)
    with fake_wecom() as fake:
        principal, conn_id = _connected(runtime, fake.url)
        ws = principal.workspace_id
        now = int(time.time())
        xml = contact_event("add_external_contact", external="wmRace", state="s1",
                            welcome_code="WC", create_time=now)  # fmt: skip
        # WeCom's retries racing each other (each freshly signed, as WeCom does).
        envelopes = [seal(xml, timestamp=now) for _ in range(THREADS)]
        results = _race(
            lambda i: service.receive_callback(
                runtime, conn_id, envelopes[i].body, **envelopes[i].params
            )
        )
        assert sorted(r.duplicate for r in results) == [False] + [True] * (THREADS - 1)
        assert len(added) == 1
        with runtime.read_sessions() as session:
            assert session.scalar(select(func.count()).select_from(WecomCallback)) == 1

        # Eight different mass sends to one customer at once: WeCom's cap (4) holds.
        outcomes = _race(
            lambda i: service.add_msg_template(
                runtime, ws, idempotency_key=f"race-{i}", external_userids=["wmRace"], text="x"
            )
        )
        statuses = sorted(o.status for o in outcomes)
        assert statuses == ["created"] * 4 + ["refused"] * 4, statuses
        assert fake.received == {"wmRace": 4}
        assert all(o.reason == "monthly_cap" for o in outcomes if o.status == "refused")
        # One key sent from several threads at once: one task at WeCom.
        fake.received.clear()
        month = service.month_of(utcnow() + timedelta(days=40))
        same = _race(
            lambda i: service.add_msg_template(
                runtime, ws, idempotency_key="same", external_userids=["wmOther"], text="y",
                now=utcnow() + timedelta(days=40),
            ),
            4,
        )  # fmt: skip
        assert {o.id for o in same} and len({o.id for o in same}) == 1
        assert fake.received == {"wmOther": 1}
        with runtime.read_sessions() as session:
            assert session.scalar(select(func.count()).select_from(WecomMassSend)) == THREADS + 1
            receipt = session.get(WecomMonthlyReceipt, (ws, "wmOther", month))
            assert receipt is not None and receipt.count == 1


def test_corp_tag_mirror_both_ways(runtime: Runtime) -> None:
    with fake_wecom() as fake:
        principal, conn_id = _connected(runtime, fake.url)
        ws = principal.workspace_id
        with session_scope(runtime.sessions) as session:
            vip = contact_tags.create_tag(session, ws, "VIP", "#ff0000", None)
            vip_id = vip.id
        fake.corp_tags = [
            {"group_id": "g1", "group_name": "客户等级", "tag": [
                {"id": "et-vip", "name": "VIP", "order": 1},
                {"id": "et-new", "name": "新客", "order": 2},
            ]},
            {"group_id": "g2", "group_name": "兴趣", "tag": [{"id": "et-baby", "name": "0-3岁"}]},
        ]  # fmt: skip
        first = tags.sync_corp_tags(runtime, principal)
        assert first == {"created": 2, "linked": 1, "renamed": 0, "unlinked": 0, "skipped": 0}
        mirror = {m["corp_tag_id"]: m["tag_id"] for m in tags.tag_map(runtime, principal)}
        assert mirror["et-vip"] == vip_id
        # Idempotent: the same list changes nothing.
        assert tags.sync_corp_tags(runtime, principal)["created"] == 0

        # A customer followed by two staff members, then tagged in liebian.
        now = int(time.time())
        for staff in ("zhangsan", "lisi"):
            env = seal(contact_event("add_external_contact", external="wmT", staff=staff,
                                     create_time=now), timestamp=now)  # fmt: skip
            service.receive_callback(runtime, conn_id, env.body, **env.params)
        with session_scope(runtime.sessions) as session:
            from liebian.connectors.wecom.models import WecomFollow

            contact_id = session.scalar(
                select(WecomFollow.contact_id).where(WecomFollow.external_userid == "wmT")
            )
            assert contact_id
            contact_tags.add_tags(session, ws, [contact_id], [mirror["et-vip"], mirror["et-baby"]])
        later = utcnow() + timedelta(minutes=1)
        assert tags.push_tag_changes(runtime, now=later) == 2
        assert sorted((m["userid"], tuple(m["add_tag"]), tuple(m["remove_tag"])) for m in fake.marks) == [
            ("lisi", ("et-baby", "et-vip"), ()), ("zhangsan", ("et-baby", "et-vip"), ()),
        ]  # fmt: skip
        # The cursor moved: nothing is pushed twice.
        assert tags.push_tag_changes(runtime, now=later) == 0
        with session_scope(runtime.sessions) as session:
            contact_tags.remove_tags(session, ws, [contact_id], [mirror["et-vip"]])
        # The secret was reset in WeCom: nothing pushed, the change waits (cursor kept).
        fake.expire_tokens()
        fake.refuse_tokens = True
        assert tags.push_tag_changes(runtime, now=utcnow() + timedelta(minutes=2)) == 0
        fake.refuse_tokens = False
        assert tags.push_tag_changes(runtime, now=utcnow() + timedelta(minutes=2)) == 2
        assert fake.marks[-1]["remove_tag"] == ["et-vip"] and fake.marks[-1]["add_tag"] == []

        # Renamed and removed at WeCom.
        fake.corp_tags = [{"group_id": "g1", "group_name": "客户等级", "tag": [
            {"id": "et-vip", "name": "VIP"}, {"id": "et-new", "name": "首单新客"}]}]  # fmt: skip
        assert tags.sync_corp_tags(runtime, principal) == {
            "created": 0, "linked": 0, "renamed": 1, "unlinked": 1, "skipped": 0}  # fmt: skip
        with runtime.read_sessions() as session:
            assert session.get(Tag, mirror["et-new"]).name == "首单新客"  # type: ignore[union-attr]
            assert session.get(Tag, mirror["et-baby"]) is not None  # unlinked, kept


def test_tags_staff_set_inside_wecom_are_pulled_on_the_edit_callback(runtime: Runtime) -> None:
    """edit_external_contact → externalcontact/get at the loopback WeCom → the contact's
    mirrored tags follow what staff set in WeCom; tags not mirrored are left alone."""
    from liebian.connectors.wecom import welcome
    from liebian.connectors.wecom.models import WecomFollow
    from liebian.contacts.models import ContactTag

    auto = welcome.install(runtime)
    with fake_wecom() as fake:
        principal, conn_id = _connected(runtime, fake.url)
        ws = principal.workspace_id
        fake.corp_tags = [{"group_id": "g1", "group_name": "客户等级", "tag": [
            {"id": "et-vip", "name": "VIP"}, {"id": "et-new", "name": "新客"}]}]  # fmt: skip
        tags.sync_corp_tags(runtime, principal)
        mirror = {m["corp_tag_id"]: m["tag_id"] for m in tags.tag_map(runtime, principal)}
        now = int(time.time())

        def callback(change: str, staff: str, n: int) -> None:
            env = seal(contact_event(change, external="wmE", staff=staff, create_time=now + n),
                       timestamp=now)  # fmt: skip
            service.receive_callback(runtime, conn_id, env.body, **env.params)
            auto.drain()

        callback("add_external_contact", "zhangsan", 0)
        with session_scope(runtime.sessions) as session:
            contact_id = session.scalar(
                select(WecomFollow.contact_id).where(WecomFollow.external_userid == "wmE")
            )
            own = contact_tags.create_tag(session, ws, "到店", "#000000", None)
            contact_tags.add_tags(session, ws, [contact_id], [own.id])
            own_id = own.id

        def tag_ids() -> set[str]:
            with runtime.read_sessions() as session:
                return set(
                    session.scalars(
                        select(ContactTag.tag_id).where(ContactTag.contact_id == contact_id)
                    )
                )

        # Staff tag the customer VIP inside WeCom (and a corp tag liebian has not seen yet).
        fake.corp_tags[0]["tag"].append({"id": "et-gold", "name": "金卡"})
        fake.customer_tags["wmE"] = {"zhangsan": {"et-vip", "et-gold"}}
        callback("edit_external_contact", "zhangsan", 1)
        mirror = {m["corp_tag_id"]: m["tag_id"] for m in tags.tag_map(runtime, principal)}
        assert tag_ids() == {mirror["et-vip"], mirror["et-gold"], own_id}
        assert "/cgi-bin/externalcontact/get" in fake.paths()

        # Another staff member adds 新客; the first removes VIP: the union of the follows.
        fake.customer_tags["wmE"] = {"zhangsan": {"et-gold"}, "lisi": {"et-new"}}
        callback("edit_external_contact", "lisi", 2)
        assert tag_ids() == {mirror["et-new"], mirror["et-gold"], own_id}
        # The same callback again (WeCom's retry): recorded once, nothing changes.
        callback("edit_external_contact", "lisi", 2)
        assert tag_ids() == {mirror["et-new"], mirror["et-gold"], own_id}
