"""Click capture: one NDJSON line per redirect, appended to the spool before the 302 goes out.

The line is built by hand from pre-serialized pieces — the link's constant columns are JSON
once per cache load (``Entry.row_fragment``), the client columns once per distinct User-Agent,
the timestamp text once per second — so the per-click work is a few string joins, one HMAC
for the IP and one ``os.write``. Values that come from the request (referrer) go through
``json.dumps``; ids we generate or validate ourselves (click id, visitor id) are safe as-is.

Once :meth:`ClickRecorder.record` returns, the line is in the kernel's page cache, so a
SIGKILL right after the 302 loses nothing (see ``events/spool.py``); the runtime's flusher
loads sealed segments into the event store every ``flush_interval`` seconds.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote

import orjson

from liebian.events.spool import Spool
from liebian.kit.crypto import hash_ip, read_person_link_token
from liebian.kit.visitor import VISITOR_COOKIE, VISITOR_MAX_AGE, Visitor
from liebian.links.platforms import ClientInfo, classify_cached
from liebian.redirect.cache import Entry

__all__ = ["VISITOR_COOKIE", "VISITOR_MAX_AGE"]  # defined in kit.visitor, imported from here too

CLICK_PARAM: Final = "lb_cid"
PERSON_PARAM: Final = "lb_u"
PERSON_PARAM_EQ: Final = b"lb_u="
# Ids we hand out are 16 urlsafe characters; accept a little more from older cookies but
# nothing that would need escaping inside JSON or a header.
_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{8,64}")
MAX_REFERRER: Final = 1024
_UA_CACHE_SIZE: Final = 4096
_IP_CACHE_SIZE: Final = 16384
_MILLIS: Final = tuple(f".{ms:03d}" for ms in range(1000))


class _RandomIds:
    """Ids cut from a buffer of OS randomness, encoded a few hundred at a time.

    One ``os.urandom`` call per id was ~15% of a redirect's CPU in a profile, and encoding
    each id on its own another few percent. 12 bytes are exactly 16 base64 characters, so the
    encoding of a 4 KiB buffer is the concatenation of its ids' encodings: one syscall and one
    encode per 341 ids. ``list.pop`` is atomic, so threads never share an id; a racing refill
    only adds fresh ids.
    """

    _ID_BYTES = 12
    _ID_CHARS = 16
    _REFILL = 4096 - 4096 % 12

    def __init__(self) -> None:
        self._ids: list[str] = []

    def refill(self) -> None:
        text = base64.urlsafe_b64encode(os.urandom(self._REFILL)).decode()
        step = self._ID_CHARS
        self._ids = [text[i : i + step] for i in range(0, len(text), step)]

    def __call__(self) -> str:
        try:
            return self._ids.pop()
        except IndexError:
            self.refill()
            return self._ids.pop()


new_id = _RandomIds()
# A forked worker must never hand out the bytes its parent already buffered.
os.register_at_fork(after_in_child=lambda: setattr(new_id, "_ids", []))
new_id.__doc__ = "16 urlsafe characters (96 random bits): click ids and visitor ids."


def valid_id(value: str) -> bool:
    return _ID_RE.fullmatch(value) is not None


def _client_fragment(info: ClientInfo, *, force_bot: bool) -> str:
    bot = info.is_bot or force_bot
    platform = "bot" if bot else info.platform
    return (
        f'"platform":"{platform}","device":"{info.device}","os":"{info.os}",'
        f'"browser":{json.dumps(info.browser)},"is_bot":{"true" if bot else "false"}'
    )


def person_from_query(query: bytes, key: bytes) -> str | None:
    """The person a tracked link in a message was sent to (``?lb_u=<token>``, added by a
    journey's template, automation/content.py), when the token is intact; else None (the
    click is kept, without a person)."""
    for pair in query.split(b"&"):
        if pair.startswith(PERSON_PARAM_EQ):
            token = pair[len(PERSON_PARAM_EQ) :].decode("latin-1")
            return read_person_link_token(unquote(token), key)
    return None


class ClickRecorder:
    def __init__(self, spool: Spool, secret: bytes) -> None:
        self.spool = spool
        self.secret = secret
        self.recorded = 0  # clicks written; the flusher reads bursts from it (ClickBurst)
        self._clients: dict[str, tuple[ClientInfo, str]] = {}
        self._second = -1
        self._second_text = ""
        self._ips: dict[str, str] = {}

    def client(self, user_agent: str) -> tuple[ClientInfo, str]:
        """The parsed UA and its JSON columns, cached per distinct User-Agent."""
        hit = self._clients.get(user_agent)
        if hit is not None:
            return hit
        info = classify_cached(user_agent)
        pair = (info, _client_fragment(info, force_bot=False))
        if len(user_agent) <= 1024:
            if len(self._clients) >= _UA_CACHE_SIZE:
                self._clients.clear()  # bounded; rebuilding costs one classify per UA
            self._clients[user_agent] = pair
        return pair

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
            self._second = second
        return self._second_text + _MILLIS[int((now - second) * 1000)]

    def _ip_hash(self, ip: str) -> str:
        # Visitors come back from the same address (and NAT puts many behind one): a bounded
        # cache keeps the keyed hash off most clicks.
        hashed = self._ips.get(ip)
        if hashed is None:
            if len(self._ips) >= _IP_CACHE_SIZE:
                self._ips.clear()
            hashed = self._ips[ip] = hash_ip(ip, self.secret)
        return hashed

    def line(
        self,
        entry: Entry,
        *,
        now: float,
        click_id: str,
        visitor_id: str,
        info: ClientInfo,
        client_fragment: str,
        head: bool,
        referrer: str,
        ip: str,
        is_qr: bool,
        user_id: str | None = None,
    ) -> bytes:
        if head and not info.is_bot:
            # HEAD is a link checker or preview, never a person: recorded, flagged as a bot.
            client_fragment = _client_fragment(info, force_bot=True)
        ts = self._timestamp(now)
        ref = json.dumps(referrer[:MAX_REFERRER], ensure_ascii=False) if referrer else "null"
        ip_hash = self._ip_hash(ip) if ip else ""
        user = json.dumps(user_id, ensure_ascii=False) if user_id else "null"
        return (
            f'{{"event_id":"{click_id}","click_id":"{click_id}","ts":"{ts}",'
            f'"received_at":"{ts}","visitor_id":"{visitor_id}","user_id":{user},'
            f'{client_fragment},"referrer":{ref},"ip_hash":"{ip_hash}",'
            f'"is_qr":{"true" if is_qr else "false"},"revenue":null,"currency":null,'
            f'"properties":null,{entry.row_fragment}}}\n'
        ).encode()

    def record(self, line: bytes) -> None:
        self.spool.append_line(line)
        self.recorded += 1


def scan_recorder(spool: Spool, secret: bytes) -> Callable[..., None]:
    """What live codes call for each answered human scan: a click row whose ``link_id`` is the
    live code's id (so link stats work for live codes too), written before the answer."""

    def record(
        *,
        workspace_id: str,
        link_id: str,
        channel: str | None,
        visitor: Visitor,
        is_qr: bool,
        properties: dict[str, Any],
    ) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        click_id = new_id()
        row = {
            "workspace_id": workspace_id,
            "event_id": click_id,
            "event": "click",
            "ts": now,
            "received_at": now,
            "visitor_id": visitor.visitor_id,
            "click_id": click_id,
            "link_id": link_id,
            "channel": channel,
            "platform": "bot" if visitor.is_bot else visitor.platform,
            "device": visitor.device,
            "os": visitor.os,
            "browser": visitor.browser,
            "is_bot": visitor.is_bot,
            "is_qr": is_qr,
            "referrer": visitor.referrer[:MAX_REFERRER] or None,
            "ip_hash": hash_ip(visitor.ip, secret) if visitor.ip else None,
            "properties": orjson.dumps(properties).decode() if properties else None,
        }
        spool.append_line(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))

    return record
