"""A real ``liebian serve`` child process for fault tests: start, wait, read its key, kill.

Each server runs in a session of its own, so the test can kill master and worker at once
(``os.killpg``), as a crash or the OOM killer would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

LIEBIAN = Path(sys.executable).with_name("liebian")
SECRET = "44" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "LIEBIAN_SECRET_KEY": SECRET, **(env or {})}
        for name in ("LIEBIAN_DATABASE_URL", "LIEBIAN_REDIS_URL"):
            if env is None or name not in env:
                full_env.pop(name, None)
        cmd = [str(LIEBIAN), "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(data_dir)]  # fmt: skip
        if prefix:  # e.g. a mount namespace: sh -c '…; exec "$@"' sh <cmd>
            cmd = [*prefix, *cmd]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=full_env,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "server exited"
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("server did not come up")

    def key(self) -> str:
        """The owner key a first start prints (before it listens, so already in the pipe)."""
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        key = ""
        for line in self.proc.stdout:
            if line.strip().startswith("lb_"):
                key = line.strip()
        assert key, "no key printed"
        return key

    def kill(self) -> None:
        """SIGKILL, master and worker at once."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)

    def stop(self) -> None:
        """SIGTERM: a clean stop (the flusher loads what is spooled)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def stored_event_ids(data_dir: Path, workspace_id: str | None = None) -> list[str]:
    """Every stored event id (repeats included), read from the DuckDB file of a stopped
    server."""
    import duckdb

    con = duckdb.connect(str(data_dir / "events.duckdb"), read_only=True)
    try:
        sql = "SELECT event_id FROM events"
        params: list[str] = []
        if workspace_id:
            sql += " WHERE workspace_id = ?"
            params.append(workspace_id)
        return [r[0] for r in con.execute(sql, params).fetchall()]
    finally:
        con.close()
