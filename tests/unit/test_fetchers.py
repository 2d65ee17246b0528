"""Machine fetchers are recognised by User-Agent; people's mail clients and browsers are not."""
import pytest

from portal.tracking.fetchers import classify

GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
OUTLOOK_DESKTOP = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
THUNDERBIRD = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"


@pytest.mark.parametrize("user_agent, label", [
    (GMAIL_PROXY, "Gmail画像プロキシ"),
    ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "Yahoo!メール画像プロキシ"),
    ("Mozilla/5.0", "Appleメールプライバシー保護"),
    ("Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/534+ (KHTML, like Gecko) BingPreview/1.0b",
     "Microsoftリンクプレビュー"),
    ("Microsoft SafeLinks", "Microsoftセーフリンク"),
    ("Barracuda Sentinel (EE)", "Barracudaメールセキュリティ"),
    ("Mozilla/5.0 (compatible; Proofpoint URL Defense)", "Proofpointメールセキュリティ"),
    ("Mimecast URL Protect", "Mimecastメールセキュリティ"),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "Slackのリンクプレビュー"),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "Facebookのリンクプレビュー"),
    ("Twitterbot/1.0", "X/Twitterのリンクプレビュー"),
    ("python-requests/2.32.3", "python-requests"),
    ("curl/8.5.0", "curl"),
    ("Go-http-client/1.1", "Go-http-client"),
    ("Wget/1.21.4", "Wget"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "クローラー・ボット"),
    ("Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)", "クローラー・ボット"),
    ("", "不明な自動取得"),
    ("   ", "不明な自動取得"),
])
def test_machines_get_a_japanese_label(user_agent, label):
    """Image proxies, link scanners, previews, scripts and bots are named."""
    assert classify(user_agent) == label


@pytest.mark.parametrize("user_agent", [
    OUTLOOK_DESKTOP,
    "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
    CHROME,
    THUNDERBIRD,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
])
def test_people_are_not_machines(user_agent):
    """Outlook desktop, browsers and mail apps are people reading or clicking."""
    assert classify(user_agent) is None


def test_matching_ignores_case():
    """Scanners vary the spelling; the table matches any case."""
    assert classify("googleimageproxy") == "Gmail画像プロキシ"
