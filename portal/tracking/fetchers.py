"""Known machine fetchers (image proxies, link scanners, bots) recognised by User-Agent; pure, no Flask."""
import re

UNKNOWN_MACHINE = "不明な自動取得"

# First match wins, so specific products come before the generic "bot" words. Labels are shown inside
# 「自動取得（…）」, so command-line tools keep their own names.
# Outlook desktop ("Microsoft Office/16.0 (... Microsoft Outlook ...)", "ms-office") is deliberately absent:
# that User-Agent is a person reading or clicking in Outlook, not a scanner.
MACHINE_FETCHERS: list[tuple[str, str]] = [
    (r"GoogleImageProxy", "Gmail画像プロキシ"),
    (r"YahooMailProxy", "Yahoo!メール画像プロキシ"),
    # Apple Mail Privacy Protection preloads every image with this bare User-Agent and nothing more.
    (r"^Mozilla/5\.0$", "Appleメールプライバシー保護"),
    (r"BingPreview", "Microsoftリンクプレビュー"),
    (r"SafeLinks", "Microsoftセーフリンク"),
    (r"Barracuda", "Barracudaメールセキュリティ"),
    (r"Proofpoint", "Proofpointメールセキュリティ"),
    (r"Mimecast", "Mimecastメールセキュリティ"),
    (r"Cisco|IronPort", "Ciscoメールセキュリティ"),
    (r"Symantec|MessageLabs", "Symantecメールセキュリティ"),
    (r"Trend ?Micro", "トレンドマイクロのメールセキュリティ"),
    (r"FireEye", "FireEyeメールセキュリティ"),
    (r"Slackbot", "Slackのリンクプレビュー"),
    (r"facebookexternalhit", "Facebookのリンクプレビュー"),
    (r"Twitterbot", "X/Twitterのリンクプレビュー"),
    # HTTP libraries and command-line tools: a program fetched it, never a person's mail client.
    (r"python-requests", "python-requests"),
    (r"Python-urllib", "Python-urllib"),
    (r"python-httpx", "python-httpx"),
    (r"aiohttp", "aiohttp"),
    (r"curl/", "curl"),
    (r"Go-http-client", "Go-http-client"),
    (r"Wget", "Wget"),
    (r"okhttp", "okhttp"),
    (r"Apache-HttpClient", "Apache-HttpClient"),
    (r"^Java/|Java-http-client", "Java"),
    (r"libwww-perl", "libwww-perl"),
    (r"^Ruby|Faraday", "Ruby"),
    (r"GuzzleHttp|^PHP", "PHP"),
    (r"node-fetch|axios|undici|^node$", "Node.js"),
    (r"HTTPie", "HTTPie"),
    (r"PostmanRuntime", "Postman"),
    (r"Scrapy", "Scrapy"),
    (r"HeadlessChrome|PhantomJS", "ヘッドレスブラウザ"),
    (r"reqwest|Dart/|libcurl", "HTTPライブラリ"),
    # "bot" as a word ending (Googlebot/2.1, bingbot), but not the CUBOT phone brand a person may carry.
    (r"(?<!cu)bot\b|crawler|spider", "クローラー・ボット"),
]

_COMPILED = [(re.compile(pattern, re.IGNORECASE), label) for pattern, label in MACHINE_FETCHERS]


def classify(user_agent: str) -> str | None:
    """The Japanese label of a known machine fetcher, or None when a person's mail client or browser fetched it."""
    text = (user_agent or "").strip()
    if not text:
        # Mail clients and browsers always send a User-Agent; only tools and scanners leave it out.
        return UNKNOWN_MACHINE
    for pattern, label in _COMPILED:
        if pattern.search(text):
            return label
    return None
