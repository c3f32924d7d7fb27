"""The ``wecom_customer`` channel kind: a message to one WeCom external contact (customer)
through the WeCom connector's 企业群发 (``add_msg_template``, connectors/wecom).

WeCom lets an application reach a customer only as a mass-send task that the staff member
confirms in the WeCom app, and at most 4 such messages per customer per natural month. So:

- ``sent`` means WeCom accepted the task (``provider_message_id`` is its msgid); the staff
  member's confirmation happens in WeCom.
- The channel's default monthly cap is WeCom's 4 (channels' guard answers ``suppressed
  monthly_cap`` with the next month as ``deferred_until``); the connector counts too, across
  every way liebian mass-sends (API and channels), and a customer already at the cap fails
  with ``monthly_cap``.
- The contact's address is its WeCom external_userid (alias ``wecom_external_userid``, set
  by the connector's add callbacks); a contact without one fails with ``no_address``.
- The send's idempotency key is the connector's mass-send key: a resend after a crash finds
  the recorded task instead of creating a second one (``lookup``).

Needs ``ctx.extras["runtime"]`` (channels.service.adapter_context puts it there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from liebian.channels.base import (
    AdapterContext,
    Addressing,
    ChannelAdapter,
    DeliveryResult,
    OutboundMessage,
    register_adapter,
)
from liebian.kit.errors import Invalid

WECOM_MONTHLY_CAP = 4


def _result(outcome: Any, external_userid: str) -> DeliveryResult:
    if outcome.status == "created" and external_userid not in outcome.fail_list:
        return DeliveryResult.ok(outcome.msgid)
    if outcome.status == "created":
        return DeliveryResult.fail("wecom_refused", "WeCom left this customer out of the task",
                                   retryable=False)  # fmt: skip
    if outcome.status == "refused":
        return DeliveryResult.fail(
            "monthly_cap",
            outcome.errmsg or "the customer reached WeCom's monthly cap",
            retryable=False,
        )
    if outcome.status == "failed":
        return DeliveryResult.fail(
            f"wecom_{outcome.errcode}", outcome.errmsg or "", retryable=False
        )
    return DeliveryResult.fail(
        "wecom_unknown",
        "WeCom did not answer; check the staff member's pending mass sends in WeCom",
        retryable=False,
    )


@register_adapter
class WecomCustomerAdapter:
    kind: ClassVar[str] = "wecom_customer"
    addressing: ClassVar[Addressing] = "none"
    default_monthly_cap: ClassVar[int | None] = WECOM_MONTHLY_CAP

    def __init__(self, sender: str | None, ctx: AdapterContext) -> None:
        self.sender, self.ctx = sender, ctx

    @classmethod
    def check_config(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> tuple[dict[str, Any], str | None]:
        unknown = sorted(set(config) - {"sender"})
        if unknown:
            raise Invalid(f"unknown config field(s): {', '.join(unknown)}; allowed: sender",
                          code="invalid_channel", details={"field": "config"})  # fmt: skip
        sender = config.get("sender")
        if sender is not None and (not isinstance(sender, str) or not 0 < len(sender) <= 128):
            raise Invalid("config.sender is the WeCom user id of the staff member who sends",
                          code="invalid_channel", details={"field": "config.sender"})  # fmt: skip
        return ({"sender": sender} if sender else {}), None

    @classmethod
    def check_content(cls, content: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(content) - {"text"})
        text = content.get("text")
        if unknown or not isinstance(text, str) or not text.strip() or len(text) > 4000:
            raise Invalid(
                "a WeCom customer message is content.text: 1–4000 characters, nothing else",
                code="invalid_content", details={"field": "content.text"},
            )  # fmt: skip
        return {"text": text.strip()}

    @classmethod
    def build(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> ChannelAdapter:
        return cls(config.get("sender"), ctx)

    def _runtime(self) -> Any:
        runtime = self.ctx.extras.get("runtime")
        if runtime is None:
            raise RuntimeError("wecom_customer needs ctx.extras['runtime']")
        return runtime

    def send(self, message: OutboundMessage) -> DeliveryResult:
        from liebian.connectors.wecom import service as wecom
        from liebian.kit.errors import DomainError

        runtime = self._runtime()
        external = (
            wecom.external_userid_of(runtime, message.workspace_id, message.contact_id)
            if message.contact_id
            else None
        )
        if not external:
            return DeliveryResult.fail("no_address", "the contact has no WeCom external_userid",
                                       retryable=False)  # fmt: skip
        try:
            outcome = wecom.add_msg_template(
                runtime, message.workspace_id, idempotency_key=message.idempotency_key,
                external_userids=[external], text=str(message.content["text"]),
                sender=self.sender,
            )  # fmt: skip
        except DomainError as exc:  # not connected (409), WeCom unreachable (503)
            return DeliveryResult.fail(exc.code, exc.message, retryable=exc.status >= 500)
        return _result(outcome, external)

    def lookup(self, message: OutboundMessage) -> DeliveryResult | None:
        from liebian.connectors.wecom import service as wecom

        outcome = wecom.mass_send_by_key(
            self._runtime(), message.workspace_id, message.idempotency_key
        )
        if outcome is None:
            return None  # never reached WeCom: sending is safe
        return _result(outcome, outcome.recipients[0] if outcome.recipients else "")
