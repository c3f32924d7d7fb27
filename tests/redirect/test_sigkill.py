"""A server killed with SIGKILL loses no click it answered (a real process, a real socket)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from redirect_helpers import IPHONE_SAFARI

pytestmark = pytest.mark.slow

LIEBIAN = Path(sys.executable).with_name("liebian")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "LIEBIAN_SECRET_KEY": "22" * 32,
        # Flush rarely, so the clicks are still in the spool when the process dies.
        "LIEBIAN_FLUSH_INTERVAL": "60",
        # One client sends every click: the public rate limits are not what this test is about.
        "LIEBIAN_RATE_LIMIT_PER_IP": "0",
        "LIEBIAN_RATE_LIMIT_PER_VISITOR": "0",
    }
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
        # Granian answers from a worker process: its own session lets the test kill the
        # whole server (master and worker) at once, as a crash or the OOM killer would.
        start_new_session=True,
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


def test_sigkill_loses_no_answered_click(tmp_path: Path) -> None:
    n = 300
    data_dir = tmp_path / "data"
    port = _free_port()
    proc = _start(data_dir, port)
    try:
        _wait_ready(port, proc)
        base = f"http://127.0.0.1:{port}"
        key = _read_key(proc)
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, timeout=10) as http:
            created = http.post(
                "/api/v1/links", json={"url": "https://example.com/k"}, headers=auth
            )
            assert created.status_code == 201, created.text
            link = created.json()
            answered = 0
            for _ in range(n):
                resp = http.get("/" + link["slug"], headers={"user-agent": IPHONE_SAFARI})
                assert resp.status_code == 302
                answered += 1
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        spooled = list((data_dir / "spool").glob("seg-*"))
        assert spooled, "the clicks should still be in the spool when the process died"

        port = _free_port()
        proc = _start(data_dir, port)
        _wait_ready(port, proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            stats = http.get(f"/api/v1/links/{link['id']}/stats", headers=auth)
            assert stats.status_code == 200, stats.text
            assert stats.json()["clicks"] == answered == n
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _read_key(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    key = ""
    # The key line comes before the server starts listening, so it is already in the pipe.
    os.set_blocking(proc.stdout.fileno(), False)
    for line in proc.stdout:
        if line.strip().startswith("lb_"):
            key = line.strip()
    assert key, "no key printed"
    return key
