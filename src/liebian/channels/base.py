"""What callers and adapters agree on: the request, the outcome, and the adapter Protocol.

Callers (automation, communities, the API) build a :class:`SendRequest` and get a
:class:`SendOutcome` from ``channels.service.send``. Each channel kind is one small adapter
class registered in :data:`ADAPTERS`; ``channels.service`` never knows a protocol's details.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import httpx

from liebian.kit.netguard import Network

SendStatus = Literal["sent", "failed", "deferred", "suppressed", "pending_staff"]
Category = Literal["marketing", "transactional"]
# How a kind finds the person it writes to: the contact's email, phone, nobody (a group or
# an endpoint receives everything), or a person on the staff (a task).
Addressing = Literal["email", "phone", "none", "staff"]


@dataclass(frozen=True)
class SendRequest:
    workspace_id: str
    channel_id: str
    contact_id: str | None
    content: Mapping[str, Any]
    # Unique per workspace; the same key never sends twice. "<run id>:<step id>" for journeys.
    idempotency_key: str
    source: str = "api"
    category: Category = "marketing"


@dataclass(frozen=True)
class SendOutcome:
    send_id: str
    status: SendStatus
    # Why suppressed / deferred: "opted_out", "frequency_cap", "monthly_cap", "no_address",
    # "quiet_hours", "in_flight", "channel_disabled"; for failed, the adapter's error code.
    reason: str | None = None
    # UTC: when a deferred send may go (call send() again with the same key then), or when a
    # cap frees a slot.
    deferred_until: datetime | None = None
    provider_message_id: str | None = None
    # A failed send the same key may retry (network fault, 5xx, rate limit at the provider).
    retryable: bool = False
    error: str | None = None
    task_id: str | None = None
    # True when this call found the record already settled (nothing was sent by this call).
    replayed: bool = False


@dataclass(frozen=True)
class OutboundMessage:
    """What an adapter gets: the content checked by its ``check_content``, the address the
    kind needs (decrypted just for this call), and the key to hand to the receiver."""

    send_id: str
    workspace_id: str
    channel_id: str
    idempotency_key: str
    content: Mapping[str, Any]
    category: str
    contact_id: str | None = None
    contact_external_id: str | None = None
    address: str | None = None
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class DeliveryResult:
    """An adapter's answer. ``delivered``: the receiver accepted it (with its message id)."""

    delivered: bool
    provider_message_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    retryable: bool = False

    @classmethod
    def ok(cls, message_id: str | None) -> DeliveryResult:
        return cls(True, provider_message_id=message_id)

    @classmethod
    def fail(cls, code: str, error: str, *, retryable: bool) -> DeliveryResult:
        return cls(False, error_code=code, error=error[:500], retryable=retryable)


@dataclass
class AdapterContext:
    """Process-wide things an adapter may use: the SSRF policy and an HTTP client through
    kit/netguard.PinnedTransport (built once per send call by the service)."""

    http: httpx.Client
    allow_private: bool = False
    allowed_networks: tuple[Network, ...] = ()
    timeout: float = 10.0
    extras: dict[str, Any] = field(default_factory=dict)


class ChannelAdapter(Protocol):
    """One channel kind. ``send`` delivers once; ``lookup`` says whether a message with this
    idempotency key was delivered: a result, or None when the channel cannot tell (then the
    service resends with the same key and the receiver dedupes — decision 0025)."""

    kind: ClassVar[str]
    addressing: ClassVar[Addressing]

    def send(self, message: OutboundMessage) -> DeliveryResult: ...

    def lookup(self, message: OutboundMessage) -> DeliveryResult | None: ...


class AdapterKind(Protocol):
    """The class side of an adapter: checks configuration and content, builds instances."""

    kind: str
    addressing: Addressing
    # Kinds whose platform limits what a person receives per month (WeCom customer messages).
    default_monthly_cap: int | None

    @classmethod
    def check_config(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> tuple[dict[str, Any], str | None]:
        """(clean config, secret to store) or raise kit.errors.Invalid naming the field."""
        ...

    @classmethod
    def check_content(cls, content: Mapping[str, Any]) -> dict[str, Any]: ...

    @classmethod
    def build(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> ChannelAdapter: ...


ADAPTERS: dict[str, AdapterKind] = {}
K = TypeVar("K", bound=AdapterKind)


def register_adapter(kind: K) -> K:
    """Add a channel kind (a class decorator; the wecom connector adds ``wecom_customer``)."""
    ADAPTERS[kind.kind] = kind
    return kind


def adapter_kind(kind: str) -> AdapterKind:
    _load_builtin()
    from liebian.kit.errors import Invalid

    try:
        return ADAPTERS[kind]
    except KeyError:
        raise Invalid(
            f"unknown channel kind '{kind}'; use one of: {', '.join(sorted(ADAPTERS))}",
            code="unknown_channel_kind",
            details={"field": "kind"},
        ) from None


_loaded: list[Callable[[], None]] = []


def _load_builtin() -> None:
    if not _loaded:
        from liebian.channels import (
            adapters,  # noqa: F401  (registers the built-in kinds)
            wecom_customer,  # noqa: F401  (through connectors/wecom)
        )

        _loaded.append(lambda: None)
