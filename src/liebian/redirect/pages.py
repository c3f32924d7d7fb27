"""The few HTML pages the redirect path answers with instead of a 302.

Chinese first (the visitors are mostly in WeChat/QQ on a phone), English second, a viewport
meta tag for phones, no scripts, no external assets, UTF-8. Every value that comes from a link
or a request goes through :func:`html.escape`. Pages that never vary are rendered once at import.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from html import escape
from typing import Final

PLATFORM_NAMES: Final[dict[str, str]] = {
    "wechat": "微信",
    "wecom": "企业微信",
    "qq": "QQ",
    "alipay": "支付宝",
    "douyin": "抖音",
    "weibo": "微博",
    "dingtalk": "钉钉",
    "feishu": "飞书",
    "xiaohongshu": "小红书",
    "browser": "手机或电脑浏览器",
    "bot": "自动程序",
}

_STYLE: Final = (
    "body{margin:0;font-family:-apple-system,BlinkMacSystemFont,'PingFang SC','Microsoft YaHei',"
    "sans-serif;background:#f5f6f7;color:#222}"
    "main{max-width:420px;margin:12vh auto 0;padding:28px 22px;background:#fff;border-radius:12px;"
    "box-shadow:0 1px 4px rgba(0,0,0,.08);text-align:center}"
    "h1{font-size:20px;margin:0 0 12px}p{font-size:15px;line-height:1.6;margin:8px 0;color:#555}"
    "small{color:#999}input{font-size:16px;width:100%;box-sizing:border-box;padding:10px;"
    "border:1px solid #ccc;border-radius:8px;margin:12px 0}"
    "button{font-size:16px;width:100%;padding:10px;border:0;border-radius:8px;background:#07c160;"
    "color:#fff}.err{color:#d93025}.arrow{position:fixed;top:6px;right:14px;font-size:40px;"
    "color:#07c160}"
)


# The pages run no script and load nothing; their one inline style is allowed by its hash.
CSP: Final[bytes] = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    + "'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
).encode()


def _page(title: str, body: str) -> bytes:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    ).encode()


NOT_FOUND: Final[bytes] = _page(
    "链接不存在",
    "<h1>链接不存在</h1><p>这个短链接不存在或已被删除，请向分享者确认链接是否正确。</p>"
    "<p><small>This short link does not exist.</small></p>",
)

GONE: Final[bytes] = _page(
    "链接已失效",
    "<h1>链接已失效</h1><p>这个链接已过期或访问次数已达上限。</p>"
    "<p><small>This link has expired.</small></p>",
)


TOO_MANY: Final[bytes] = _page(
    "访问太频繁",
    "<h1>访问太频繁</h1><p>您的访问过于频繁，请稍等片刻后再试。</p>"
    "<p><small>Too many requests; please wait a moment and try again.</small></p>",
)

UNAVAILABLE: Final[bytes] = _page(
    "服务暂时不可用",
    "<h1>服务暂时不可用</h1><p>服务器正忙，请稍后刷新重试。</p>"
    "<p><small>The service is briefly unavailable; please try again shortly.</small></p>",
)


def locked_page(minutes: int) -> bytes:
    """Too many wrong passwords from this network for this link."""
    return _page(
        "尝试次数过多",
        "<h1>🔒 密码错误次数过多</h1>"
        f"<p>为保护链接安全，请 {minutes} 分钟后再试。</p>"
        "<p><small>Too many wrong passwords; please try again later.</small></p>",
    )


def password_page(action: str, *, wrong: bool = False) -> bytes:
    """The unlock form; ``action`` is the path (and query) the form posts back to."""
    error = (
        '<p class="err">密码不正确，请重试。<br><small>Wrong password.</small></p>' if wrong else ""
    )
    return _page(
        "请输入访问密码",
        "<h1>🔒 请输入访问密码</h1><p>这个链接受密码保护。</p>"
        f"{error}"
        f'<form method="post" action="{escape(action)}">'
        '<input type="password" name="password" autocomplete="current-password" '
        'placeholder="访问密码 / password" required autofocus>'
        "<button type=submit>打开链接</button></form>",
    )


def platform_page(current: str, allowed: Iterable[str]) -> bytes:
    """Shown when ``allowed_platforms`` excludes the visitor's app."""
    names = "、".join(escape(PLATFORM_NAMES.get(p, p)) for p in allowed)
    here = escape(PLATFORM_NAMES.get(current, current))
    return _page(
        "请在指定应用中打开",
        f"<h1>请在{names}中打开</h1>"
        f"<p>这个链接不支持在{here}中访问，请复制链接后在{names}中打开。</p>"
        "<p><small>This link can only be opened in the apps listed above.</small></p>",
    )


def guide_page(platform: str) -> bytes:
    """The "open in your browser" guide for WeChat/QQ webviews (no automatic evasion)."""
    here = escape(PLATFORM_NAMES.get(platform, platform))
    return _page(
        "请在浏览器中打开",
        '<div class="arrow">↗</div>'
        "<h1>请在浏览器中打开</h1>"
        f"<p>{here}内无法直接打开这个链接。</p>"
        "<p>点击右上角 <b>···</b> 选择<b>在浏览器打开</b>。</p>"
        "<p><small>Tap ··· at the top right and choose “Open in Browser”.</small></p>",
    )


def error_page(status: int, request_id: str) -> bytes:
    """Shown when the server failed to answer (kit.faults.guard): 503 "busy, try again" for a
    transient fault, 500 otherwise; the request id lets support find the log line."""
    if status == 503:
        title, text, english = (
            "服务繁忙",
            "服务暂时繁忙，请稍后刷新重试。",
            "The service is busy. Please try again in a moment.",
        )
    else:
        title, text, english = (
            "出错了",
            "服务器出了点问题，我们已记录，请稍后再试。",
            "Something went wrong on our side. Please try again later.",
        )
    return _page(
        title,
        f"<h1>{title}</h1><p>{text}</p>"
        f"<p><small>{english}<br>错误编号 / request id: {escape(request_id)}</small></p>",
    )
