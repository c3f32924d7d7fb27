"""Tell which app, device, OS and browser a click comes from, by its User-Agent.

The redirect hot path calls :func:`classify_cached` on every click; :func:`classify` is the pure,
uncached version (same input, same answer, no state). Matching works on the lower-cased string
with plain ``in`` checks, which CPython runs as fast C substring searches; the only regular
expression (compiled once at import) tells "bot" from the CUBOT phone brand, and runs only when
"bot" is in the string.

Rule order, and why
-------------------
Chinese in-app browsers put each other's markers in their User-Agents, so the first matching
rule wins and the order below is the contract. Markers are matched case-insensitively.

1. **bot** — an empty or blank UA, a single token without spaces (``curl/8.4.0``,
   ``Go-http-client/1.1``), "bot" anywhere (not CUBOT), a known crawler, link-preview fetcher or
   headless browser marker, or — for UAs not starting with ``Mozilla/`` — an HTTP library, tool
   or probe marker. Checked first: a client that says it is a crawler or a script is one,
   whichever app marker it copies (``Bytespider`` and ``HeadlessChrome`` imitate real phones).
2. **wecom** — ``wxwork``. WeCom's UA also carries ``MicroMessenger``, so it goes before WeChat.
3. **wechat** — ``MicroMessenger`` (mobile, ``WindowsWechat`` and ``MacWechat`` all carry it).
   Old Android WeChat also carries ``MQQBrowser``, so WeChat goes before QQ and QQ Browser.
4. **dingtalk** — ``DingTalk`` (as in ``AliApp(DingTalk/…)``). DingTalk shares Alibaba's
   ``AliApp(`` container with Alipay, so it goes before Alipay.
5. **alipay** — ``AlipayClient`` or ``AliApp(AP/``. Alipay's webview is built on UC's engine and
   carries ``UCBS``/``UWS``, so it goes before any browser rule.
6. **feishu** — ``Lark/`` or ``Feishu``.
7. **qq** — ``" QQ/"`` with the leading space, or ``V1_AND_SQ_`` / ``V1_IPH_SQ_`` /
   ``V1_IPD_SQ_``. QQ's Android webview carries ``MQQBrowser``; the stand-alone QQ Browser
   carries ``MQQBrowser`` but never ``" QQ/"``, so it falls through to *browser* (browser name
   ``qqbrowser``). The leading space is what keeps ``MQQBrowser/`` and ``QQBrowser/`` out.
8. **douyin** — ``aweme`` (``aweme/``, ``aweme_``, ``AppName/aweme``). ``BytedanceWebview`` alone
   is shared with Toutiao, Xigua and others, so it does not count.
9. **weibo** — ``__weibo__``.
10. **xiaohongshu** — ``discover/`` or ``XiaoHongShu``. Last among the apps: ``discover/`` is the
    least specific marker, so every more specific one gets its chance first.
11. **browser** — everything else.

Inside one app the OS, device and browser are read independently: OS (HarmonyOS before
Android, iOS before macOS because every iOS UA says ``like Mac OS X``), device (iPad before
"Mobile" because iPads say ``Mobile/15E148``; Android without "Mobile" is a tablet), and for
in-app clicks the browser name is the app's platform id (``wechat``, ``qq`` …). For plain
browsers the ones that wrap Chrome or Safari are checked before Chrome and Safari (Edge, Opera,
Samsung, UC, Quark, QQ Browser, vendor browsers), then Firefox, Chrome on iOS (``CriOS``),
Android ``wv`` webviews of other apps, Chrome, IE, and Safari last since nearly all carry it. Bots get browser ``other``: ``is_bot`` is what callers act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import _CacheInfo, lru_cache
from typing import Final, Literal

Platform = Literal[
    "wechat",
    "wecom",
    "qq",
    "alipay",
    "douyin",
    "weibo",
    "dingtalk",
    "feishu",
    "xiaohongshu",
    "browser",
    "bot",
]
Device = Literal["mobile", "tablet", "desktop", "bot", "unknown"]
OS = Literal["ios", "android", "windows", "macos", "linux", "harmonyos", "other"]

PLATFORMS: Final[tuple[Platform, ...]] = (
    "wechat",
    "wecom",
    "qq",
    "alipay",
    "douyin",
    "weibo",
    "dingtalk",
    "feishu",
    "xiaohongshu",
    "browser",
    "bot",
)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    platform: Platform
    device: Device
    os: OS
    browser: str
    is_bot: bool


# Bot detection is the costliest rule because the lists are long, so it is split by what a
# client claims to be. Markers are matched on the lower-cased UA with ``in``; one alternation
# regex over all of them was 10× slower (CPython's re tries every branch at every position).
#
# Crawlers and preview fetchers that imitate a browser ("Mozilla/5.0 (compatible; …)"):
# checked on every UA. "+http" is the crawler convention for pointing at the bot's info page.
_CRAWLER_MARKERS: Final[tuple[str, ...]] = (
    "spider",
    "crawl",
    "+http",
    "headless",
    "slurp",
    "facebookexternalhit",
    "facebookcatalog",
    "meta-externalagent",
    "lighthouse",
    "preview",
    "archiver",
    "phantomjs",
    "google-inspectiontool",
    "mediapartners-google",
    "adsbot-google",
    "apis-google",
    "google-read-aloud",
    "googleother",
    "feedfetcher",
    "pagespeed",
    "gtmetrix",
    "pingdom",
    "uptime",
    "embedly",
    "iframely",
    "vkshare",
    "whatsapp/",
)
# HTTP libraries, command-line tools and probes, which do not start with "Mozilla/": checked
# only on such UAs, which keeps the long list off the path of every real browser.
_TOOL_MARKERS: Final[tuple[str, ...]] = (
    "curl",
    "wget",
    "python",
    "httpx",
    "aiohttp",
    "httpie",
    "go-http-client",
    "okhttp",
    "java",
    "apache-httpclient",
    "libwww-perl",
    "lwp-",
    "node-fetch",
    "node/",
    "axios",
    "undici",
    "got (",
    "postman",
    "insomnia",
    "restsharp",
    "guzzle",
    "ruby",
    "php",
    "perl",
    "winhttp",
    "scrapy",
    "selenium",
    "puppeteer",
    "playwright",
    "webdriver",
    "kube-probe",
    "health",
    "prometheus",
    "monitor",
    "check_http",
    "zgrab",
    "masscan",
    "nmap",
    "nikto",
    "sqlmap",
    "feed",
    "rss",
    "validator",
    "statuscake",
    "site24x7",
)
# "bot" anywhere (Googlebot, bingbot, Twitterbot, AhrefsBot, …) except CUBOT, a phone brand
# ("Android 9; CUBOT X19"). The regex only runs when "bot" is in the UA at all.
_BOT_WORD_RE: Final = re.compile(r"(?<!cu)bot")

# Ordered (marker, platform) pairs for rules 2–10; see the module docstring for the order.
_APP_RULES: Final[tuple[tuple[tuple[str, ...], Platform], ...]] = (
    (("wxwork",), "wecom"),
    (("micromessenger",), "wechat"),
    (("dingtalk",), "dingtalk"),
    (("alipayclient", "aliapp(ap/"), "alipay"),
    (("lark/", "feishu"), "feishu"),
    ((" qq/", "v1_and_sq_", "v1_iph_sq_", "v1_ipd_sq_"), "qq"),
    (("aweme",), "douyin"),
    (("__weibo__",), "weibo"),
    (("discover/", "xiaohongshu"), "xiaohongshu"),
)

# Ordered (markers, name) pairs for plain browsers: wrappers before the engines they wrap.
_BROWSER_RULES: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    (("edg/", "edga/", "edgios/", "edge/"), "edge"),
    (("opr/", "opt/", "opera"), "opera"),
    (("samsungbrowser",), "samsung"),
    (("ucbrowser", "ucweb", " ubrowser/"), "uc"),
    (("quark/",), "quark"),
    (("mqqbrowser", "qqbrowser"), "qqbrowser"),
    (("baiduboxapp", "baidubrowser", "bidubrowser"), "baidu"),
    (("huaweibrowser",), "huawei"),
    (("miuibrowser",), "miui"),
    (("vivobrowser",), "vivo"),
    (("heytapbrowser", "oppobrowser"), "oppo"),
    (("metasr", "sogoumobilebrowser", "sogousearch"), "sogou"),
    (("360se", "360ee", "qihoobrowser", "qhbrowser"), "360"),
    (("yabrowser",), "yandex"),
    (("firefox/", "fxios/"), "firefox"),
    (("crios/",), "chrome"),
    (("; wv)",), "webview"),
    (("chrome/", "chromium/"), "chrome"),
    (("msie ", "trident/"), "ie"),
    (("safari/",), "safari"),
)


def _detect_os(ua: str) -> OS:
    if "harmonyos" in ua or "openharmony" in ua:
        return "harmonyos"
    if "iphone" in ua or "ipad" in ua or "ipod" in ua:
        return "ios"
    if "android" in ua:
        return "android"
    if "windows" in ua:
        return "windows"
    if "macintosh" in ua or "mac os x" in ua:
        return "macos"
    if "linux" in ua or "x11" in ua:
        return "linux"
    return "other"


def _detect_device(ua: str, os: OS) -> Device:
    if "ipad" in ua or "tablet" in ua or "kindle" in ua or "silk/" in ua:
        return "tablet"
    if os == "android":
        # Android tablets drop the "Mobile" token; every Android phone browser sends it.
        return "mobile" if "mobile" in ua else "tablet"
    if os in ("ios", "harmonyos") or "mobile" in ua or "phone" in ua:
        return "mobile"
    if os in ("windows", "macos", "linux"):
        return "desktop"
    return "unknown"


def _detect_browser(ua: str) -> str:
    for markers, name in _BROWSER_RULES:
        for marker in markers:
            if marker in ua:
                return name
    if "mobile/" in ua and ("iphone" in ua or "ipad" in ua):
        # An iOS app's WKWebView: Safari's engine without the Safari token.
        return "webview"
    return "other"


def _is_bot(ua: str) -> bool:
    if not ua:
        return True
    # Every real browser sends "Mozilla/5.0 (…) …"; a lone token is a script or a tool.
    if " " not in ua:
        return True
    if "bot" in ua and _BOT_WORD_RE.search(ua) is not None:
        return True
    for marker in _CRAWLER_MARKERS:
        if marker in ua:
            return True
    if not ua.startswith("mozilla/"):
        for marker in _TOOL_MARKERS:
            if marker in ua:
                return True
    return False


def classify(user_agent: str) -> ClientInfo:
    """Classify one User-Agent string. Pure: no cache, no state; see :func:`classify_cached`."""
    ua = user_agent.strip().lower()
    os = _detect_os(ua)
    if _is_bot(ua):
        return ClientInfo(platform="bot", device="bot", os=os, browser="other", is_bot=True)
    device = _detect_device(ua, os)
    for markers, platform in _APP_RULES:
        for marker in markers:
            if marker in ua:
                return ClientInfo(
                    platform=platform, device=device, os=os, browser=platform, is_bot=False
                )
    return ClientInfo(
        platform="browser", device=device, os=os, browser=_detect_browser(ua), is_bot=False
    )


# Real User-Agents stay well under this; longer ones are classified but not cached, so a client
# sending huge random headers cannot make the cache hold megabytes.
MAX_CACHED_UA_LENGTH: Final = 1024

_classify_lru = lru_cache(maxsize=4096)(classify)


def classify_cached(user_agent: str) -> ClientInfo:
    """:func:`classify` behind a 4096-entry LRU cache: the call the redirect makes per click."""
    if len(user_agent) > MAX_CACHED_UA_LENGTH:
        return classify(user_agent)
    return _classify_lru(user_agent)


def classify_cache_info() -> _CacheInfo:
    """The LRU cache's hits, misses and size, for benches and metrics."""
    return _classify_lru.cache_info()


def classify_cache_clear() -> None:
    _classify_lru.cache_clear()


# In-app browsers that refuse app downloads (APK links, App Store hand-offs) and many external
# schemes, so a participant must be told "点击右上角 ··· 选择在浏览器打开".
_GUIDE_PLATFORMS: Final[frozenset[str]] = frozenset({"wechat", "wecom", "qq"})


def needs_open_in_browser_guide(platform: str) -> bool:
    """Whether a download/hand-off link should show the "open in browser" guide page.

    True for ``wechat`` and ``qq``, which block app downloads and most app hand-offs inside
    their webviews, and for ``wecom``, which runs the same webview as WeChat with the same
    restrictions. False for the other apps: Alipay, DingTalk, Feishu, Douyin, Weibo and
    Xiaohongshu either allow downloads or have no reliable "open in browser" menu item, so the
    WeChat-style guide would send the participant looking for a button that is not there.
    False for plain browsers, bots and unknown strings. The decision is per platform only;
    the caller decides for which destinations (downloads, deep links) it applies.
    """
    return platform in _GUIDE_PLATFORMS
