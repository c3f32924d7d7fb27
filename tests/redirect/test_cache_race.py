"""Issue 9, item 7: the slug cache under real concurrency.

Invalidations arrive on whichever thread committed a change while the event loop reads and
fills the cache. Two races, each driven here by real threads with the interpreter switching
threads as often as it can (``sys.setswitchinterval``) so that the windows are hit:

- a hit moves the entry to the LRU's end while an invalidation pops it (KeyError on the
  redirect path);
- a load checks the generation, an invalidation slips in, and the load stores the stale row
  it read — served for the whole TTL after the update.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from liebian.kit.db import make_engine
from liebian.migrations import upgrade
from liebian.redirect.cache import LinkCache, SlugLoader

SLUG = "race"


@pytest.fixture
def fast_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("race") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def engine(_template: Path, tmp_path: Path) -> Iterator[Engine]:
    target = tmp_path / "race.db"
    target.write_bytes(_template.read_bytes())
    eng = make_engine(f"sqlite:///{target}")
    with eng.begin() as conn:
        conn.execute(
            text("INSERT INTO workspaces (id, name, timezone, created_at) VALUES ('ws_1', 'w', "
                 "'Asia/Shanghai', '2026-01-01 00:00:00')")
        )  # fmt: skip
        conn.execute(
            text("INSERT INTO links (id, workspace_id, slug, url, title, utm, browser_guide, "
                 "created_at, updated_at) VALUES ('lnk_1', 'ws_1', :slug, "
                 "'https://example.com/0', '', '{}', 0, '2026-01-01 00:00:00', "
                 "'2026-01-01 00:00:00')"),
            {"slug": SLUG},
        )  # fmt: skip
    yield eng
    eng.dispose()


def _version(entry: Any) -> int:
    prefix: str = entry.dest[0]
    return int(prefix.split("/")[-1].split("?")[0])


def test_hits_and_invalidations_from_other_threads(engine: Engine, fast_switching: None) -> None:
    cache = LinkCache(SlugLoader(engine))
    entry = cache.lookup_sync(SLUG)
    assert entry is not None
    stop = threading.Event()
    errors: list[BaseException] = []

    def invalidate() -> None:
        while not stop.is_set():
            cache.invalidate(SLUG)

    def refill() -> None:
        while not stop.is_set():
            cache.lookup_sync(SLUG)  # a miss loads and stores again

    threads = [threading.Thread(target=invalidate), threading.Thread(target=refill)]
    for t in threads:
        t.start()
    try:
        for _ in range(200_000):
            try:
                cache.get(SLUG, entry.loaded_at)
            except BaseException as exc:  # KeyError on the old code
                errors.append(exc)
                break
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []


def test_a_load_overtaken_by_an_update_never_stores_the_stale_row(
    engine: Engine, fast_switching: None
) -> None:
    cache = LinkCache(SlugLoader(engine))
    state = {"invalidated": 0}  # the newest version whose invalidation has completed
    stop = threading.Event()
    stale: list[tuple[int, int]] = []
    key_errors: list[int] = []

    def update() -> None:
        version = 0
        while not stop.is_set() and version < 600:
            version += 1
            with engine.begin() as conn:  # the commit, then the invalidation (as the bus does)
                conn.execute(
                    text("UPDATE links SET url = :url WHERE slug = :slug"),
                    {"url": f"https://example.com/{version}", "slug": SLUG},
                )
            cache.invalidate(SLUG)
            state["invalidated"] = version

    async def read() -> None:
        while updater.is_alive():
            try:
                hit = cache.get(SLUG, 0.0)
            except KeyError:  # the other race (above); counted, and the stale check goes on
                key_errors.append(1)
                continue
            if hit is False:
                await cache.load(SLUG)
            # Read the completed invalidation first, then the cache: an entry older than an
            # invalidation that had completed before it was looked at was stored after it.
            done = state["invalidated"]
            entry = cache._entries.get(SLUG)
            if entry is not None and _version(entry) < done:
                stale.append((_version(entry), done))
                return
            await asyncio.sleep(0)

    updater = threading.Thread(target=update)
    updater.start()
    try:
        asyncio.run(read())
    finally:
        stop.set()
        updater.join()
    assert stale == []
    assert key_errors == []
