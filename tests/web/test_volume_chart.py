"""機能契約: the storage volume over the last 12 months as a server-drawn SVG chart."""
import re
from datetime import datetime, timezone

from bs4 import BeautifulSoup

from portal.extensions import db
from portal.features.chart import nice_ceiling, volume_chart
from portal.features.services import VolumePoint, volume_history
from portal.models import MailMessage
from tests.factories import enable_email, make_account, make_message

NOW = datetime(2026, 11, 15, 3, 0, tzinfo=timezone.utc)


def stored(account, size: int, imported_at: datetime) -> MailMessage:
    """A stored message of a size, imported at a time."""
    message = make_message(account)
    message.size_bytes, message.imported_at = size, imported_at
    db.session.commit()
    return message


def test_history_is_the_volume_at_each_months_end_in_japan_time(app):
    """Twelve months oldest first; each point counts mail imported before that month ended (JST); now for this month."""
    account, owner = make_account()
    other, _ = make_account()
    stored(account, 1000, datetime(2025, 11, 30, 16, 0, tzinfo=timezone.utc))  # 2025-12-01 01:00 JST: December
    stored(account, 500, datetime(2026, 6, 10, tzinfo=timezone.utc))
    stored(account, 200, datetime(2026, 11, 1, tzinfo=timezone.utc))
    stored(other, 99999, datetime(2026, 1, 1, tzinfo=timezone.utc))  # another account never counts
    points = volume_history(db.session, account.id, NOW)
    assert [point.month.isoformat()[:7] for point in points][:2] == ["2025-12", "2026-01"]
    assert len(points) == 12 and points[-1].month.isoformat()[:7] == "2026-11"
    values = [point.bytes for point in points]
    assert values[0] == 1000 and values[5] == 1000 and values[6] == 1500 and values[-1] == 1700


def test_chart_scales_bars_to_a_round_maximum():
    """The tallest bar stays inside the plot; the grid's top is a round size."""
    assert nice_ceiling(0) == 1024 and nice_ceiling(700) == 1000 and nice_ceiling(3 * 1024 ** 2) == 5 * 1024 ** 2
    points = [VolumePoint(month=datetime(2026, month, 1).date(), bytes=month * 1024 ** 2) for month in range(1, 13)]
    chart = volume_chart(points)
    assert len(chart.bars) == 12 and chart.ticks[-1].bytes == 20 * 1024 ** 2
    assert all(bar.y >= 0 and bar.y + bar.height <= chart.baseline + 0.1 for bar in chart.bars)
    assert chart.bars[-1].height > chart.bars[0].height > 0


def test_features_page_draws_the_chart_inline_without_scripts(client, auth):
    """An inline SVG with 12 labelled bars and a text description; no script, no outside resource."""
    account, owner = make_account()
    enable_email(account, owner)
    stored(account, 2 * 1024 ** 2, datetime(2026, 1, 5, tzinfo=timezone.utc))
    auth.login_member(owner)
    html = client.get("/settings/features").get_data(as_text=True)
    svg = BeautifulSoup(html, "html.parser").select_one("svg#volume-chart")
    assert svg is not None and svg["role"] == "img"
    bars = svg.select("g.volume-bar")
    assert len(bars) == 12 and bars[-1]["data-bytes"] == str(2 * 1024 ** 2)
    assert "2.0 MB" in svg.select_one("desc").get_text()
    assert not svg.select("script") and not re.search(r"https?://", str(svg).replace("http://www.w3.org", ""))
