"""Communities: entry routing decisions/s, a message against 200 rules, metrics at scale.

    PYTHONPATH=src /work/main/.venv/bin/python bench/bench_communities.py \
        [--decisions 3000] [--threads 16] [--path committed|direct|orm] [--threshold open]
        [--messages 20000] [--groups 1000] [--days 90] [--reference OLD_METRICS_PY]
        [--store KEEP.duckdb] [--no-table] [--load-batches 40 --batch-size 200]

1. routing: a migrated SQLite database (the embedded default) with one screening community
   (a date question deriving 0–3 / 3–8 tiers, a choice rule to a city tier) and 60 groups of
   capacity 60; --decisions entries with a distinct visitor each (answers checked → tier →
   conditional-UPDATE place → member row → visitor contact → answers as contact attributes).
   --path committed (default): ``entry.decide`` through ``entry.run`` — the group commit the
   entry page uses — with --threads decisions in flight; direct: ``entry.decide`` in a
   transaction each from --threads threads; orm: ``service.enter`` in a transaction each (the
   session-5 path, a reference). Prints decisions/s, CPU per decision and how many groups
   hold more members than their capacity (must be 0).
2. rules: 200 rules (150 banned keywords, 48 banned patterns, links, contact details) and 50
   alert keywords; --messages generated messages checked (``moderation.check`` +
   ``alert_words``); prints the median and p99 per message.
3. metrics: a DuckDB event store with --groups groups × --days days of group_joined /
   group_left / group_message / group_violation / community_view events; prints the median
   time of ``group_metrics`` by group over the whole range (3 runs each by group, tier and
   community), and of the endpoint's JSON document (``metrics.compute(...).json()``).
   ``--reference OLD_METRICS_PY`` times an older communities/metrics.py alternately on the
   same store (a reference in the same run), its document as FastAPI's response_model path
   made it (pydantic's JSON-mode dump, then ``json.dumps``).
4. load (``--load-batches N`` with ``--store``): what keeping ``community_days`` costs a live
   batch — N batches into a copy of the store, alternately with and without the recount.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import func, select


def bench_routing(
    tmp: Path, decisions: int, threads: int, threshold: str = "screening", path: str = "committed"
) -> None:
    from liebian.app.runtime import Runtime
    from liebian.communities import entry, events, service
    from liebian.communities.models import Community, CommunityGroup
    from liebian.communities.schemas import CommunityCreate, GroupCreate
    from liebian.contacts import attributes
    from liebian.kit.auth import Principal, Role
    from liebian.kit.db import session_scope
    from liebian.kit.settings import Settings
    from liebian.migrations import upgrade
    from liebian.workspaces.service import create_workspace

    url = f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    runtime = Runtime.build(
        Settings(data_dir=tmp / "data", database_url=url, secret_key="11" * 32, gc_freeze=False)
    )
    events.install(runtime)  # the event sink the server installs (events after commit)
    with session_scope(runtime.sessions) as session:
        ws = create_workspace(session, "bench").id
        attributes.define(session, ws, "baby_birthday", "date", "宝宝生日")
        me = Principal(ws, Role.owner)
        community = service.create(session, me, CommunityCreate.model_validate({
            "name": "宝妈群", "threshold": threshold, "alert_below": 50,
            "tiers": [
                {"key": "t03", "name": "0–3", "age": {"question": "b", "min_months": -12, "max_months": 36}},
                {"key": "t38", "name": "3–8", "age": {"question": "b", "min_months": 36, "max_months": 96}},
                {"key": "bj", "name": "北京"},
            ],
            "screening": [
                {"key": "b", "label": "宝宝生日", "type": "date", "attribute": "baby_birthday"},
                {"key": "city", "label": "城市", "type": "single", "options": ["北京", "上海", "其他"]},
            ],
            "routing": [{"question": "city", "values": ["北京"], "tier": "bj"}],
        }))  # fmt: skip
        for i in range(60):
            service.create_group(
                session, me, community.id,
                GroupCreate(name=f"群{i}", tier=("t03", "t38", "bj")[i % 3], capacity=60),
            )  # fmt: skip
        community_id = community.id
    rng = random.Random(7)
    today = date(2026, 12, 2)
    work = []
    for i in range(decisions):
        born = today - timedelta(days=rng.randint(0, 8 * 365 - 1))
        work.append((f"v:bench{i:08d}", f"bench{i:08d}",
                     {"b": born.isoformat(), "city": rng.choice(["北京", "上海", "其他"])}))  # fmt: skip
    refused = 0
    lock = threading.Lock()
    lean = 0

    def one(session, holder: str, vid: str, answers: dict[str, str]):  # type: ignore[no-untyped-def]
        who = service.Entrant(holder, None, None, vid, None)
        given = answers if threshold == "screening" else {}
        if path == "orm":
            community = session.get(Community, community_id)
            return service.enter(session, runtime.cipher, community, who, given, None, today)
        return entry.decide(session, runtime.cipher, community_id, who, given, None, today)

    def run(chunk: list[tuple[str, str, dict[str, str]]]) -> None:
        nonlocal refused, lean
        for holder, vid, answers in chunk:
            try:
                with session_scope(runtime.sessions) as session:
                    placed = one(session, holder, vid, answers)
                    lean += bool(getattr(placed, "lean", False))
            except service.EntryRefused:
                with lock:
                    refused += 1

    async def run_committed() -> None:
        # What the entry page's POST does: entry.run → the group commit's writer thread,
        # with `threads` decisions in flight at once (requests being served concurrently).
        nonlocal refused, lean
        queue = list(reversed(work))

        async def worker() -> None:
            nonlocal refused, lean
            while queue:
                holder, vid, answers = queue.pop()
                try:
                    placed = await entry.run(
                        runtime, lambda s, h=holder, v=vid, a=answers: one(s, h, v, a)
                    )
                    lean += placed.lean
                except service.EntryRefused:
                    refused += 1

        await asyncio.gather(*(worker() for _ in range(threads)))

    chunks = [work[i::threads] for i in range(threads)]
    started = time.perf_counter()
    cpu = time.process_time()
    if path == "committed":
        asyncio.run(run_committed())
    elif threads == 1:
        run(chunks[0])
    else:
        pool = [threading.Thread(target=run, args=(c,)) for c in chunks]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    with session_scope(runtime.read_sessions) as session:
        over = session.scalar(
            select(func.count()).select_from(CommunityGroup).where(
                CommunityGroup.members > CommunityGroup.capacity
            )
        )  # fmt: skip
        placed = session.scalar(select(func.sum(CommunityGroup.members)))
    runtime.close()
    print(
        f"routing (SQLite, {threshold}, {path}, {threads} in flight): {decisions} decisions in "
        f"{elapsed:.2f} s = "
        f"{decisions / elapsed:,.0f} decisions/s (process CPU {cpu:.2f} s = "
        f"{decisions / cpu:,.0f} decisions per CPU-second, {cpu / decisions * 1000:.2f} ms CPU each); "
        f"placed {placed}, refused (no room) {refused}, on the hot path {lean}, "
        f"overfilled groups {over}"
    )


def bench_rules(messages: int) -> None:
    from liebian.communities import moderation

    rng = random.Random(11)
    words = [f"违禁{i}号词" for i in range(150)]
    rules = moderation.compile_rules({
        "banned_keywords": words,
        "banned_patterns": [rf"返现{i}\d+元" for i in range(48)],
        "block_links": True, "block_contact_details": True,
        "alert_keywords": [f"提醒{i}" for i in range(50)],
    })  # fmt: skip
    base = (
        "今天宝宝辅食吃了南瓜泥，大家都是几个月开始加蛋黄的呀？有没有推荐的品牌和做法，谢谢各位宝妈"
    )
    texts = []
    for i in range(messages):
        text = base[: rng.randint(10, len(base))]
        if i % 10 == 0:
            text += rng.choice(words)
        elif i % 10 == 1:
            text += " 加微信 abc_12345"
        elif i % 10 == 2:
            text += " https://spam.example/x"
        texts.append(text)
    times = []
    hits = 0
    for text in texts:
        t0 = time.perf_counter_ns()
        found = moderation.check(rules, text)
        moderation.alert_words(rules, text)
        times.append(time.perf_counter_ns() - t0)
        hits += bool(found)
    times.sort()
    print(
        f"rules: {messages} messages against 200 rules + 50 alert words: median "
        f"{statistics.median(times) / 1000:.1f} µs, p99 {times[int(len(times) * 0.99)] / 1000:.1f} µs; "
        f"{hits} with a violation"
    )


def bench_metrics(
    tmp: Path, groups: int, days: int, reference: str = "", keep: str = "", no_table: bool = False
) -> None:
    from liebian.events.store import EventRow, open_event_store

    ws, cmy = "ws_bench", "cmy_bench"
    start = datetime(2026, 9, 1, tzinfo=UTC)
    if keep and Path(keep).exists():
        # A store made by an earlier run with the same --groups/--days (--store): generating
        # 1M events takes minutes on a busy machine, outside what the bench lock should hold.
        store = open_event_store(Path(keep))
        _time_metrics(store, ws, cmy, start, start + timedelta(days=days), reference, no_table)
        store.close()
        return
    store = open_event_store(Path(keep) if keep else tmp / "events.duckdb")
    rng = random.Random(3)
    path = tmp / "events.ndjson"
    n = 0
    with path.open("wb") as out:
        for g in range(groups):
            gid, tier = f"cgp_{g:05d}", f"t{g % 5}"
            for d in range(days):
                day = start + timedelta(days=d)
                batch = [("group_joined", 2), ("group_left", 1), ("group_message", 8),
                         ("group_violation", 1 if d % 7 == 0 else 0)]  # fmt: skip
                if g % 50 == 0:
                    batch.append(("community_view", 40))
                for event, count in batch:
                    for _k in range(count):
                        n += 1
                        row = EventRow(
                            ws, f"e{n}", event, day + timedelta(minutes=rng.randint(0, 1439)),
                            user_id=f"u{rng.randint(0, groups * 150)}",
                            properties={"community_id": cmy, "group_id": gid, "tier": tier},
                        )  # fmt: skip
                        out.write(orjson.dumps(row.to_record(), option=orjson.OPT_APPEND_NEWLINE))
    loaded = time.perf_counter()
    store.insert_ndjson(path)
    print(
        f"metrics: {n:,} events ({groups} groups × {days} days) loaded in {time.perf_counter() - loaded:.1f} s"
    )
    _time_metrics(store, ws, cmy, start, start + timedelta(days=days), reference, no_table)
    store.close()


def _time_metrics(
    store: object, ws: str, cmy: str, start: datetime, end: datetime, reference: str,
    no_table: bool,
) -> None:  # fmt: skip
    from liebian.communities.metrics import group_metrics

    if no_table:  # read the events themselves (the DuckDB community_events table unused)
        store.community_table = None  # type: ignore[attr-defined]
        store.community_days_table = None  # type: ignore[attr-defined]
    impls: list[tuple[str, object]] = [("", group_metrics), (" (document)", _document)]
    if reference:
        # An older metrics.py (e.g. `git show <commit>:src/liebian/communities/metrics.py`),
        # run alternately with the current one on the same store: a reference in the same run.
        import importlib.util
        import sys

        spec = importlib.util.spec_from_file_location("reference_metrics", reference)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["reference_metrics"] = module
        spec.loader.exec_module(module)
        impls = [
            (" (current)", group_metrics), (" (reference)", module.group_metrics),
            (" (current, document)", _document),
            (" (reference, document)", lambda *a: _fastapi_document(module.group_metrics(*a))),
        ]  # fmt: skip
    for by in ("group", "tier", "community"):
        runs: dict[str, list[float]] = {name: [] for name, _ in impls}
        cpus: dict[str, list[float]] = {name: [] for name, _ in impls}
        sizes: dict[str, str] = {}
        for _ in range(3):
            for name, fn in impls:
                t0, c0 = time.perf_counter(), time.process_time()
                out_ = fn(store, ws, cmy, start, end, by)  # type: ignore[operator]
                runs[name].append(time.perf_counter() - t0)
                cpus[name].append(time.process_time() - c0)
                sizes[name] = (
                    f"{len(out_):,} bytes" if isinstance(out_, bytes)
                    else f"{len(out_.days)} day rows, {len(out_.summary)} summary rows"
                )  # fmt: skip
        for name, _fn in impls:
            print(
                f"metrics by {by}{name}: median {statistics.median(runs[name]) * 1000:.0f} ms wall, "
                f"{statistics.median(cpus[name]) * 1000:.0f} ms process CPU (all DuckDB threads) "
                f"over 3 runs ({sizes[name]})"
            )


def _document(*args: object) -> bytes:
    """What the endpoint does since session 8: the answer as JSON bytes, no model per day."""
    from liebian.communities.metrics import compute

    return compute(*args).json()  # type: ignore[arg-type]


def _fastapi_document(out: object) -> bytes:
    """What the endpoint did with a MetricsOut before (FastAPI's response_model path): the
    model serialized to JSON-able data by pydantic, then JSONResponse's json.dumps."""
    import json

    data = out.model_dump(mode="json")  # type: ignore[attr-defined]
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def bench_load(keep: str, groups: int, days: int, batches: int, size: int) -> None:
    """What keeping ``community_days`` costs a live load: on a copy of the --store file,
    ``batches`` batches of ``size`` community events on the range's last day, inserted
    alternately with the touched days recounted (as the load does) and without (the recount
    replaced by nothing: the reference in the same run)."""
    import shutil

    from liebian.events.store import EventRow, duckdb_community, open_event_store

    copy = Path(tempfile.mkdtemp()) / "load.duckdb"
    shutil.copy(keep, copy)
    store = open_event_store(copy)
    recount = duckdb_community._recount
    rng = random.Random(5)
    last = datetime(2026, 9, 1, tzinfo=UTC) + timedelta(days=days - 1, hours=3)
    times: dict[str, list[float]] = {"recounted": [], "not recounted": []}
    n = 0
    for b in range(batches):
        rows = []
        for _ in range(size):
            n += 1
            g = rng.randrange(groups)
            rows.append(EventRow(
                "ws_bench", f"live{n}", rng.choice(("group_message", "group_message", "group_joined")),
                last + timedelta(seconds=rng.randrange(3600)), user_id=f"u{rng.randint(0, groups * 150)}",
                properties={"community_id": "cmy_bench", "group_id": f"cgp_{g:05d}", "tier": f"t{g % 5}"},
            ))  # fmt: skip
        name = "recounted" if b % 2 == 0 else "not recounted"
        if name == "not recounted":
            duckdb_community._recount = lambda con: con.execute("DROP TABLE _cd")  # type: ignore[assignment]
        t0 = time.perf_counter()
        store.insert(rows)
        times[name].append(time.perf_counter() - t0)
        duckdb_community._recount = recount  # type: ignore[assignment]
    store.close()
    shutil.rmtree(copy.parent)
    for name, ts in times.items():
        print(
            f"load: a batch of {size} community events on one day into the {keep} copy, {name}:"
            f" median {statistics.median(ts) * 1000:.1f} ms over {len(ts)} batches"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=16, help="decisions in flight")
    parser.add_argument(
        "--path", default="committed",
        help="committed: entry.decide through entry.run (group commit, as the entry page); "
        "direct: entry.decide, a transaction each from --threads threads; "
        "orm: service.enter, a transaction each (the path before the hot path)",
    )  # fmt: skip
    parser.add_argument("--threshold", default="screening", help="screening | open (no form)")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument(
        "--reference", default="", help="an older communities/metrics.py to time alternately"
    )
    parser.add_argument(
        "--store",
        default="",
        help="metrics: keep the generated DuckDB file here, reuse it if there",
    )
    parser.add_argument(
        "--no-table", action="store_true",
        help="metrics: read the events, not the community_events table",
    )  # fmt: skip
    parser.add_argument(
        "--load-batches", type=int, default=0,
        help="with --store: time this many live batches into a copy (community_days' cost)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--skip", default="", help="comma list of routing,rules,metrics")
    args = parser.parse_args()
    skip = set(args.skip.split(",")) if args.skip else set()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        if "rules" not in skip:
            bench_rules(args.messages)
        if "routing" not in skip:
            bench_routing(Path(tmp), args.decisions, args.threads, args.threshold, args.path)
        if "metrics" not in skip:
            bench_metrics(
                Path(tmp), args.groups, args.days, args.reference, args.store, args.no_table
            )
        if args.load_batches and args.store:
            bench_load(args.store, args.groups, args.days, args.load_batches, args.batch_size)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
