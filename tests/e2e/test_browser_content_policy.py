"""Hole 11 in Chromium: under the portal's Content-Security-Policy every screen loads without a violation."""
import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import MailMessage
from portal.settings import services
from tests.e2e.browser import chromium_page, log_in, watch

pytestmark = pytest.mark.browser

OWNER_EMAIL = "owner@demo.example.jp"


def test_every_screen_runs_under_the_policy(live_server):
    """The demo owner opens every screen without arguments and a mail thread: no CSP report, no script error."""
    app, base_url = live_server
    with app.app_context():
        services.seed_demo(db.session)
        thread_id = db.session.scalar(select(MailMessage.id).order_by(MailMessage.id).limit(1))
        paths = sorted({rule.rule for rule in app.url_map.iter_rules()
                        if "GET" in rule.methods and not rule.arguments and not rule.rule.startswith("/t/")
                        and "oauth" not in rule.rule})
        db.session.remove()
    if thread_id is not None:
        paths.append(f"/mails/{thread_id}")
    with chromium_page() as page:
        _, errors = watch(page)
        log_in(page, base_url, OWNER_EMAIL, services.DEMO_PASSWORD)
        for path in paths:
            response = page.goto(base_url + path)
            assert response is not None and response.status < 500, path
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path
        assert len(paths) >= 15
        assert not errors, errors
