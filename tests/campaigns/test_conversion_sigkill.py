"""A `liebian serve` killed with SIGKILL while its hooks worker applies conversions, restarted
on the same data: every acknowledged conversion is applied, each exactly once."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fission_helpers import INVITE

pytestmark = pytest.mark.slow

LIEBIAN = Path(sys.executable).with_name("liebian")
REFEREES = 60
CONVERSIONS = 2_400  # join_group events: the referees' and many more of people in no campaign


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "LIEBIAN_SECRET_KEY": "33" * 32, "LIEBIAN_JOBS_INTERVAL": "0"}
    env.pop("LIEBIAN_DATABASE_URL", None)
    return subprocess.Popen(
        [
            str(LIEBIAN),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,  # kill master and worker at once, as the OOM killer would
    )


def _wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not come up")


def _read_key(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    keys = [line.strip() for line in proc.stdout if line.strip().startswith("lb_")]
    assert keys, "no key printed"
    return keys[0]


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sigkill_mid_apply_then_restart_applies_each_conversion_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    db = data_dir / "liebian.db"
    port = _free_port()
    proc = _start(data_dir, port)
    try:
        _wait_ready(port, proc)
        auth = {"Authorization": f"Bearer {_read_key(proc)}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=auth) as http:
            config = {**INVITE, "qualifying_action": "join_group"}
            created = http.post(
                "/api/v1/campaigns", json={"type": "invite", "name": "邀请", "config": config}
            )
            assert created.status_code == 201, created.text
            cid = created.json()["id"]
            joins = f"/api/v1/campaigns/{cid}/participants"
            first = http.post(
                joins, json={"external_id": "a", "visitor_id": "v-a", "ip": "10.9.9.9"}
            )
            code = first.json()["invite_code"]
            for i in range(REFEREES):
                body = {
                    "external_id": f"r{i}",
                    "referrer_code": code,
                    "visitor_id": f"v-r{i}",
                    "ip": f"10.1.{i // 200}.{i % 200 + 1}",
                }
                assert http.post(joins, json=body).status_code == 201
            events = [
                {
                    "event": "join_group",
                    "event_id": f"jg-{i}",
                    "user_id": f"r{i}" if i < REFEREES else f"p{i}",
                }
                for i in range(CONVERSIONS)
            ]
            events.reverse()  # the referees' conversions come last, the ones in flight at the kill
            for start in range(0, CONVERSIONS, 100):
                resp = http.post("/api/v1/events", json=events[start : start + 100])
                assert resp.status_code == 202 and resp.json()["accepted"] == 100
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        applied_at_kill = _count(db, "SELECT count(*) FROM event_hook_applied")
        waiting = list((data_dir / "spool" / "hooks").glob("seg-*"))
        assert applied_at_kill < CONVERSIONS and waiting, (
            "the kill should find conversions in flight"
        )

        port = _free_port()
        proc = _start(data_dir, port)
        _wait_ready(port, proc)
        deadline = time.monotonic() + 60
        while _count(db, "SELECT count(*) FROM event_hook_applied") < CONVERSIONS:
            assert time.monotonic() < deadline, "the restarted worker did not apply the backlog"
            time.sleep(0.1)
        _stop(proc)
        # Each conversion once: its marker, its campaign row, and one invitee reward per
        # referee plus the referrer's two tiers (1 and 3 invites) — no duplicate anywhere.
        assert _count(db, "SELECT count(*) FROM event_hook_applied") == CONVERSIONS
        assert _count(db, "SELECT count(*) FROM campaign_conversions") == CONVERSIONS
        assert (
            _count(db, "SELECT count(*) FROM reward_entries WHERE reason = 'invitee'") == REFEREES
        )
        assert _count(db, "SELECT count(*) FROM reward_entries WHERE reason = 'tier'") == 2
        assert _count(db, "SELECT count(DISTINCT idempotency_key) FROM reward_entries") == _count(
            db, "SELECT count(*) FROM reward_entries"
        )
        qualified = "SELECT count(*) FROM referrals WHERE qualified_at IS NOT NULL"
        assert _count(db, qualified) == REFEREES
    finally:
        _stop(proc)
