"""A sender process for the SIGKILL test: sends keys 0..n-1 through channels.service.send
and prints one line per outcome (run as a script; the test kills one of two)."""

from __future__ import annotations

import sys
from pathlib import Path

from liebian.app.runtime import Runtime
from liebian.channels.service import SendRequest, send
from liebian.kit.settings import Settings


def main() -> None:
    database_url, data_dir, secret, ws, chn, contacts, n = sys.argv[1:8]
    people = contacts.split(",")
    settings = Settings(data_dir=Path(data_dir), database_url=database_url, secret_key=secret,
                        base_url="http://sho.rt", allow_private_webhooks=True)  # fmt: skip
    runtime = Runtime.build(settings)
    for i in range(int(n)):
        request = SendRequest(workspace_id=ws, channel_id=chn, contact_id=people[i % len(people)],
                              content={"text": f"第 {i} 条"}, idempotency_key=f"jrn_{i}:step_1",
                              source="journey", category="transactional")  # fmt: skip
        with runtime.sessions() as session:
            outcome = send(session, runtime, request)
        print(i, outcome.status, outcome.reason, flush=True)


if __name__ == "__main__":
    main()
