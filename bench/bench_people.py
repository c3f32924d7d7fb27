"""People at scale: a contact's profile + timeline, and the contacts list/search.

    PYTHONPATH=src /work/main/.venv/bin/python bench/bench_people.py [--contacts 1000000]

Builds, in a temporary directory, a SQLite database (migrated) with --contacts contacts
(generated in bulk with executemany — nickname/phone encrypted and hashed like the service
does — 10% of them tagged) and a DuckDB event store with 1,000 events of one person among
--noise other events. Then, each --runs times, medians printed:

- profile: ``service.profile`` + the first timeline page (50 items: events from DuckDB merged
  with the OLTP records), and the whole 1,000-event timeline in pages of 200;
- reference: a hand-written DuckDB query for the same person's newest 50 events, in the same
  run (the floor the timeline's event-store part cannot beat);
- list/search on the contacts: first page, search by external id, phone, nickname prefix
  (2 and 5 characters), tag filter.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.orm import Session, sessionmaker

from liebian.contacts import repository, search, timeline
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact, ContactTag, Tag
from liebian.events.store import EventRow, open_event_store
from liebian.kit.crypto import PiiCipher
from liebian.kit.ids import new_id
from liebian.migrations import upgrade

WS = "ws_bench"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    samples, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), result


def build(sessions: sessionmaker[Session], cipher: PiiCipher, n: int) -> str:
    rnd = random.Random(7)
    now = datetime.now(UTC)
    with sessions() as s:
        s.execute(
            text("INSERT INTO workspaces (id, name, timezone, created_at) VALUES (:i, 'b', 'Asia/Shanghai', :t)"),
            {"i": WS, "t": now.replace(tzinfo=None)},
        )  # fmt: skip
        tag_id = new_id("tag")
        s.execute(insert(Tag), [{"id": tag_id, "workspace_id": WS, "name": "VIP", "color": "#2f6fed", "kind": "manual", "created_at": now}])  # fmt: skip
        s.commit()
        batch: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        for i in range(n):
            nick = rnd.choice(SURNAMES) + rnd.choice(GIVEN) + rnd.choice(GIVEN) + str(i % 97)
            phone = f"13{i:09d}"
            cid = new_id("ctc")
            row = {
                "id": cid, "workspace_id": WS, "external_id": f"user-{i}",
                "nickname_enc": cipher.encrypt(nick), "phone_enc": cipher.encrypt(phone),
                "phone_hash": cipher.lookup_hash(phone), "created_at": now, "updated_at": now,
                "first_channel": rnd.choice(("wechat", "sms", "qr", "moments")),
                "first_seen_at": T0 + timedelta(minutes=i % 100_000),
                "orders_count": 0, "gmv_cents": 0, "invites_made": 0, "invites_qualified": 0,
                **search.nickname_hashes(cipher, nick),
            }  # fmt: skip
            batch.append(row)
            if i % 10 == 0:
                links.append({"workspace_id": WS, "contact_id": cid, "tag_id": tag_id, "source": "import", "added_at": now})  # fmt: skip
            if len(batch) == 20_000:
                s.execute(insert(Contact), batch)
                batch.clear()
        if batch:
            s.execute(insert(Contact), batch)
        s.execute(insert(ContactTag), links)
        s.commit()
    return tag_id


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--noise", type=int, default=500_000)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-people-"))
    url = f"sqlite:///{tmp}/oltp.db"
    upgrade(url)
    engine = create_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    cipher = PiiCipher(os.urandom(32))
    t = time.perf_counter()
    tag_id = build(sessions, cipher, args.contacts)
    print(f"built {args.contacts:,} contacts in {time.perf_counter() - t:.1f} s")
    store = open_event_store(tmp / "events.duckdb")
    t = time.perf_counter()
    rows = [
        EventRow(WS, f"n{i}", "page_view", T0 + timedelta(seconds=i), user_id=f"user-{i % 50_000 + 1}", channel="wechat")
        for i in range(args.noise)
    ]  # fmt: skip
    rows += [
        EventRow(WS, f"p{i}", ("page_view", "click", "purchase")[i % 3], T0 + timedelta(minutes=i), user_id="user-0", revenue=100 if i % 3 == 2 else None)
        for i in range(1000)
    ]  # fmt: skip
    for start in range(0, len(rows), 100_000):
        store.insert(rows[start : start + 100_000])
    print(f"loaded {len(rows):,} events in {time.perf_counter() - t:.1f} s")

    with sessions() as s:
        me = contacts.find(s, WS, "user-0")

        def profile_and_page() -> int:
            contacts.profile(s, cipher, me, may_see_pii=True)
            items, _ = timeline.page(s, store, me, cursor=None, limit=50)
            return len(items)

        def full_timeline() -> int:
            total, cursor = 0, None
            while True:
                items, cursor = timeline.page(s, store, me, cursor=cursor, limit=200)
                total += len(items)
                if not cursor:
                    return total

        def reference() -> int:
            return len(store.query(
                "SELECT ts, event_id, event, channel, campaign_id, link_id, revenue, currency,"
                " properties FROM events WHERE workspace_id = $ws AND user_id = $u"
                " ORDER BY ts DESC, event_id DESC LIMIT 50", {"ws": WS, "u": "user-0"},
            ))  # fmt: skip

        results = {}
        results["profile + timeline page (50)"] = timed(profile_and_page, args.runs)
        results["reference DuckDB query (50 newest events)"] = timed(reference, args.runs)
        results["whole 1,000-event timeline (5 pages of 200)"] = timed(
            full_timeline, max(5, args.runs // 3)
        )

        def listing(**kw: Any) -> Callable[[], int]:
            q = kw.pop("q", None)
            f = repository.ContactFilter(search=search.terms(cipher, q) if q else None, **kw)
            return lambda: len(contacts.list_page(s, WS, cipher, f, cursor=None, limit=50)[0])

        for label, fn in (
            ("list: first page of 50", listing()),
            ("search: external id", listing(q="user-123456")),
            ("search: phone", listing(q="+86 130-0012-3456")),
            ("search: nickname prefix, 2 chars", listing(q="王伟")),
            ("search: nickname prefix, 5 chars (verified by decrypting)", listing(q="王伟芳1")),
            ("filter: tag VIP (10%)", listing(tag_ids=(tag_id,))),
            ("filter: channel", listing(channel="sms")),
        ):
            results[label] = timed(fn, args.runs)
    for label, (ms, n) in results.items():
        print(f"{label:60s} median {ms:8.2f} ms  ({n} items)")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(
        f"command: PYTHONPATH=src python bench/bench_people.py --contacts {args.contacts} --noise {args.noise} --runs {args.runs}"
    )


if __name__ == "__main__":
    main()
