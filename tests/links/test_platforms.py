"""User-Agent classification: the shared ground-truth samples plus hand-picked tricky strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from liebian.links.platforms import (
    MAX_CACHED_UA_LENGTH,
    PLATFORMS,
    classify,
    classify_cache_clear,
    classify_cache_info,
    classify_cached,
    needs_open_in_browser_guide,
)

DATA = Path(__file__).parent / "data" / "ua-samples.tsv"
# The CI clones the repository with the shared folder beside it; the in-repo copy must match it.
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "ua-samples.tsv"


def _load_samples(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        platform, user_agent = line.split("\t", 1)
        rows.append((platform, user_agent))
    return rows


SAMPLES = _load_samples(DATA)


def test_samples_file_is_not_empty_and_uses_known_platforms() -> None:
    assert len(SAMPLES) >= 20
    assert {platform for platform, _ in SAMPLES} <= set(PLATFORMS)


@pytest.mark.skipif(not SHARED.exists(), reason="shared/ua-samples.tsv not beside the repo")
def test_in_repo_copy_matches_shared_samples() -> None:
    assert _load_samples(SHARED) == SAMPLES


@pytest.mark.parametrize(
    ("expected", "user_agent"), SAMPLES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(SAMPLES)]
)
def test_ground_truth_sample(expected: str, user_agent: str) -> None:
    info = classify(user_agent)
    assert info.platform == expected
    assert info.is_bot == (expected == "bot")
    assert (info.device == "bot") == info.is_bot


IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
ANDROID_WV = "Mozilla/5.0 (Linux; Android 13; PJD110 Build/TP1A.220905.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/115.0.5790.166 Mobile Safari/537.36"

# (user agent, platform, device, os, browser)
TRICKY: list[tuple[str, str, str, str, str]] = [
    # WeCom carries MicroMessenger: wxwork must win.
    (
        IPHONE + " wxwork/4.1.22 MicroMessenger/7.0.1 Language/zh ColorScheme/Dark",
        "wecom",
        "mobile",
        "ios",
        "wecom",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/86.0.4240.198 Safari/537.36 wxwork/4.1.16 (MicroMessenger/6.2) WindowsWechat "
        "MailPlugin_Electron WeMail embeddisk",
        "wecom",
        "desktop",
        "windows",
        "wecom",
    ),
    # Plain WeChat, iPad and macOS, and a mini-program webview.
    (
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 MicroMessenger/8.0.42(0x18002a2f) NetType/WIFI Language/zh_CN",
        "wechat",
        "tablet",
        "ios",
        "wechat",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "MicroMessenger/6.8.0(0x16080000) MacWechat/3.8.7(0x13080710) Safari/605.1.15 "
        "NetType/WIFI",
        "wechat",
        "desktop",
        "macos",
        "wechat",
    ),
    (
        ANDROID_WV + " XWEB/1160065 MMWEBSDK/20231202 MMWEBID/1234 MicroMessenger/8.0.47.2560"
        "(0x28002F30) WeChat/arm64 Weixin NetType/4G Language/zh_CN ABI/arm64 miniProgram/wx1234",
        "wechat",
        "mobile",
        "android",
        "wechat",
    ),
    # Old Android WeChat on the X5 engine carries MQQBrowser: still WeChat, not QQ Browser.
    (
        "Mozilla/5.0 (Linux; Android 9; MI 8 Build/PKQ1.180729.001; wv) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/66.0.3359.126 MQQBrowser/6.2 TBS/045120 Mobile "
        "Safari/537.36 MMWEBID/6421 MicroMessenger/7.0.12.1620(0x27000C34) Process/tools "
        "NetType/WIFI Language/zh_CN ABI/arm64",
        "wechat",
        "mobile",
        "android",
        "wechat",
    ),
    # QQ Browser alone: MQQBrowser without " QQ/" is a plain browser.
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/16.5 MQQBrowser/14.1.5 Mobile/15E148 Safari/604.1 "
        "QBWebViewUA/2 QBWebViewType/1 WKType/1",
        "browser",
        "mobile",
        "ios",
        "qqbrowser",
    ),
    # Mobile QQ on an iPad.
    (
        "Mozilla/5.0 (iPad; CPU OS 16_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 QQ/8.9.68.635 V1_IPD_SQ_8.9.68_1_APP_A Pixel/1620 Core/WKWebView",
        "qq",
        "tablet",
        "ios",
        "qq",
    ),
    # DingTalk shares AliApp( with Alipay.
    (
        ANDROID_WV + " AliApp(DingTalk/7.0.50) com.alibaba.android.rimet/33786357 "
        "Channel/227200 language/zh-CN abi/64 UT4Aplus/0.2.25 colorScheme/light",
        "dingtalk",
        "mobile",
        "android",
        "dingtalk",
    ),
    (
        IPHONE + " ChannelId(0) Ariver/1.1.0 AliApp(AP/10.5.36.6000) Nebula WK RVKType(0) "
        "AlipayDefined(nt:4G,ws:390|780|3.0) AlipayClient/10.5.36.6000 Language/zh-Hans "
        "Region/CN NebulaX/1.0.0",
        "alipay",
        "mobile",
        "ios",
        "alipay",
    ),
    (
        ANDROID_WV + " Lark/7.6.9 LarkLocale/zh_CN ChannelName/Feishu TTWebView/1151040026131",
        "feishu",
        "mobile",
        "android",
        "feishu",
    ),
    (
        ANDROID_WV + " Weibo (OPPO-PJD110__weibo__13.9.1__android__android13)",
        "weibo",
        "mobile",
        "android",
        "weibo",
    ),
    (
        ANDROID_WV + " XiaoHongShu/8.12.0 discover/8.12.0 NetType/WiFi",
        "xiaohongshu",
        "mobile",
        "android",
        "xiaohongshu",
    ),
    (
        IPHONE + " aweme_lite_28.1.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/zh",
        "douyin",
        "mobile",
        "ios",
        "douyin",
    ),
    # Plain browsers that wrap Chrome or Safari.
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
        "browser",
        "desktop",
        "windows",
        "edge",
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "browser",
        "mobile",
        "android",
        "samsung",
    ),
    (
        "Mozilla/5.0 (Linux; U; Android 12; zh-CN; PFFM10 Build/SP1A.210812.016) AppleWebKit/537.36"
        " (KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.58 Quark/6.7.5.380 Mobile Safari/537.36",
        "browser",
        "mobile",
        "android",
        "quark",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Safari/605.1.15",
        "browser",
        "desktop",
        "macos",
        "safari",
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        "browser",
        "desktop",
        "linux",
        "firefox",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) CriOS/119.0.6045.169 Mobile/15E148 Safari/604.1",
        "browser",
        "mobile",
        "ios",
        "chrome",
    ),
    # An Android tablet omits "Mobile".
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/119.0.0.0 Safari/537.36",
        "browser",
        "tablet",
        "android",
        "chrome",
    ),
    # HarmonyOS: the older Android-compatible UA and the HarmonyOS NEXT (OpenHarmony) one.
    (
        "Mozilla/5.0 (Linux; Android 10; HarmonyOS; NOH-AN00; HMSCore 6.13.0.302) AppleWebKit/"
        "537.36 (KHTML, like Gecko) Chrome/99.0.4844.88 HuaweiBrowser/14.0.5.300 Mobile "
        "Safari/537.36",
        "browser",
        "mobile",
        "harmonyos",
        "huawei",
    ),
    (
        "Mozilla/5.0 (Phone; OpenHarmony 4.1) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/114.0.0.0 Safari/537.36 ArkWeb/4.1.6.1 Mobile HuaweiBrowser/5.0.4.300",
        "browser",
        "mobile",
        "harmonyos",
        "huawei",
    ),
    # A CUBOT phone is not a bot.
    (
        "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/119.0.6045.163 Mobile Safari/537.36",
        "browser",
        "mobile",
        "android",
        "chrome",
    ),
    # An Android app's own webview and an iOS app's WKWebView.
    (ANDROID_WV, "browser", "mobile", "android", "webview"),
    (IPHONE, "browser", "mobile", "ios", "webview"),
]


@pytest.mark.parametrize(
    ("user_agent", "platform", "device", "os", "browser"),
    TRICKY,
    ids=[f"{row[1]}-{row[4]}-{i}" for i, row in enumerate(TRICKY)],
)
def test_tricky_client(user_agent: str, platform: str, device: str, os: str, browser: str) -> None:
    info = classify(user_agent)
    assert (info.platform, info.device, info.os, info.browser, info.is_bot) == (
        platform,
        device,
        os,
        browser,
        False,
    )


BOTS = [
    "",
    "   ",
    "curl/8.4.0",
    "Wget/1.21.4",
    "python-requests/2.31.0",
    "python-httpx/0.27.0",
    "Python-urllib/3.11",
    "Go-http-client/1.1",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
    "Java/17.0.2",
    "axios/1.6.2",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "PostmanRuntime/7.36.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/119.0.6045.199 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
    "+http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; Baiduspider-render/2.0; +http://www.baidu.com/search/spider.html)",
    "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
    "Mozilla/5.0 (compatible; YisouSpider/1.0; http://www.yisou.com)",
    "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36"
    " (compatible; Bytespider; spider-feedback@bytedance.com)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "TelegramBot (like TwitterBot)",
    "WhatsApp/2.23.20.0 A",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.6099.28 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36 Chrome-Lighthouse",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "ia_archiver (+http://www.alexa.com/site/help/webmasters; crawler@alexa.com)",
    "kube-probe/1.28",
    "Apache-HttpClient/4.5.14 (Java/17.0.8)",
    "Scrapy/2.11.0 (+https://scrapy.org)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:109.0) Gecko/20100101 Firefox/115.0 "
    "(compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
]


@pytest.mark.parametrize("user_agent", BOTS)
def test_bot(user_agent: str) -> None:
    info = classify(user_agent)
    assert info.platform == "bot"
    assert info.device == "bot"
    assert info.is_bot is True


def test_googlebot_smartphone_keeps_its_os() -> None:
    assert classify(BOTS[15]).os == "android"


def test_classify_is_case_insensitive() -> None:
    ua = IPHONE + " MicroMessenger/8.0.44(0x18002c2c)"
    assert classify(ua.upper()).platform == "wechat"
    assert classify(ua.lower()) == classify(ua)


def test_classify_cached_matches_and_caches() -> None:
    classify_cache_clear()
    for _, user_agent in SAMPLES:
        assert classify_cached(user_agent) == classify(user_agent)
    for _, user_agent in SAMPLES:
        assert classify_cached(user_agent) is classify_cached(user_agent)
    info = classify_cache_info()
    assert info.misses == len({ua for _, ua in SAMPLES})
    assert info.hits >= len(SAMPLES)


def test_overlong_user_agent_is_classified_but_not_cached() -> None:
    classify_cache_clear()
    ua = IPHONE + " MicroMessenger/8.0.44 " + "x" * (MAX_CACHED_UA_LENGTH + 1)
    assert classify_cached(ua).platform == "wechat"
    assert classify_cache_info().currsize == 0


def test_every_platform_has_a_sample() -> None:
    assert {platform for platform, _ in SAMPLES} == set(PLATFORMS)


@pytest.mark.parametrize(
    ("platform", "expected"),
    [(p, p in {"wechat", "wecom", "qq"}) for p in PLATFORMS] + [("nonsense", False), ("", False)],
)
def test_needs_open_in_browser_guide(platform: str, expected: bool) -> None:
    assert needs_open_in_browser_guide(platform) is expected
