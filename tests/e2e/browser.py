"""Browser-test helpers: Debian's Chromium through Playwright, sign-in, request and error watching, screenshots."""
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium tries to reach the internet on its own.
# Chromium puts a sandbox="" frame (an opaque origin) in a process of its own (IsolateSandboxedIframes), and
# Playwright neither reports nor routes that process's requests: the mail frames' fetches would go unseen, and
# really leave the machine. Without site isolation the frame stays in the page's process; its sandbox and CSP
# are enforced just the same. (Not --disable-features=IsolateSandboxedIframes: a second --disable-features
# replaces Playwright's own list.) The resolver rule makes sure no host but the portal's is ever looked up.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-site-isolation-trials", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


@contextmanager
def chromium_page():
    """A page in a fresh Chromium; a missing binary fails the test instead of skipping it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install it with "
                    "`apt-get install -y --no-install-recommends chromium fonts-noto-cjk` "
                    "(never `playwright install`)", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(locale="ja-JP", viewport={"width": 1280, "height": 800})
        finally:
            browser.close()


def record_console_error(message, errors: list) -> None:
    """Keep console errors (the portal links its own favicon, so none are expected)."""
    if message.type == "error":
        errors.append(f"{message.text} ({message.location.get('url')})")


def watch(page) -> tuple[list, list]:
    """Record every request URL and every console or page error of the page; returns (requests, errors)."""
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: record_console_error(message, errors))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return requests, errors


def assert_only_portal(requests: list, errors: list, base_url: str) -> None:
    """Every request went to the portal and no script failed."""
    portal_host = urlsplit(base_url).netloc
    assert requests and all(urlsplit(url).netloc == portal_host for url in requests), requests
    assert not errors, errors


def log_in(page, base_url: str, email: str, password: str) -> None:
    """Sign in through the login form and land on ホーム."""
    page.goto(f"{base_url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="ログイン").click()
    expect(page.locator("h1")).to_have_text("ホーム")


def keep_screenshot(page, path: Path) -> None:
    """Save a full-page screenshot and check the file is there."""
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    assert path.is_file() and path.stat().st_size > 0
