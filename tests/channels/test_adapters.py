"""Each adapter against a real receiver on loopback speaking its protocol (no database):
the WeCom group robot, SMTP (aiosmtpd), the SMS provider (HMAC), the signed webhook."""

from __future__ import annotations

import base64
import socket
import sys
from collections.abc import Iterator
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from channel_fakes import serve, sms_provider, webhook_receiver, wecom_robot

from liebian.channels.adapters import (
    SmsAdapter,
    SmtpAdapter,
    WebhookAdapter,
    WeComRobotAdapter,
)
from liebian.channels.base import AdapterContext, OutboundMessage
from liebian.kit.errors import Invalid
from liebian.kit.netguard import PinnedTransport

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()


@pytest.fixture
def ctx() -> Iterator[AdapterContext]:
    http = httpx.Client(timeout=5, transport=PinnedTransport(allow_all=True))
    yield AdapterContext(http, allow_private=True)
    http.close()


def message(content: dict[str, Any], key: str = "k1", **kw: Any) -> OutboundMessage:
    return OutboundMessage(send_id="snd_1", workspace_id="wks_1", channel_id="chn_1",
                           idempotency_key=key, content=content, category="marketing", **kw)  # fmt: skip


def test_wecom_robot_speaks_the_group_robot_protocol(ctx: AdapterContext) -> None:
    with serve(wecom_robot("ROBOT-KEY")) as robot:
        url = robot.url.rstrip("/") + "/cgi-bin/webhook/send?key=ROBOT-KEY"
        config, key = WeComRobotAdapter.check_config({"url": url}, None, ctx)
        assert key == "ROBOT-KEY" and "ROBOT-KEY" not in config["url"]
        adapter = WeComRobotAdapter.build(config, key, ctx)
        contents = [
            {"text": "早上好", "mentioned_list": ["@all"]},
            {"markdown": "**今日干货** <font color=\"info\">3 条</font>"},
            {"image_base64": PNG},
            {"news": [{"title": "7 天训练营", "url": "https://example.com/a",
                       "picurl": "https://example.com/a.png"}]},
        ]  # fmt: skip
        for content in contents:
            result = adapter.send(message(WeComRobotAdapter.check_content(content)))
            assert result.delivered, result
        kinds = [m["msgtype"] for m in robot.accepted.values()]
        assert kinds == ["text", "markdown", "image", "news"]
        assert robot.accepted["0"]["text"]["mentioned_list"] == ["@all"]
        # errcode answers: a rate limit may be retried, a wrong key may not.
        robot.state["rate_limited"] = True
        limited = adapter.send(message(WeComRobotAdapter.check_content({"text": "x"})))
        assert not limited.delivered and limited.retryable and limited.error_code == "wecom_45009"
        wrong = WeComRobotAdapter.build(config, "OTHER", ctx)
        refused = wrong.send(message({"msgtype": "text", "text": {"content": "x"}}))
        assert refused.error_code == "wecom_93000" and not refused.retryable
    for bad in ({"text": "x" * 2100}, {"news": []}, {"image_base64": "bm90IGFuIGltYWdl"},
                {"text": "x", "video": 1}, {}):  # fmt: skip
        with pytest.raises(Invalid):
            WeComRobotAdapter.check_content(bad)
    with pytest.raises(Invalid, match="key"):
        WeComRobotAdapter.check_config({"url": "https://qyapi.weixin.qq.com/x"}, None, ctx)


def test_smtp_delivers_to_a_real_smtp_server(ctx: AdapterContext) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received: list[Any] = []

    class Keep(Message):
        def handle_message(self, msg: Any) -> None:
            received.append(msg)

    with socket.socket() as probe:  # a free port (the controller's start probes its port)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config, secret = SmtpAdapter.check_config(
            {"host": "127.0.0.1", "port": port, "security": "none",
             "from_address": "hello@brand.example", "from_name": "品牌"}, None, ctx)  # fmt: skip
        adapter = SmtpAdapter.build(config, secret, ctx)
        content = SmtpAdapter.check_content({"subject": "欢迎加入", "text": "你好，欢迎！",
                                             "html": "<p>你好，欢迎！</p>"})  # fmt: skip
        msg = message(content, key="run_1:step_1", address="alice@example.com",
                      unsubscribe_url="http://sho.rt/h5/unsubscribe/t")  # fmt: skip
        first = adapter.send(msg)
        second = adapter.send(msg)  # a resend after a crash: the same Message-ID
        assert first.delivered and first.provider_message_id == second.provider_message_id
        assert len(received) == 2
        mail = received[0]
        assert mail["To"] == "alice@example.com"
        assert str(make_header(decode_header(mail["Subject"]))) == "欢迎加入"
        assert "你好，欢迎！" in mail.get_payload()[0].get_payload(decode=True).decode()
        assert mail["X-Liebian-Idempotency-Key"] == "run_1:step_1"
        assert mail["List-Unsubscribe"] == "<http://sho.rt/h5/unsubscribe/t>"
        assert mail["Message-ID"] == first.provider_message_id
        # Nobody listening: a retryable failure, not an exception.
        controller.stop()
        down = adapter.send(msg)
        assert not down.delivered and down.retryable
    finally:
        if controller.loop.is_running():
            controller.stop()
    with pytest.raises(Invalid, match="from_address"):
        SmtpAdapter.check_config({"host": "smtp.example.com"}, None, ctx)
    with pytest.raises(Invalid, match="private"):
        SmtpAdapter.check_config({"host": "127.0.0.1", "from_address": "a@b.c"}, None,
                                 AdapterContext(ctx.http))  # fmt: skip
    with pytest.raises(Invalid, match="one line"):
        SmtpAdapter.check_content({"subject": "a\r\nBcc: x@y", "text": "t"})


def test_sms_provider_is_signed_and_deduped_by_out_id(ctx: AdapterContext) -> None:
    with serve(sms_provider("s3cret-key")) as provider:
        config, secret = SmsAdapter.check_config(
            {"url": provider.url + "send", "lookup_url": provider.url + "lookup",
             "app_id": "app-1", "sign_name": "品牌"}, "s3cret-key", ctx)  # fmt: skip
        adapter = SmsAdapter.build(config, secret, ctx)
        msg = message(SmsAdapter.check_content({"text": "您的订单已发货"}), key="o-1",
                      address="13800138000")  # fmt: skip
        assert adapter.lookup(msg) is None or not adapter.lookup(msg).delivered  # type: ignore[union-attr]
        first = adapter.send(msg)
        assert first.delivered and first.provider_message_id == "sms-1"
        assert adapter.send(msg).provider_message_id == "sms-1"  # the provider dedupes out_id
        assert len(provider.accepted) == 1 and provider.accepted["o-1"]["sign_name"] == "品牌"
        found = adapter.lookup(msg)
        assert found is not None and found.delivered and found.provider_message_id == "sms-1"
        forged = SmsAdapter.build(config, "wrong-secret", ctx).send(msg)
        assert not forged.delivered and forged.error_code == "http_401" and not forged.retryable
    with pytest.raises(Invalid, match="secret"):
        SmsAdapter.check_config({"url": "https://sms.example.com", "app_id": "a"}, None, ctx)


def test_webhook_is_signed_and_private_targets_are_refused(ctx: AdapterContext) -> None:
    with serve(webhook_receiver(lambda: "whsec_abc_0123456789"), "/hook") as receiver:
        config, secret = WebhookAdapter.check_config({"url": receiver.url},
                                                     "whsec_abc_0123456789", ctx)  # fmt: skip
        adapter = WebhookAdapter.build(config, secret, ctx)
        assert adapter.send(message({"text": "hi"})).delivered
        assert receiver.hits[-1].headers["Idempotency-Key"] == "k1"
        receiver.state["fail_next"] = 1
        busy = adapter.send(message({"text": "hi"}, key="k2"))
        assert not busy.delivered and busy.retryable and busy.error_code == "http_503"
        # Without the operator's permission the pinned transport refuses loopback at send
        # time too (a name that later resolves to a private address is caught the same way).
        strict = httpx.Client(transport=PinnedTransport())
        try:
            refused = WebhookAdapter.build(config, secret, AdapterContext(strict)).send(
                message({"text": "hi"}, key="k3"))  # fmt: skip
        finally:
            strict.close()
        assert refused.error_code == "forbidden_address" and not refused.retryable
        assert len(receiver.accepted) == 1
    with pytest.raises(Invalid):
        WebhookAdapter.check_config({"url": "http://10.0.0.5/hook"}, None, AdapterContext(ctx.http))


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP SAN) and its key, as PEM files."""
    import ipaddress
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                         serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def test_smtp_starttls_with_login(
    ctx: AdapterContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STARTTLS with the certificate checked (trusted here through SSL_CERT_FILE) and AUTH
    LOGIN over the encrypted connection; a wrong password is a final failure."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message
    from aiosmtpd.smtp import AuthResult

    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    received: list[Any] = []

    class Keep(Message):
        def handle_message(self, msg: Any) -> None:
            received.append(msg)

    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        ok = auth.login == b"brand" and auth.password == b"p4ss"
        return AuthResult(success=ok, handled=False)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port, tls_context=server_tls,
                            require_starttls=True, authenticator=check,
                            auth_require_tls=True)  # fmt: skip
    controller.start()
    try:
        config, secret = SmtpAdapter.check_config(
            {"host": "127.0.0.1", "port": port, "security": "starttls", "username": "brand",
             "from_address": "hello@brand.example"}, "p4ss", ctx)  # fmt: skip
        msg = message(SmtpAdapter.check_content({"subject": "订单已发货", "text": "快递单号 123"}),
                      address="bob@example.com")  # fmt: skip
        assert SmtpAdapter.build(config, secret, ctx).send(msg).delivered
        assert len(received) == 1 and received[0]["To"] == "bob@example.com"
        wrong = SmtpAdapter.build(config, "nope", ctx).send(msg)
        assert not wrong.delivered and wrong.error_code == "smtp_auth" and not wrong.retryable
    finally:
        controller.stop()
