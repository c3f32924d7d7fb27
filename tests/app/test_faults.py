"""Faults with real processes (issue 9, "Load and faults"): a full disk under the spool,
SIGKILL while the flusher loads, the PostgreSQL server unreachable under load. In each, no
acknowledged click or event is lost or stored twice, and the server recovers by itself."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from faults_support import Server, stored_event_ids

pytestmark = pytest.mark.slow

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
PG_URL = os.environ.get("LIEBIAN_TEST_DATABASE_URL", "")


def _batch(prefix: str, start: int, n: int, pad: int = 0) -> list[dict[str, object]]:
    return [
        {"event": "view_item", "event_id": f"{prefix}{i}", "user_id": f"u{i % 50}",
         "properties": {"pad": "x" * pad} if pad else {}}
        for i in range(start, start + n)
    ]  # fmt: skip


def _workspace(http: httpx.Client, auth: dict[str, str]) -> str:
    return str(http.get("/api/v1/workspace", headers=auth).json()["id"])


def _can_mount_tmpfs(directory: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs "{directory}"'],
        capture_output=True,
    )
    return probe.returncode == 0


def test_a_full_disk_answers_503_and_loses_no_acknowledged_event(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spool = data / "spool"
    spool.mkdir(parents=True)
    if not _can_mount_tmpfs(spool):
        pytest.skip(
            "needs a private mount namespace (unshare -m) to put the spool on a small tmpfs"
        )
    # The spool on a 256 KiB tmpfs of its own (in a mount namespace only the server sees).
    mount = f'mount -t tmpfs -o size=256k tmpfs "{spool}" && exec "$@"'
    server = Server(
        data, prefix=["unshare", "-m", "sh", "-c", mount, "sh"],
        env={"LIEBIAN_FLUSH_INTERVAL": "0.3"},
    )  # fmt: skip
    try:
        auth = {"Authorization": f"Bearer {server.key()}"}
        acked: list[str] = []
        refused = after_refusal = 0
        with httpx.Client(base_url=server.base, timeout=30) as http:
            ws = _workspace(http, auth)
            for n in range(600):  # ~25 KiB a request: the disk fills within a dozen
                resp = http.post(
                    "/api/v1/events", json=_batch(f"d{n}-", 0, 100, pad=150), headers=auth
                )
                if resp.status_code == 503:
                    refused += 1
                    assert resp.json()["error"]["code"] == "unavailable"
                    assert int(resp.headers["retry-after"]) >= 1
                    time.sleep(0.1)  # the flusher frees the disk meanwhile
                    continue
                assert resp.status_code == 202, resp.text
                assert resp.json()["accepted"] == 100
                acked.extend(f"d{n}-{i}" for i in range(100))
                if refused:
                    after_refusal += 1
                    if after_refusal >= 5:
                        break
            assert refused, "the disk never filled"
            assert after_refusal >= 5, "the server did not recover once the disk had room"
    finally:
        server.stop()  # SIGTERM: the final flush loads what the tmpfs still holds
    stored = stored_event_ids(data, ws)
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert set(stored) == set(acked)  # nothing acknowledged lost, nothing refused kept


def test_sigkill_while_loading_loses_and_repeats_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # Loads all the time (a tick every 50 ms), so the kill lands while one is running or
    # between two with segments half-way through: both must replay exactly once.
    env = {"LIEBIAN_FLUSH_INTERVAL": "0.05"}
    server = Server(data, env=env)
    try:
        auth = {"Authorization": f"Bearer {server.key()}"}
        acked: list[str] = []
        clicks = 0
        with httpx.Client(base_url=server.base, timeout=30) as http:
            ws = _workspace(http, auth)
            link = http.post("/api/v1/links", json={"url": "https://example.com/k"}, headers=auth)
            assert link.status_code == 201, link.text
            slug, link_id = link.json()["slug"], link.json()["id"]
            for n in range(12):
                resp = http.post("/api/v1/events", json=_batch(f"k{n}-", 0, 500), headers=auth)
                assert resp.status_code == 202, resp.text
                acked.extend(f"k{n}-{i}" for i in range(500))
                for _ in range(3):
                    http.cookies.clear()
                    if http.get("/" + slug, headers={"user-agent": IPHONE}).status_code == 302:
                        clicks += 1
        server.kill()
        server = Server(data, env=env)  # recovery seals what the dead process left open
        with httpx.Client(base_url=server.base, timeout=30) as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                figures = http.get("/readyz").json()["figures"]
                if figures["spool_segments"] == 0 and figures["spool_backlog_bytes"] == 0:
                    break
                time.sleep(0.1)
    finally:
        server.stop()
    stored = collections.Counter(stored_event_ids(data, ws))
    assert [i for i, n in stored.items() if n > 1] == []
    events = {i for i in stored if not i.startswith("c")} & set(acked)
    assert events == set(acked)
    import duckdb

    con = duckdb.connect(str(data / "events.duckdb"), read_only=True)
    try:
        (stored_clicks,) = con.execute(
            "SELECT count(*) FROM events WHERE link_id = ? AND NOT is_bot", [link_id]
        ).fetchone() or (0,)
    finally:
        con.close()
    assert stored_clicks == clicks == 36


@pytest.mark.skipif(not PG_URL, reason="needs LIEBIAN_TEST_DATABASE_URL (PostgreSQL)")
def test_postgres_unreachable_gives_clean_503s_and_full_recovery(tmp_path: Path) -> None:
    from redis_support import TcpProxy

    admin = make_url(PG_URL)
    name = f"liebian_f_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    proxy = TcpProxy(f"postgresql://{admin.host or '127.0.0.1'}:{admin.port or 5432}")
    proxy.start()
    url = admin.set(database=name, host="127.0.0.1", port=proxy.port)
    data = tmp_path / "data"
    server = Server(
        data,
        env={
            "LIEBIAN_DATABASE_URL": url.render_as_string(hide_password=False),
            "LIEBIAN_FLUSH_INTERVAL": "0.2",
        },
    )
    try:
        auth = {"Authorization": f"Bearer {server.key()}"}
        acked: list[str] = []
        clicks = 0
        with httpx.Client(base_url=server.base, timeout=30) as http:
            ws = _workspace(http, auth)
            link = http.post("/api/v1/links", json={"url": "https://example.com/pg"}, headers=auth)
            assert link.status_code == 201, link.text
            slug, link_id = link.json()["slug"], link.json()["id"]

            def load(tag: str) -> None:
                nonlocal clicks
                for n in range(5):
                    resp = http.post(
                        "/api/v1/events", json=_batch(f"{tag}{n}-", 0, 50), headers=auth
                    )
                    assert resp.status_code == 202, resp.text
                    acked.extend(f"{tag}{n}-{i}" for i in range(50))
                    http.cookies.clear()
                    resp = http.get("/" + slug, headers={"user-agent": IPHONE})
                    assert resp.status_code == 302
                    clicks += 1

            load("before")
            assert http.get("/readyz").status_code == 200
            proxy.stop()  # the database goes away: connections cut, new ones refused
            # Redirects (cached slug) and events (cached key) need no database: still served.
            load("during")
            listed = http.get("/api/v1/links", headers=auth)
            assert listed.status_code == 503, listed.text
            assert listed.json()["error"]["code"] == "unavailable"
            assert int(listed.headers["retry-after"]) >= 1
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert [r["code"] for r in ready.json()["reasons"]] == ["database_unreachable"]
            created = http.post(
                "/api/v1/links", json={"url": "https://example.com/x"}, headers=auth
            )
            assert created.status_code == 503, created.text
            proxy.start()
            deadline = time.monotonic() + 30
            while http.get("/api/v1/links", headers=auth).status_code != 200:
                assert time.monotonic() < deadline, "no recovery after the database came back"
                time.sleep(0.2)
            assert http.get("/readyz").status_code == 200
            load("after")
    finally:
        server.stop()
        proxy.stop()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()
    stored = collections.Counter(stored_event_ids(data, ws))
    assert [i for i, n in stored.items() if n > 1] == []
    assert set(acked) <= set(stored)
    import duckdb

    con = duckdb.connect(str(data / "events.duckdb"), read_only=True)
    try:
        (stored_clicks,) = con.execute(
            "SELECT count(*) FROM events WHERE link_id = ? AND NOT is_bot", [link_id]
        ).fetchone() or (0,)
    finally:
        con.close()
    assert stored_clicks == clicks == 15


class _Receiver:
    """A loopback webhook receiver that dedupes by Liebian-Event-Id. The first delivery is
    held open (the sender is killed meanwhile); later ones are answered at once."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.seen: list[str] = []
        self.answered: list[str] = []
        self.first = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                event_id = self.headers.get("liebian-event-id", "")
                receiver.seen.append(event_id)
                if not receiver.first.is_set():
                    receiver.first.set()
                    receiver.release.wait(30)  # the sender dies while this one waits
                    return
                receiver.answered.append(event_id)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_sigkill_during_a_webhook_delivery_delivers_it_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        "LIEBIAN_ALLOW_PRIVATE_WEBHOOKS": "true",
        "LIEBIAN_WEBHOOK_INTERVAL": "0.2",
        "LIEBIAN_WEBHOOK_TIMEOUT": "1",
        "LIEBIAN_WEBHOOK_LEASE": "2",  # a dead worker's claim ends quickly
    }
    receiver = _Receiver()
    server = Server(data, env=env)
    try:
        auth = {"Authorization": f"Bearer {server.key()}"}
        with httpx.Client(base_url=server.base, timeout=30) as http:
            endpoint = http.post(
                "/api/v1/webhooks", json={"url": receiver.url, "topics": ["*"]}, headers=auth
            )
            assert endpoint.status_code == 201, endpoint.text
            endpoint_id = endpoint.json()["id"]
            queued = http.post(f"/api/v1/webhooks/{endpoint_id}/test", headers=auth)
            assert queued.status_code == 202, queued.text
            event_id = queued.json()["event_id"]
        assert receiver.first.wait(60), "the delivery never started"
        server.kill()  # mid-POST: the receiver has the request, the sender never got an answer
        receiver.release.set()
        server = Server(data, env=env)
        deadline = time.monotonic() + 60
        while not receiver.answered:
            assert time.monotonic() < deadline, "not delivered again after the restart"
            time.sleep(0.1)
        with httpx.Client(base_url=server.base, timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                items = http.get(f"/api/v1/webhooks/{endpoint_id}/deliveries", headers=auth).json()[
                    "items"
                ]
                if items and items[0]["status"] == "delivered":
                    break
                assert time.monotonic() < deadline, items
                time.sleep(0.2)
    finally:
        server.stop()
        receiver.close()
    # At least once at the receiver, and one event there once deduped by its id.
    assert len(receiver.seen) >= 2 and set(receiver.seen) == {event_id}
    assert len(items) == 1


def test_sigkill_during_group_commits_keeps_every_acknowledged_join_once(tmp_path: Path) -> None:
    import threading

    data = tmp_path / "data"
    server = Server(data)
    acked: list[str] = []
    lock = threading.Lock()
    try:
        auth = {"Authorization": f"Bearer {server.key()}"}
        with httpx.Client(base_url=server.base, timeout=30) as http:
            campaign = http.post(
                "/api/v1/campaigns",
                json={
                    "type": "group_buy",
                    "name": "拼团",
                    "config": {
                        "product_name": "课", "original_price": 49_900,
                        "tiers": [{"size": 100, "price": 19_900}], "time_limit_hours": 24,
                    },
                },
                headers=auth,
            )  # fmt: skip
            assert campaign.status_code == 201, campaign.text
            group = http.post(
                f"/api/v1/campaigns/{campaign.json()['id']}/groups",
                json={"leader_external_id": "leader"},
                headers=auth,
            )
            assert group.status_code in (200, 201), group.text
            group_id = group.json()["group_id"]

        def joiner(worker: int) -> None:
            # Joins queue up for the group-commit writer from several connections at once.
            with httpx.Client(base_url=server.base, timeout=10) as http:
                for n in range(12):
                    who = f"w{worker}-{n}"
                    try:
                        resp = http.post(
                            f"/api/v1/groups/{group_id}/join",
                            json={"external_id": who},
                            headers=auth,
                        )
                    except httpx.HTTPError:
                        return  # the server is gone: not acknowledged
                    if resp.status_code == 200:
                        with lock:
                            acked.append(who)

        threads = [threading.Thread(target=joiner, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.005)
        server.kill()  # joins are in flight: queued, mid-batch or being answered
        for t in threads:
            t.join(30)
        assert acked, "no join was acknowledged before the kill"
        server = Server(data)
        with httpx.Client(base_url=server.base, timeout=30) as http:
            got = http.get(f"/api/v1/groups/{group_id}", headers=auth)
            assert got.status_code == 200, got.text
            body = got.json()
    finally:
        server.stop()
    members = [m["external_id"] for m in body["members"]]
    assert len(members) == len(set(members)), "a join was stored twice"
    assert set(acked) <= set(members), "an acknowledged join was lost"
    assert body["member_count"] == len(members)
