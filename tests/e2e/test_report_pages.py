"""A person's view of the report pages: staff open them from the admin index and the charts draw the test data."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest

from recommender.ml.base import EVENT_CODES
from tests.integration.report_pages_data import make_behaviour_shop, make_exposure_shop

pytestmark = pytest.mark.django_db(transaction=True)


def marks(page, chart: str, selector: str, key: str) -> dict[str, float]:
    """``key`` attribute -> data-value of the chart's marks, as the browser sees them."""
    return page.eval_on_selector_all(
        f'svg[data-chart="{chart}"] {selector}',
        f"els => Object.fromEntries(els.map(e => [e.getAttribute('{key}'), parseFloat(e.dataset.value)]))",
    )


def test_exposure_page_draws_the_tail_share_of_each_day(page, live_server, admin_login, screenshot):
    shop = make_exposure_shop(datetime.now(timezone.utc))
    admin_login()
    page.click("#rec-insights >> text=Long-tail exposure")
    page.wait_for_selector('svg[data-chart="tail-share-daily"]')
    assert page.inner_text("h1") == "Long-tail exposure"

    drawn = marks(page, "tail-share-daily", 'circle[data-series="impressions"]', "data-x")
    assert drawn == {d.isoformat(): pytest.approx(shop.tail_share_of_impressions(d), abs=1e-6) for d in shop.days}
    # Hovering a point names its day and value.
    title = page.text_content(f'svg[data-chart="tail-share-daily"] circle[data-x="{shop.day1.isoformat()}"] title')
    assert title.startswith(shop.day1.isoformat()) and "66.7%" in title
    shown = shop.impressions_by_item()
    card = page.get_attribute('[data-card="impressions"]', "data-value")
    assert int(card) == sum(shown.values())
    assert page.is_visible("#table-never-shown") and "Items never shown (2)" in page.inner_text("#table-never-shown")
    assert marks(page, "promotion-impressions", "rect", "data-label")  # the promotions of the range are drawn
    # Every chart is wide enough to read (not collapsed by the layout).
    widths = page.eval_on_selector_all("svg.rec-chart-svg", "els => els.map(e => e.getBoundingClientRect().width)")
    assert len(widths) == 4 and min(widths) > 400
    screenshot("admin-exposure")


def test_behaviour_page_draws_the_events_and_the_funnel(page, live_server, admin_login, screenshot, settings, tmp_path):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ARTIFACT_DIR": str(tmp_path / "artifacts")}
    events, version = make_behaviour_shop(datetime.now(timezone.utc))
    admin_login()
    page.click("#rec-insights >> text=Behaviour analysis")
    page.wait_for_selector('svg[data-chart="funnel"]')
    assert version.name in page.inner_text("#version-note")

    by_type = Counter(t for _, _, t, _ in events)
    assert marks(page, "event-types", "rect", "data-label") == {name: by_type.get(name, 0) for name in EVENT_CODES}
    assert marks(page, "funnel", "rect", "data-label") == {"view": 5, "click": 4, "add_to_cart": 3, "purchase": 3}
    assert page.get_attribute('[data-card="head_cut"]', "data-value") == "2"
    segments = page.inner_text("#table-segments")
    assert "toys, thing" in segments and "books" in segments
    screenshot("admin-behaviour")
