"""The HTTP request turned into a value early, so services never see a Request."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Visitor:
    ip: str
    user_agent: str
    platform: str
    device: str
    os: str
    browser: str
    is_bot: bool
    visitor_id: str
    referrer: str = ""
