"""The WeCom protocol pieces on their own (no app, no database): the API client against the
loopback fake (token fetch, cache, expiry, 40014/42001 refetch-and-retry, errcodes), and the
callback crypto against the sender (signature, decryption, replayed timestamps)."""

from __future__ import annotations

import httpx
import pytest
from wecom_fake import (
    AES_KEY,
    CORP_ID,
    SECRET,
    TOKEN,
    chat_event,
    contact_event,
    fake_wecom,
    seal,
    url_check,
)

from liebian.connectors.wecom import callbacks
from liebian.connectors.wecom.callbacks import CallbackRefused, Secrets
from liebian.connectors.wecom.client import TokenCache, WecomApiError, WecomClient
from liebian.kit.errors import Invalid, Unavailable

NOW = 1_764_720_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _client(url: str, tokens: TokenCache, http: httpx.Client, secret: str = SECRET) -> WecomClient:
    return WecomClient(base_url=url, corp_id=CORP_ID, secret=secret, cache_key="wcc_1:1",
                       tokens=tokens, http=http)  # fmt: skip


def test_client_token_cache_expiry_and_retry() -> None:
    clock = Clock()
    tokens = TokenCache(clock)
    with fake_wecom() as fake, httpx.Client() as http:
        client = _client(fake.url, tokens, http)
        first = client.add_contact_way(state="chn_a", users=["zhangsan"])
        assert first["config_id"] and first["qr_code"]
        client.get_corp_tag_list()
        # One token for both calls: it is cached.
        assert fake.paths().count("/cgi-bin/gettoken") == 1
        assert tokens.fetches == 1
        # A second client of the same connection shares the process's cache.
        _client(fake.url, tokens, http).get_corp_tag_list()
        assert tokens.fetches == 1

        # WeCom expired the token before we expected (42001): refetch once and retry.
        fake.expire_tokens()
        client.get_corp_tag_list()
        assert tokens.fetches == 2
        assert fake.paths()[-3:] == [
            "/cgi-bin/externalcontact/get_corp_tag_list", "/cgi-bin/gettoken",
            "/cgi-bin/externalcontact/get_corp_tag_list",
        ]  # fmt: skip

        # An unknown token (40014: revoked, secret changed at WeCom) is handled the same way.
        fake.valid.clear()
        client.get_corp_tag_list()
        assert tokens.fetches == 3

        # Our own clock: the token is refetched shortly before expires_in, without an error.
        clock.now += 7200 - 301
        client.get_corp_tag_list()
        assert tokens.fetches == 3
        clock.now += 2
        client.get_corp_tag_list()
        assert tokens.fetches == 4

        # Other errcodes surface with WeCom's code and are not retried.
        before = len(fake.calls)
        with pytest.raises(WecomApiError) as err:
            client.call("POST", "externalcontact/unknown_api", {})
        assert err.value.errcode == 60011 and err.value.status == 502
        assert len(fake.calls) == before + 1

        # A wrong secret: gettoken's 40001, clearly reported.
        with pytest.raises(WecomApiError) as err:
            _client(fake.url, TokenCache(clock), http, secret="wrong").get_corp_tag_list()
        assert err.value.errcode == 40001 and err.value.path == "gettoken"
        url = fake.url
    # Nobody listening: a 503 that says to retry, not a 500.
    with httpx.Client() as http, pytest.raises(Unavailable):
        _client(url, TokenCache(clock), http).get_corp_tag_list()


SECRETS = Secrets(corp_id=CORP_ID, secret=SECRET, token=TOKEN, aes_key=AES_KEY)


def test_callback_crypto_signature_and_replay() -> None:
    # URL verification: the decrypted echostr goes back.
    params = url_check("echo-123", timestamp=NOW)
    assert callbacks.verify_url(SECRETS, **params, now=NOW, max_age=300) == "echo-123"
    bad = {**params, "msg_signature": "0" * 40}
    with pytest.raises(CallbackRefused) as refused:
        callbacks.verify_url(SECRETS, **bad, now=NOW, max_age=300)
    assert refused.value.code == "invalid_signature" and refused.value.status == 403

    xml = contact_event("add_external_contact", external="wmA", state="chn_1", welcome_code="W1")
    env = seal(xml, timestamp=NOW)
    opened = callbacks.open_message(SECRETS, body=env.body, **env.params, now=NOW + 10, max_age=300)
    assert opened == xml
    message = callbacks.parse(opened)
    assert message["State"] == "chn_1" and message["WelcomeCode"] == "W1"

    # Tampered signature, wrong token, another corp's key: refused.
    with pytest.raises(CallbackRefused):
        callbacks.open_message(SECRETS, body=env.body, **{**env.params, "msg_signature": "1" * 40},
                               now=NOW, max_age=300)  # fmt: skip
    other = seal(xml, timestamp=NOW, token="OtherToken")
    with pytest.raises(CallbackRefused):
        callbacks.open_message(SECRETS, body=other.body, **other.params, now=NOW, max_age=300)
    foreign = seal(xml, timestamp=NOW, corp_id="wwotherCorp")
    with pytest.raises(CallbackRefused):
        callbacks.open_message(SECRETS, body=foreign.body, **foreign.params, now=NOW, max_age=300)
    # A replay of an old (validly signed) message: refused by its timestamp.
    with pytest.raises(CallbackRefused) as refused:
        callbacks.open_message(SECRETS, body=env.body, **env.params, now=NOW + 301, max_age=300)
    assert refused.value.code == "stale_callback"
    # Not WeCom's envelope at all: a 422 that says what is expected.
    with pytest.raises(Invalid):
        callbacks.open_message(SECRETS, body=b"<xml></xml>", **env.params, now=NOW, max_age=300)

    # Group change lists: one member, several members.
    one = callbacks.parse(chat_event("update", chat_id="wrC", detail="add_member", members=["wmA"]))
    assert callbacks._items(one["MemChangeList"]) == ["wmA"]
    two = callbacks.parse(chat_event("update", chat_id="wrC", detail="del_member",
                                     members=["wmA", "wmB"]))  # fmt: skip
    assert callbacks._items(two["MemChangeList"]) == ["wmA", "wmB"]
