"""The built-in channel kinds, one small class each (Protocol in base.py).

Every HTTP adapter connects through kit/netguard.PinnedTransport (the service's client), so a
configured URL can never reach a private address unless the operator allowed it; SMTP resolves
and checks its host the same way before connecting. Each carries the caller's idempotency key
to the receiver (a header, an ``out_id``, a stable Message-ID) so a resend after a crash can
be recognised there (decision 0025).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import smtplib
import ssl
import time
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formataddr
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from liebian.channels.base import (
    AdapterContext,
    Addressing,
    ChannelAdapter,
    DeliveryResult,
    OutboundMessage,
    register_adapter,
)
from liebian.kit.errors import Invalid
from liebian.kit.netguard import ForbiddenAddress, check_host, resolve_checked
from liebian.webhooks import signing
from liebian.webhooks.urls import check_url

IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "liebian-channels/1"


def _invalid(message: str, field: str, code: str = "invalid_channel") -> Invalid:
    return Invalid(message, code=code, details={"field": field})


def _text(content: Mapping[str, Any], key: str, *, limit: int, required: bool) -> str | None:
    value = content.get(key)
    if value is None or value == "":
        if required:
            raise _invalid(f"content.{key} is required for this channel", f"content.{key}",
                           "invalid_content")  # fmt: skip
        return None
    if not isinstance(value, str):
        raise _invalid(f"content.{key} must be text", f"content.{key}", "invalid_content")
    if len(value.encode()) > limit:
        raise _invalid(
            f"content.{key} is longer than {limit} bytes (UTF-8)", f"content.{key}",
            "invalid_content",
        )  # fmt: skip
    return value


def _only(content: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(content) - allowed)
    if unknown:
        raise _invalid(
            f"content has fields this channel does not use: {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(allowed))}",
            f"content.{unknown[0]}", "invalid_content",
        )  # fmt: skip


def _url(value: Any, field: str, ctx: AdapterContext) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{field} is required (https://…)", field)
    try:
        return check_url(value, allow_private=ctx.allow_private, allowed=ctx.allowed_networks)
    except Invalid as exc:
        raise _invalid(exc.message.replace("url ", f"{field} ", 1), field, exc.code) from None


def _http_failure(exc: Exception) -> DeliveryResult:
    if isinstance(exc, ForbiddenAddress):
        return DeliveryResult.fail("forbidden_address", str(exc), retryable=False)
    return DeliveryResult.fail("network", f"{type(exc).__name__}: {exc}", retryable=True)


def _status_failure(response: httpx.Response) -> DeliveryResult:
    code = response.status_code
    retryable = code >= 500 or code in (408, 409, 425, 429)
    return DeliveryResult.fail(f"http_{code}", response.text[:300], retryable=retryable)


# -- signed webhook ---------------------------------------------------------------------------


@register_adapter
class WebhookAdapter:
    """POST a JSON message to the brand's endpoint, signed like our webhooks
    (``Liebian-Signature``), with ``Idempotency-Key`` for the receiver's dedupe."""

    kind: ClassVar[str] = "webhook"
    addressing: ClassVar[Addressing] = "none"
    default_monthly_cap: ClassVar[int | None] = None
    generates_secret: ClassVar[bool] = True

    def __init__(self, url: str, secret: str, ctx: AdapterContext) -> None:
        self.url, self.secret, self.ctx = url, secret, ctx

    @classmethod
    def check_config(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> tuple[dict[str, Any], str | None]:
        _only(config, {"url"})
        url = _url(config.get("url"), "config.url", ctx)
        return {"url": url}, secret or signing.new_secret()

    @classmethod
    def check_content(cls, content: Mapping[str, Any]) -> dict[str, Any]:
        if not content:
            raise _invalid("content must not be empty", "content", "invalid_content")
        if len(json.dumps(dict(content), ensure_ascii=False)) > 64_000:
            raise _invalid("content is larger than 64 KB", "content", "invalid_content")
        return dict(content)

    @classmethod
    def build(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> ChannelAdapter:
        return cls(str(config["url"]), secret or "", ctx)

    def send(self, message: OutboundMessage) -> DeliveryResult:
        contact = (
            {"id": message.contact_id, "external_id": message.contact_external_id}
            if message.contact_id
            else None
        )
        body = json.dumps(
            {
                "id": message.send_id,
                "type": "message",
                "idempotency_key": message.idempotency_key,
                "channel_id": message.channel_id,
                "category": message.category,
                "contact": contact,
                "content": dict(message.content),
                "unsubscribe_url": message.unsubscribe_url,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            signing.HEADER: signing.header_value(self.secret, body),
            IDEMPOTENCY_HEADER: message.idempotency_key,
            "Liebian-Event": "channel.message",
        }
        try:
            response = self.ctx.http.post(self.url, content=body, headers=headers)
        except (httpx.HTTPError, ForbiddenAddress) as exc:
            return _http_failure(exc)
        if 200 <= response.status_code < 300:
            return DeliveryResult.ok(response.headers.get("x-message-id") or message.send_id)
        return _status_failure(response)

    def lookup(self, message: OutboundMessage) -> DeliveryResult | None:
        return None  # cannot tell: resent with the same Idempotency-Key, the receiver dedupes


# -- WeCom group robot (群机器人) ---------------------------------------------------------------

# errcodes worth another try: system busy, rate limited (20 messages a minute per robot).
_ROBOT_RETRYABLE = {-1, 45009, 45033}
_ROBOT_MAX_IMAGE = 2 * 1024 * 1024


@register_adapter
class WeComRobotAdapter:
    """WeCom group robot: POST ``…/cgi-bin/webhook/send?key=KEY`` with msgtype text, markdown,
    image (base64 + md5) or news; the answer is ``{"errcode": 0, "errmsg": "ok"}``. The key is
    the secret (anyone holding it can post to the group): stored encrypted, never returned."""

    kind: ClassVar[str] = "wecom_robot"
    addressing: ClassVar[Addressing] = "none"
    default_monthly_cap: ClassVar[int | None] = None

    def __init__(self, url: str, key: str, ctx: AdapterContext) -> None:
        self.url, self.key, self.ctx = url, key, ctx

    @classmethod
    def check_config(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> tuple[dict[str, Any], str | None]:
        _only(config, {"url"})
        raw = config.get("url") or "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
        parts = urlsplit(str(raw).strip())
        query = dict(parse_qsl(parts.query))
        key = query.pop("key", None) or secret
        if not key:
            raise _invalid(
                "the robot's webhook address needs its key: paste the whole address from the "
                "group's robot settings (…/cgi-bin/webhook/send?key=…)",
                "config.url",
            )
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        return {"url": _url(url, "config.url", ctx)}, key

    @classmethod
    def check_content(cls, content: Mapping[str, Any]) -> dict[str, Any]:
        _only(content, {"text", "markdown", "image_base64", "news", "mentioned_list",
                        "mentioned_mobile_list"})  # fmt: skip
        if content.get("news") is not None:
            articles = content["news"]
            if not isinstance(articles, list) or not 1 <= len(articles) <= 8:
                raise _invalid("content.news must hold 1 to 8 articles", "content.news",
                               "invalid_content")  # fmt: skip
            clean = []
            for i, article in enumerate(articles):
                if not isinstance(article, dict):
                    raise _invalid("each article is an object", f"content.news[{i}]",
                                   "invalid_content")  # fmt: skip
                _only(article, {"title", "description", "url", "picurl"})
                title = _text(article, "title", limit=128, required=True)
                url = _text(article, "url", limit=2000, required=True)
                item = {"title": title, "url": url}
                for opt, limit in (("description", 512), ("picurl", 2000)):
                    value = _text(article, opt, limit=limit, required=False)
                    if value:
                        item[opt] = value
                clean.append(item)
            return {"msgtype": "news", "news": {"articles": clean}}
        if content.get("image_base64") is not None:
            try:
                raw = base64.b64decode(str(content["image_base64"]), validate=True)
            except (binascii.Error, ValueError):
                raise _invalid("content.image_base64 is not base64", "content.image_base64",
                               "invalid_content") from None  # fmt: skip
            if len(raw) > _ROBOT_MAX_IMAGE or not (
                raw.startswith(b"\x89PNG") or raw.startswith(b"\xff\xd8")
            ):
                raise _invalid("the robot takes a JPG or PNG image of at most 2 MB",
                               "content.image_base64", "invalid_content")  # fmt: skip
            return {"msgtype": "image", "image": {"base64": str(content["image_base64"]),
                                                  "md5": hashlib.md5(raw).hexdigest()}}  # fmt: skip
        if content.get("markdown") is not None:
            text = _text(content, "markdown", limit=4096, required=True)
            return {"msgtype": "markdown", "markdown": {"content": text}}
        text = _text(content, "text", limit=2048, required=True)
        body: dict[str, Any] = {"content": text}
        for name in ("mentioned_list", "mentioned_mobile_list"):
            value = content.get(name)
            if value is not None:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise _invalid(f"content.{name} is a list of strings", f"content.{name}",
                                   "invalid_content")  # fmt: skip
                body[name] = value
        return {"msgtype": "text", "text": body}

    @classmethod
    def build(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> ChannelAdapter:
        return cls(str(config["url"]), secret or "", ctx)

    def send(self, message: OutboundMessage) -> DeliveryResult:
        sep = "&" if "?" in self.url else "?"
        url = f"{self.url}{sep}{urlencode({'key': self.key})}"
        try:
            response = self.ctx.http.post(url, json=dict(message.content),
                                          headers={"User-Agent": USER_AGENT})  # fmt: skip
        except (httpx.HTTPError, ForbiddenAddress) as exc:
            return _http_failure(exc)
        if response.status_code != 200:
            return _status_failure(response)
        try:
            answer = response.json()
            errcode = int(answer.get("errcode", -1))
        except (ValueError, AttributeError, TypeError):
            return DeliveryResult.fail("bad_answer", response.text[:300], retryable=True)
        if errcode == 0:
            return DeliveryResult.ok(None)
        return DeliveryResult.fail(
            f"wecom_{errcode}", str(answer.get("errmsg", "")), retryable=errcode in _ROBOT_RETRYABLE
        )

    def lookup(self, message: OutboundMessage) -> DeliveryResult | None:
        return None  # the robot API keeps no history: cannot tell


# -- SMTP -------------------------------------------------------------------------------------


@register_adapter
class SmtpAdapter:
    """Email through the brand's SMTP server (smtplib). ``security``: starttls (default), ssl
    or none. The Message-ID is derived from the idempotency key, so a resend after a crash is
    the same message to mail clients."""

    kind: ClassVar[str] = "smtp"
    addressing: ClassVar[Addressing] = "email"
    default_monthly_cap: ClassVar[int | None] = None

    def __init__(self, config: Mapping[str, Any], password: str | None, ctx: AdapterContext):
        self.config, self.password, self.ctx = dict(config), password, ctx

    @classmethod
    def check_config(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> tuple[dict[str, Any], str | None]:
        _only(config, {"host", "port", "security", "username", "from_address", "from_name",
                       "default_subject"})  # fmt: skip
        host = config.get("host")
        if not isinstance(host, str) or not host.strip():
            raise _invalid("config.host is required (smtp.example.com)", "config.host")
        host = host.strip()
        if not ctx.allow_private:
            try:
                check_host(host, ctx.allowed_networks)
            except ForbiddenAddress as exc:
                raise _invalid(f"config.host: {exc}", "config.host", "private_address") from None
        security = config.get("security", "starttls")
        if security not in ("starttls", "ssl", "none"):
            raise _invalid("config.security is starttls, ssl or none", "config.security")
        port = config.get("port") or {"starttls": 587, "ssl": 465, "none": 25}[security]
        if not isinstance(port, int) or not 0 < port < 65536:
            raise _invalid("config.port is a port number (587, 465, 25)", "config.port")
        sender = config.get("from_address")
        if not isinstance(sender, str) or "@" not in sender or len(sender) > 254:
            raise _invalid("config.from_address is the sender's email address",
                           "config.from_address")  # fmt: skip
        clean: dict[str, Any] = {"host": host, "port": port, "security": security,
                                 "from_address": sender.strip()}  # fmt: skip
        for opt in ("username", "from_name", "default_subject"):
            value = config.get(opt)
            if value is not None:
                if not isinstance(value, str) or len(value) > 200:
                    raise _invalid(f"config.{opt} is text of at most 200 characters",
                                   f"config.{opt}")  # fmt: skip
                clean[opt] = value
        if clean.get("username") and not secret:
            raise _invalid("secret (the SMTP password) is required with a username", "secret")
        return clean, secret

    @classmethod
    def check_content(cls, content: Mapping[str, Any]) -> dict[str, Any]:
        _only(content, {"subject", "text", "html"})
        clean: dict[str, Any] = {}
        subject = _text(content, "subject", limit=500, required=False)
        if subject:
            if "\n" in subject or "\r" in subject:
                raise _invalid("content.subject is one line", "content.subject", "invalid_content")
            clean["subject"] = subject
        clean["text"] = _text(content, "text", limit=200_000, required=True)
        html = _text(content, "html", limit=500_000, required=False)
        if html:
            clean["html"] = html
        return clean

    @classmethod
    def build(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> ChannelAdapter:
        return cls(config, secret, ctx)

    def _message(self, message: OutboundMessage) -> EmailMessage:
        cfg = self.config
        email = EmailMessage()
        sender = cfg["from_address"]
        email["From"] = formataddr((cfg["from_name"], sender)) if cfg.get("from_name") else sender
        email["To"] = message.address or ""
        email["Subject"] = message.content.get("subject") or cfg.get("default_subject") or "通知"
        digest = hashlib.sha256(
            f"{message.workspace_id}:{message.idempotency_key}".encode()
        ).hexdigest()[:32]
        email["Message-ID"] = f"<{digest}@{sender.rpartition('@')[2]}>"
        email["X-Liebian-Idempotency-Key"] = message.idempotency_key
        text = str(message.content.get("text") or "")
        if message.unsubscribe_url and message.category == "marketing":
            email["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            text += f"\n\n不想再收到此类邮件？退订：{message.unsubscribe_url}\n"
        email.set_content(text)
        if message.content.get("html"):
            email.add_alternative(str(message.content["html"]), subtype="html")
        return email

    def send(self, message: OutboundMessage) -> DeliveryResult:
        cfg = self.config
        email = self._message(message)
        host, port = str(cfg["host"]), int(cfg["port"])
        try:
            address = host if self.ctx.allow_private else resolve_checked(
                host, port, self.ctx.allowed_networks
            )  # fmt: skip
            context = ssl.create_default_context()
            client: smtplib.SMTP
            if cfg["security"] == "ssl":
                client = smtplib.SMTP_SSL(timeout=self.ctx.timeout, context=context)
                client._host = host  # type: ignore[attr-defined]  # SNI / certificate name
                client.connect(address, port)
            else:
                client = smtplib.SMTP(timeout=self.ctx.timeout)
                client._host = host  # type: ignore[attr-defined]
                client.connect(address, port)
            with client:
                if cfg["security"] == "starttls":
                    client.starttls(context=context)
                if cfg.get("username"):
                    client.login(str(cfg["username"]), self.password or "")
                refused = client.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            return DeliveryResult.fail("recipient_refused", str(exc.recipients), retryable=False)
        except smtplib.SMTPAuthenticationError as exc:
            return DeliveryResult.fail("smtp_auth", str(exc), retryable=False)
        except smtplib.SMTPResponseException as exc:
            return DeliveryResult.fail(f"smtp_{exc.smtp_code}", str(exc.smtp_error),
                                       retryable=exc.smtp_code < 500)  # fmt: skip
        except (httpx.HTTPError, ForbiddenAddress, OSError, smtplib.SMTPException) as exc:
            return _http_failure(exc)
        if refused:
            return DeliveryResult.fail("recipient_refused", str(refused), retryable=False)
        return DeliveryResult.ok(str(email["Message-ID"]))

    def lookup(self, message: OutboundMessage) -> DeliveryResult | None:
        return None  # SMTP cannot be asked; a resend keeps the Message-ID


# -- SMS provider over HTTP ------------------------------------------------------------------


def sms_signature(secret: str, timestamp: str, payload: bytes) -> str:
    """hex HMAC-SHA256(secret, "<timestamp>." + payload): the body of a send, the out_id of a
    lookup. The provider recomputes it over what it received."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + payload,
                    hashlib.sha256).hexdigest()  # fmt: skip


@register_adapter
class SmsAdapter:
    """SMS through a provider's HTTP API: POST ``url`` with JSON ``{app_id, phone, text,
    sign_name, template_id, params, out_id}`` signed in ``X-Sms-Signature`` (see
    :func:`sms_signature`) with ``X-Sms-Timestamp``; ``out_id`` (and ``Idempotency-Key``) is
    our idempotency key. The answer ``{"code": "OK", "message_id": …}`` means accepted. With
    ``lookup_url``, ``GET lookup_url?out_id=…`` answers whether a message was accepted."""

    kind: ClassVar[str] = "sms"
    addressing: ClassVar[Addressing] = "phone"
    default_monthly_cap: ClassVar[int | None] = None

    def __init__(self, config: Mapping[str, Any], secret: str, ctx: AdapterContext) -> None:
        self.config, self.secret, self.ctx = dict(config), secret, ctx

    @classmethod
    def check_config(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> tuple[dict[str, Any], str | None]:
        _only(config, {"url", "lookup_url", "app_id", "sign_name"})
        clean: dict[str, Any] = {"url": _url(config.get("url"), "config.url", ctx)}
        if config.get("lookup_url"):
            clean["lookup_url"] = _url(config["lookup_url"], "config.lookup_url", ctx)
        app_id = config.get("app_id")
        if not isinstance(app_id, str) or not app_id.strip() or len(app_id) > 100:
            raise _invalid("config.app_id is the provider's account or app id", "config.app_id")
        clean["app_id"] = app_id.strip()
        if config.get("sign_name") is not None:
            clean["sign_name"] = str(config["sign_name"])[:40]
        if not secret:
            raise _invalid("secret (the provider's signing secret) is required", "secret")
        return clean, secret

    @classmethod
    def check_content(cls, content: Mapping[str, Any]) -> dict[str, Any]:
        _only(content, {"text", "template_id", "params"})
        clean: dict[str, Any] = {"text": _text(content, "text", limit=1000, required=True)}
        if content.get("template_id") is not None:
            clean["template_id"] = str(content["template_id"])[:64]
        params = content.get("params")
        if params is not None:
            if not isinstance(params, dict) or not all(
                isinstance(v, str | int) for v in params.values()
            ):
                raise _invalid("content.params maps names to text", "content.params",
                               "invalid_content")  # fmt: skip
            clean["params"] = params
        return clean

    @classmethod
    def build(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> ChannelAdapter:
        return cls(config, secret or "", ctx)

    def _headers(self, key: str, payload: bytes) -> dict[str, str]:
        t = str(int(time.time()))
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Sms-App-Id": self.config["app_id"],
            "X-Sms-Timestamp": t,
            "X-Sms-Signature": sms_signature(self.secret, t, payload),
            IDEMPOTENCY_HEADER: key,
        }

    def send(self, message: OutboundMessage) -> DeliveryResult:
        payload = {"app_id": self.config["app_id"], "phone": message.address,
                   "out_id": message.idempotency_key, **dict(message.content)}  # fmt: skip
        if self.config.get("sign_name"):
            payload["sign_name"] = self.config["sign_name"]
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            response = self.ctx.http.post(
                self.config["url"], content=body,
                headers=self._headers(message.idempotency_key, body),
            )  # fmt: skip
        except (httpx.HTTPError, ForbiddenAddress) as exc:
            return _http_failure(exc)
        return self._answer(response)

    def _answer(self, response: httpx.Response) -> DeliveryResult:
        if response.status_code != 200:
            return _status_failure(response)
        try:
            answer = response.json()
        except ValueError:
            return DeliveryResult.fail("bad_answer", response.text[:300], retryable=True)
        if answer.get("code") == "OK":
            return DeliveryResult.ok(str(answer.get("message_id") or "") or None)
        code = str(answer.get("code") or "error")
        return DeliveryResult.fail(f"sms_{code.lower()}", str(answer.get("message", "")),
                                   retryable=code in ("BUSY", "THROTTLED"))  # fmt: skip

    def lookup(self, message: OutboundMessage) -> DeliveryResult | None:
        url = self.config.get("lookup_url")
        if not url:
            return None
        key = message.idempotency_key
        try:
            response = self.ctx.http.get(
                url, params={"out_id": key}, headers=self._headers(key, key.encode())
            )
        except (httpx.HTTPError, ForbiddenAddress):
            return None
        if response.status_code == 404:
            return DeliveryResult.fail("not_found", "the provider has no such message",
                                       retryable=True)  # fmt: skip
        result = self._answer(response)
        return result if result.delivered else None


# -- a person sends it (personal WeChat) ------------------------------------------------------


@register_adapter
class StaffAdapter:
    """Channels only a person can use (personal WeChat, a phone call): ``send()`` creates a
    staff task with the message and answers ``pending_staff``; marking the task done confirms
    the send (``message_confirmed``). Never called to deliver."""

    kind: ClassVar[str] = "personal_wechat"
    addressing: ClassVar[Addressing] = "staff"
    default_monthly_cap: ClassVar[int | None] = None

    @classmethod
    def check_config(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> tuple[dict[str, Any], str | None]:
        _only(config, {"assignee"})
        assignee = config.get("assignee")
        if assignee is not None and (not isinstance(assignee, str) or len(assignee) > 100):
            raise _invalid("config.assignee is a staff member's name or id", "config.assignee")
        return ({"assignee": assignee} if assignee else {}), None

    @classmethod
    def check_content(cls, content: Mapping[str, Any]) -> dict[str, Any]:
        _only(content, {"text", "title"})
        clean: dict[str, Any] = {"text": _text(content, "text", limit=4000, required=True)}
        title = _text(content, "title", limit=200, required=False)
        if title:
            clean["title"] = title
        return clean

    @classmethod
    def build(
        cls, config: Mapping[str, Any], secret: str | None, ctx: AdapterContext
    ) -> ChannelAdapter:
        # Never called: send() turns a staff channel into a task before any adapter is built.
        raise RuntimeError("staff channels create tasks; nothing is delivered")
