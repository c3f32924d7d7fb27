from __future__ import annotations

from pathlib import Path
from typing import Any

UA_FILE = Path(__file__).resolve().parents[1] / "links" / "data" / "ua-samples.tsv"

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)
DESKTOP_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
WECHAT_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2c) NetType/WIFI Language/zh_CN"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def ua_samples() -> list[tuple[str, str]]:
    rows = []
    for line in UA_FILE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        platform, ua = line.split("\t", 1)
        rows.append((platform, ua))
    return rows


def other_workspace_key(runtime: Any, role: str = "viewer") -> dict[str, str]:
    """Headers of a key in a new workspace (tests/conftest.py's make_key, which a conftest
    in this directory would shadow on import)."""
    from liebian.kit.auth import Role
    from liebian.kit.db import session_scope
    from liebian.workspaces.service import create_api_key, create_workspace

    with session_scope(runtime.sessions) as session:
        ws_id = create_workspace(session, "another").id
        _key, plaintext = create_api_key(session, ws_id, Role(role))
    return {"Authorization": f"Bearer {plaintext}"}
