"""The ingestion endpoints: happy paths, every bad-input case, idempotent retries, auth, query counts."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from tests.conftest import require_postgres

from recommender.models import Event, EventType, Item, ShopUser

pytestmark = pytest.mark.django_db

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def item(i: int, **extra) -> dict:
    return {"item_id": f"sku-{i}", "title": f"Blue mug {i}", "category": "kitchen/mugs", "brand": "Acme", "price": 9.5, **extra}


def event(i: int, **extra) -> dict:
    rec = {
        "user_id": f"u{i % 7}",
        "item_id": f"sku-{i % 5}",
        "event_type": "view",
        "timestamp": (NOW - timedelta(minutes=i)).isoformat(),
        "event_id": f"ev-{i}",
    }
    rec.update(extra)
    return rec


def post(api, path, body):
    return api.post(path, data=orjson.dumps(body), content_type="application/json")


# --- items -------------------------------------------------------------------------------------

def test_upsert_items_creates_then_updates(api):
    # given a batch of three new items
    r = post(api, "/api/v1/items", [item(1), item(2), item(3)])
    assert r.status_code == 200, r.content
    assert r.json() == {"received": 3, "created": 3, "updated": 0}
    # when one is sent again with a new title
    r = post(api, "/api/v1/items", [item(2, title="Red mug")])
    # then it is updated in place, not duplicated, and its text hash changed
    assert r.json() == {"received": 1, "created": 0, "updated": 1}
    assert Item.objects.count() == 3
    assert Item.objects.get(external_id="sku-2").title == "Red mug"
    hashes = set(Item.objects.values_list("text_hash", flat=True))
    assert len(hashes) == 3 and all(len(h) == 64 for h in hashes)


def test_get_and_delete_item(api):
    post(api, "/api/v1/items", [item(1, attributes={"colour": "blue"})])
    r = api.get("/api/v1/items/sku-1")
    assert r.status_code == 200
    body = r.json()
    assert body["item_id"] == "sku-1" and body["attributes"] == {"colour": "blue"} and body["price"] == "9.50"
    assert api.delete("/api/v1/items/sku-1").status_code == 204
    assert api.get("/api/v1/items/sku-1").status_code == 404
    assert api.delete("/api/v1/items/sku-1").status_code == 404
    # the row stays (its history is still useful for learning) but is never eligible
    assert not Item.objects.eligible().filter(external_id="sku-1").exists()
    # upserting it again brings it back
    post(api, "/api/v1/items", [item(1)])
    assert api.get("/api/v1/items/sku-1").status_code == 200


def test_unknown_item_is_404_with_message(api):
    r = api.get("/api/v1/items/nope")
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]


# --- events ------------------------------------------------------------------------------------

def test_ingest_events_creates_users_and_placeholder_items(api):
    post(api, "/api/v1/items", [item(0), item(1)])
    batch = [event(i) for i in range(20)]
    r = post(api, "/api/v1/events", batch)
    assert r.status_code == 200, r.content
    assert r.json() == {"received": 20, "stored": 20, "duplicates": 0, "created_users": 7, "created_items": 3}
    assert Event.objects.count() == 20
    assert ShopUser.objects.count() == 7
    placeholders = Item.objects.filter(is_placeholder=True)
    assert sorted(placeholders.values_list("external_id", flat=True)) == ["sku-2", "sku-3", "sku-4"]
    # a later catalog upsert fills the placeholder in
    post(api, "/api/v1/items", [item(3)])
    assert Item.objects.get(external_id="sku-3").is_placeholder is False


def test_event_fields_are_stored(api):
    req = str(uuid.uuid4())
    batch = [
        event(1, event_type="purchase", value=3, request_id=req),
        event(2, event_type="search", query="  blue mug  "),
        event(3, timestamp=int((NOW - timedelta(hours=1)).timestamp())),
        event(4, timestamp="2024-01-02T03:04:05"),
    ]
    assert post(api, "/api/v1/events", batch).status_code == 200
    e1 = Event.objects.get(event_id="ev-1")
    assert e1.event_type == EventType.PURCHASE and e1.value == 3.0 and str(e1.request_id) == req
    assert Event.objects.get(event_id="ev-2").query == "blue mug"
    assert Event.objects.get(event_id="ev-3").timestamp == NOW - timedelta(hours=1)
    assert Event.objects.get(event_id="ev-4").timestamp == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_retried_batch_stores_each_event_once(api):
    batch = [event(i) for i in range(50)]
    first = post(api, "/api/v1/events", batch).json()
    second = post(api, "/api/v1/events", batch).json()
    assert first["stored"] == 50 and first["duplicates"] == 0
    assert second["stored"] == 0 and second["duplicates"] == 50
    assert Event.objects.count() == 50


def test_repeated_event_id_inside_one_batch_is_stored_once(api):
    r = post(api, "/api/v1/events", [event(1), event(1), event(2)])
    assert r.json()["stored"] == 2 and r.json()["duplicates"] == 1
    assert Event.objects.count() == 2


def test_events_without_event_id_are_all_kept(api):
    batch = [{k: v for k, v in event(i).items() if k != "event_id"} for i in range(3)]
    post(api, "/api/v1/events", batch)
    post(api, "/api/v1/events", batch)
    assert Event.objects.count() == 6


def test_strict_unknown_item_policy_rejects_the_batch(api, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "UNKNOWN_ITEM_POLICY": "strict"}
    post(api, "/api/v1/items", [item(0)])
    r = post(api, "/api/v1/events", [event(0), event(1)])
    assert r.status_code == 400
    body = r.json()
    assert body["errors"] == [{"index": 1, "field": "item_id", "message": "Unknown item 'sku-1': add it with POST /api/v1/items first."}]
    assert Event.objects.count() == 0 and ShopUser.objects.count() == 0


def test_erase_user_deletes_user_and_all_events(api):
    post(api, "/api/v1/events", [event(i) for i in range(21)])
    before = Event.objects.count()
    r = api.delete("/api/v1/users/u0")
    assert r.status_code == 200
    assert r.json() == {"user_id": "u0", "events_deleted": 3}
    assert Event.objects.count() == before - 3
    assert not ShopUser.objects.filter(external_id="u0").exists()
    assert api.delete("/api/v1/users/u0").status_code == 404


# --- bad input: rejected whole, with index, field and message ---------------------------------

BAD_EVENTS = [
    ({"item_id": "a", "event_type": "view", "timestamp": "2024-01-01T00:00:00Z"}, "user_id", "required"),
    ({"user_id": 5.5, "item_id": "a", "event_type": "view", "timestamp": "2024-01-01T00:00:00Z"}, "user_id", "must be a string"),
    ({"user_id": "u", "item_id": "a", "event_type": "like", "timestamp": "2024-01-01T00:00:00Z"}, "event_type", "Unknown event type 'like'"),
    ({"user_id": "u", "item_id": "a", "event_type": "view"}, "timestamp", "required"),
    ({"user_id": "u", "item_id": "a", "event_type": "view", "timestamp": "yesterday"}, "timestamp", "ISO 8601"),
    ({"user_id": "u", "item_id": "a", "event_type": "view", "timestamp": (NOW + timedelta(days=2)).isoformat()}, "timestamp", "in the future"),
    ({"user_id": "u", "item_id": "a", "event_type": "view", "timestamp": 1_700_000_000_000}, "timestamp", ""),
    ({"user_id": "u" * 129, "item_id": "a", "event_type": "view", "timestamp": "2024-01-01T00:00:00Z"}, "user_id", "the limit is 128"),
    ({"user_id": "u", "item_id": "a", "event_type": "search", "query": "q" * 501, "timestamp": "2024-01-01T00:00:00Z"}, "query", "the limit is 500"),
    ({"user_id": "u", "item_id": "a", "event_type": "view", "value": "three", "timestamp": "2024-01-01T00:00:00Z"}, "value", "finite number"),
    ({"user_id": "u", "item_id": "a", "event_type": "view", "request_id": "abc", "timestamp": "2024-01-01T00:00:00Z"}, "request_id", "UUID"),
    ({"user_id": "u", "item_id": "a", "event_type": "view", "timestamp": "2024-01-01T00:00:00Z", "colour": "red"}, "colour", "Unknown field"),
    ("not an object", "", "must be a JSON object"),
]


@pytest.mark.parametrize("bad,field,words", BAD_EVENTS, ids=[f"{b[1] or 'record'}-{i}" for i, b in enumerate(BAD_EVENTS)])
def test_bad_event_rejects_whole_batch(api, bad, field, words):
    # given a batch whose third record is bad
    batch = [event(1), event(2), bad, event(3)]
    r = post(api, "/api/v1/events", batch)
    # then nothing is written and the error says which record, which field and what to change
    assert r.status_code == 400, r.content
    errors = r.json()["errors"]
    assert errors[0]["index"] == 2 and errors[0]["field"] == field
    assert words in errors[0]["message"]
    assert "nothing was written" in r.json()["detail"]
    assert Event.objects.count() == 0 and ShopUser.objects.count() == 0 and Item.objects.count() == 0


BAD_ITEMS = [
    ({"title": "x"}, "item_id", "required"),
    ({"item_id": "a"}, "title", "required"),
    ({"item_id": "a", "title": 7}, "title", "must be a string"),
    ({"item_id": "a", "title": "x" * 501}, "title", "the limit is 500"),
    ({"item_id": "a", "title": "x", "price": "cheap"}, "price", "must be a number"),
    ({"item_id": "a", "title": "x", "price": -1}, "price", "from 0"),
    ({"item_id": "a", "title": "x", "in_stock": "yes"}, "in_stock", "true or false"),
    ({"item_id": "a", "title": "x", "attributes": [1]}, "attributes", "must be an object"),
]


@pytest.mark.parametrize("bad,field,words", BAD_ITEMS, ids=[b[1] for b in BAD_ITEMS])
def test_bad_item_rejects_whole_batch(api, bad, field, words):
    r = post(api, "/api/v1/items", [item(1), bad])
    assert r.status_code == 400, r.content
    err = r.json()["errors"][0]
    assert (err["index"], err["field"]) == (1, field) and words in err["message"]
    assert Item.objects.count() == 0


def test_every_error_of_a_batch_is_listed(api):
    r = post(api, "/api/v1/events", [{"user_id": "u"}, {"user_id": "u", "item_id": "a", "event_type": "view", "timestamp": "x"}])
    fields = [(e["index"], e["field"]) for e in r.json()["errors"]]
    assert fields == [(0, "item_id"), (0, "event_type"), (0, "timestamp"), (1, "timestamp")]


def test_malformed_json(api):
    r = api.post("/api/v1/events", data=b'[{"user_id": "u",', content_type="application/json")
    assert r.status_code == 400
    assert "Malformed JSON" in r.json()["detail"]


def test_empty_and_wrong_shaped_bodies(api):
    assert "empty" in post(api, "/api/v1/events", []).json()["detail"]
    assert "JSON array" in post(api, "/api/v1/events", {"foo": 1}).json()["detail"]
    # an object wrapping the array is accepted too
    assert post(api, "/api/v1/events", {"events": [event(1)]}).status_code == 200


def test_oversized_batch_names_the_limit(api, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "MAX_EVENT_BATCH": 5}
    r = post(api, "/api/v1/events", [event(i) for i in range(6)])
    assert r.status_code == 400
    assert r.json()["detail"] == "The batch has 6 events; the limit is 5 per request. Split it."
    assert Event.objects.count() == 0


def test_default_batch_limits_are_the_documented_ones(api):
    r = post(api, "/api/v1/items", [item(i) for i in range(5001)])
    assert r.status_code == 400 and "the limit is 5000" in r.json()["detail"]


# --- authentication and scopes -----------------------------------------------------------------

def test_no_key_is_401_with_instructions(client):
    r = client.post("/api/v1/events", data=b"[]", content_type="application/json")
    assert r.status_code == 401
    assert "Authorization: Bearer" in r.json()["detail"]
    assert r["WWW-Authenticate"].startswith("Bearer")


def test_wrong_key_is_401(client, api_key):
    r = client.get("/api/v1/items/x", HTTP_AUTHORIZATION="Bearer " + api_key[:-2] + "xx")
    assert r.status_code == 401
    assert "Invalid or revoked" in r.json()["detail"]


def test_revoked_key_is_401(client, api_key):
    from recommender.models import APIKey

    APIKey.objects.update(is_active=False)
    assert client.get("/api/v1/items/x", HTTP_AUTHORIZATION=f"Bearer {api_key}").status_code == 401


def test_wrong_scope_is_403_naming_the_scope(client_for):
    r = post(client_for("reports"), "/api/v1/events", [event(1)])
    assert r.status_code == 403
    assert "'ingest' scope" in r.json()["detail"]
    assert Event.objects.count() == 0


def test_keys_are_stored_hashed(api_key):
    from recommender.models import APIKey

    row = APIKey.objects.get()
    assert api_key not in (row.key_hash, row.prefix) and len(row.key_hash) == 64


# --- pinned SQL query counts -------------------------------------------------------------------

def _count_queries(fn) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def test_query_count_events_is_constant_in_batch_size(api, connection_vendor):
    # The production path; SQLite (the demo) inserts through the ORM in batches its limits allow.
    require_postgres()
    post(api, "/api/v1/items", [item(i) for i in range(5)])
    post(api, "/api/v1/events", [event(0)])  # warms the process's cache of the API key
    counts = [
        _count_queries(lambda: post(api, "/api/v1/events", [event(i, event_id=f"q{size}-{i}") for i in range(size)]))
        for size in (10, 400)
    ]
    assert counts[0] == counts[1]
    if connection_vendor == "postgresql":
        # savepoint, insert users, select users, select items, insert events, release
        # (the key is trusted from the process's cache: recommender/api/authentication.py)
        assert counts == [6, 6]


def test_query_count_items_is_constant_in_batch_size(api, connection_vendor):
    require_postgres()
    post(api, "/api/v1/items", [item(0)])
    counts = [_count_queries(lambda: post(api, "/api/v1/items", [item(i) for i in range(size)])) for size in (10, 400)]
    assert counts[0] == counts[1]
    if connection_vendor == "postgresql":
        # savepoint, one upsert statement, release (the key comes from the process's cache)
        assert counts == [3, 3]
