"""A person's view: the admin lists what the API ingested; the API docs render offline."""
from __future__ import annotations

import pytest

from recommender.ingestion import do_ingest_events, do_upsert_items

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_shows_ingested_items_and_events(page, live_server, admin_login, screenshot):
    # given a catalog item with a Chinese title and an event, ingested through the service
    do_upsert_items([{"item_id": "tea-1", "title": "龙井绿茶 West Lake green tea", "category": "tea", "price": 12}])
    do_ingest_events([{"user_id": "u1", "item_id": "tea-1", "event_type": "purchase", "timestamp": "2024-03-01T10:00:00Z", "value": 2}])
    # when staff log in and open the items and events lists
    admin_login()
    assert "recommender" in page.inner_text("#content").lower()
    page.locator("a[href=\"/admin/recommender/item/\"]").first.click()
    page.wait_for_selector("#result_list")
    # then the item is listed with its title, rendered (not tofu) in the CJK font
    assert "龙井绿茶 West Lake green tea" in page.inner_text("#result_list")
    screenshot("admin-items")
    page.goto(f"{live_server.url}/admin/recommender/event/")
    page.wait_for_selector("#result_list")
    text = page.inner_text("#result_list")
    assert "purchase" in text and "u1" in text
    screenshot("admin-events")


def test_api_docs_render_without_internet(page, live_server, screenshot):
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector("text=Long-tail recommender API", timeout=20_000)
    page.get_by_text("/api/v1/events", exact=True).first.wait_for()
    assert not [u for u in failed if live_server.url not in u], failed
    screenshot("api-docs")


def test_staff_create_an_api_key_in_the_admin_and_it_works(page, live_server, admin_login):
    import re

    import requests

    admin_login()
    page.goto(f"{live_server.url}/admin/recommender/apikey/add/")
    page.fill("#id_name", "storefront")
    page.check("input[name=scopes][value=ingest]")
    page.click("input[name=_save]")
    message = page.inner_text(".messagelist")
    key = re.search(r"(rk_[A-Za-z0-9_-]+)", message).group(1)
    assert "cannot be shown again" in message
    r = requests.post(f"{live_server.url}/api/v1/items", json=[{"item_id": "a", "title": "A"}],
                      headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, r.text
    r = requests.get(f"{live_server.url}/api/v1/reports/exposure", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 403  # the key has no "reports" scope
