"""A process for the trigger SIGKILL test: tags contacts one by one, each in its own committed
transaction, with the trigger outbox installed and no triggers thread (the test kills it)."""

from __future__ import annotations

import sys
from pathlib import Path

import liebian.models_registry  # noqa: F401  (every table, as serve and workers have)
from liebian.app.runtime import Runtime
from liebian.automation.triggers import install
from liebian.contacts.tags import add_tags
from liebian.kit.db import session_scope
from liebian.kit.settings import Settings


def main() -> None:
    database_url, data_dir, secret, ws, tag, contacts = sys.argv[1:7]
    settings = Settings(data_dir=Path(data_dir), database_url=database_url, secret_key=secret)
    runtime = Runtime.build(settings)
    install(runtime.sessions)
    for i, contact in enumerate(contacts.split(",")):
        with session_scope(runtime.sessions) as session:
            add_tags(session, ws, [contact], [tag], source="api", reason="test")
        print(i, flush=True)


if __name__ == "__main__":
    main()
