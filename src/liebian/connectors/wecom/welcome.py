"""Welcome messages sent by the connector itself, inside WeCom's 20-second window.

A 联系我 way may carry a ``welcome_text``. When an add callback names that way's state and
brings a WelcomeCode, the text is sent with ``send_welcome_msg`` right after the callback's
commit, on a small thread pool: the callback answers WeCom at once (WeCom wants a reply within
5 s) and the welcome still goes out within the window. The send itself is the service's
``send_welcome_msg`` (once per code, recorded before the call).

The same pool re-reads WeCom's corp tags when a ``change_external_tag`` callback says they
changed (``wecom.corp_tags_changed`` → tags.sync_corp_tags), so WeCom → liebian stays current
without an operator pressing 同步.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from liebian.connectors.wecom.callbacks import (
    TOPIC_CONTACT_ADDED,
    TOPIC_CORP_TAGS_CHANGED,
    TOPIC_CUSTOMER_EDITED,
)
from liebian.connectors.wecom.models import WecomContactWay

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime

log = logging.getLogger("liebian.wecom")


class AutoWelcome:
    """Subscribed to ``wecom.contact_added``; a component so the pool stops with the server."""

    def __init__(self, runtime: Runtime, workers: int = 4) -> None:
        self.runtime = runtime
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="liebian-wecom")
        self.pending: list[Future[Any]] = []

    def __call__(self, payload: dict[str, Any]) -> None:
        code, state = payload.get("welcome_code"), payload.get("state")
        if not code or not state:
            return
        self.pending = [f for f in self.pending if not f.done()]
        self.pending.append(
            self.pool.submit(self._send, str(payload["workspace_id"]), str(state), str(code))
        )

    def _send(self, workspace_id: str, state: str, code: str) -> str | None:
        from liebian.connectors.wecom.service import send_welcome_msg

        with self.runtime.read_sessions() as session:
            text = session.scalar(
                select(WecomContactWay.welcome_text).where(
                    WecomContactWay.workspace_id == workspace_id,
                    WecomContactWay.kind == "contact",
                    WecomContactWay.state == state,
                )
            )
        if not text:
            return None
        try:
            outcome = send_welcome_msg(self.runtime, workspace_id, code, text)
        except Exception:
            log.exception("welcome for state %s in %s not sent", state, workspace_id)
            return "error"
        if outcome.status != "sent":
            log.warning("welcome for state %s: %s (%s)", state, outcome.status, outcome.errmsg)
        return outcome.status

    def on_corp_tags_changed(self, payload: dict[str, Any]) -> None:
        self.pending = [f for f in self.pending if not f.done()]
        self.pending.append(self.pool.submit(self._sync_tags, str(payload["workspace_id"])))

    def _sync_tags(self, workspace_id: str) -> dict[str, int] | None:
        from liebian.connectors.wecom.tags import sync_corp_tags
        from liebian.kit.auth import Principal, Role

        try:
            # The connector acts for the workspace itself (WeCom told us), as its operator.
            return sync_corp_tags(self.runtime, Principal(workspace_id, Role.operator))
        except Exception:
            log.exception("corp tags of %s not re-read after WeCom's change", workspace_id)
            return None

    def on_customer_edited(self, payload: dict[str, Any]) -> None:
        self.pending = [f for f in self.pending if not f.done()]
        self.pending.append(
            self.pool.submit(
                self._pull_tags, str(payload["workspace_id"]), str(payload["external_userid"])
            )
        )

    def _pull_tags(self, workspace_id: str, external_userid: str) -> dict[str, int] | None:
        from liebian.connectors.wecom.tags import pull_customer_tags

        try:
            return pull_customer_tags(self.runtime, workspace_id, external_userid)
        except Exception:
            log.exception(
                "tags of %s in %s not read back from WeCom", external_userid, workspace_id
            )
            return None

    def drain(self) -> None:
        """Wait for the welcomes submitted so far (tests, shutdown)."""
        for future in list(self.pending):
            future.result()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await asyncio.to_thread(self.pool.shutdown, wait=True)


def install(runtime: Runtime) -> AutoWelcome:
    sender = AutoWelcome(runtime)
    runtime.bus.subscribe(TOPIC_CONTACT_ADDED, sender)
    runtime.bus.subscribe(TOPIC_CORP_TAGS_CHANGED, sender.on_corp_tags_changed)
    runtime.bus.subscribe(TOPIC_CUSTOMER_EDITED, sender.on_customer_edited)
    runtime.extras["wecom_auto_welcome"] = sender
    return sender
