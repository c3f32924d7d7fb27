"""channels.send throughput on the embedded default: messages sent once each to a loopback
webhook receiver, counted there.

    PYTHONPATH=src python bench/bench_channels.py [--messages 2000] [--threads 1,4] \
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

A fresh SQLite file (or a new PostgreSQL database beside the given URL, dropped after) per run; ``--threads``
callers share the keys (each key sent by every thread, as racing workers would), so the figure
includes the losers' replays. Reports messages/s, records written and what the receiver
counted: every key must arrive exactly once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from liebian.app.runtime import Runtime
from liebian.channels.config import ChannelInput, create_channel, set_guard_settings
from liebian.channels.service import SendRequest, send, send_many
from liebian.contacts.service import ContactInput, upsert
from liebian.kit.db import session_scope
from liebian.kit.settings import Settings
from liebian.migrations import upgrade
from liebian.workspaces.service import create_workspace


def receiver() -> tuple[ThreadingHTTPServer, dict[str, int], threading.Lock]:
    seen: dict[str, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body in two writes: no 40 ms ACK wait

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            key = self.headers.get("Idempotency-Key", "")
            with lock:
                seen[key] = seen.get(key, 0) + 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen, lock


def fresh_database(base_url: str | None, tmp: str) -> tuple[str, Any]:
    """A temporary SQLite file, or a new PostgreSQL database beside ``base_url`` (dropped
    after the run: the given database itself is never touched)."""
    if not base_url:
        return f"sqlite:///{tmp}/bench.db", None
    admin = make_url(base_url)
    name = f"liebian_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return admin.set(database=name).render_as_string(hide_password=False), (engine, name)


def drop(handle: Any) -> None:
    if handle is not None:
        engine, name = handle
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def run(messages: int, threads: int, database_url: str | None, batch: int = 0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url, handle = fresh_database(database_url, tmp)
        upgrade(url)
        settings = Settings(data_dir=Path(tmp), database_url=url, secret_key="22" * 32,
                            allow_private_webhooks=True)  # fmt: skip
        runtime = Runtime.build(settings)
        server, seen, _lock = receiver()
        with session_scope(runtime.sessions) as session:
            ws = create_workspace(session, "bench").id
            set_guard_settings(session, ws, enabled=False, start="21:00", end="09:00")
            people = [upsert(session, runtime.cipher, ws, ContactInput(external_id=f"u{i}")).id
                      for i in range(100)]  # fmt: skip
            chn, _ = create_channel(session, runtime, ws, ChannelInput(
                kind="webhook", name="bench",
                config={"url": f"http://127.0.0.1:{server.server_address[1]}/hook"}))  # fmt: skip
            channel_id = chn.id
        requests = [
            SendRequest(
                workspace_id=ws,
                channel_id=channel_id,
                contact_id=people[i % 100],
                content={"text": f"m{i}"},
                idempotency_key=f"bench_{i}:s1",
                source="journey",
            )
            for i in range(messages)
        ]

        def worker() -> None:
            if batch:
                for start in range(0, len(requests), batch):
                    send_many(runtime, requests[start : start + batch], threads=8)
                return
            for request in requests:
                with runtime.sessions() as session:
                    send(session, runtime, request)

        # Warm-up outside the timing (lazy imports, the adapter's HTTP client, caches).
        warm = SendRequest(workspace_id=ws, channel_id=channel_id, contact_id=people[0],
                           content={"text": "warm"}, idempotency_key="warmup", source="journey")  # fmt: skip
        with runtime.sessions() as session:
            send(session, runtime, warm)
        seen.pop("warmup", None)
        started = time.perf_counter()
        cpu = time.process_time()
        if threads == 1:
            worker()  # in this thread: a profiler sees it
        else:
            pool = [threading.Thread(target=worker) for _ in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        server.shutdown()
        dupes = sum(n - 1 for n in seen.values())
        backend = "postgresql" if database_url else "sqlite"
        mode = f"send_many batch={batch}" if batch else "send"
        print(f"{backend} {mode} threads={threads} messages={messages}: "
              f"{messages / elapsed:,.0f} messages/s ({elapsed:.2f} s), "
              f"{cpu / messages * 1e6:,.0f} µs CPU per message (process, receiver included); "
              f"receiver: {len(seen)} keys, {dupes} duplicates, "
              f"{messages - len(seen)} missing; load {os.getloadavg()[0]:.1f}")  # fmt: skip
        runtime.close()
        drop(handle)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", default="1,4")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--batch", default="0",
                        help="comma list; 0 = send() per message, N = send_many() of N")  # fmt: skip
    args = parser.parse_args()
    print("command:", " ".join(sys.argv))
    for batch in (int(b) for b in args.batch.split(",")):
        for threads in (int(t) for t in args.threads.split(",")):
            run(args.messages, threads, args.database_url, batch)


if __name__ == "__main__":
    main()
