"""The recommendation endpoints: lists, reasons, filters, fallbacks, bad input, policy edits, query counts."""
from __future__ import annotations

import uuid

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from recommender.models import ABVariant, Event, EventType, ExposurePolicy, Item, ItemRule, Promotion, ServedList
from recommender.serving import impressions

from .serving_data import FakeClock, make_shop, write_version

pytestmark = pytest.mark.django_db

USER = "/api/v1/recommendations/users/{}"
SIMILAR = "/api/v1/recommendations/items/{}/similar"
SESSION = "/api/v1/recommendations/session"


@pytest.fixture
def shop(serving_settings, clock, tmp_path):
    make_shop()
    return tmp_path


@pytest.fixture
def model(shop):
    return write_version(shop / "artifacts", "v1")


def post(api, path, body, **query):
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return api.post(f"{path}?{qs}" if qs else path, data=orjson.dumps(body), content_type="application/json")


def ids(response) -> list[str]:
    return [i["item_id"] for i in response.json()["items"]]


def category_of(item_id: str) -> int:
    return int(item_id.split("-")[1]) % 4


# --- personalised -------------------------------------------------------------------------------

def test_user_gets_k_items_of_their_taste_with_reasons(api, model):
    # given user u1, who likes category c1 and bought sku-9 (c1)
    r = api.get(USER.format("u1"), {"k": 5})
    assert r.status_code == 200, r.content
    body = r.json()
    # then five items come back with the envelope the API promises
    assert len(body["items"]) == 5
    assert body["model_version"] == "v1" and body["policy"] == "built-in" and body["variant"] is None
    assert body["fallback"] is None
    uuid.UUID(body["request_id"])
    # and items of the liked category lead, the bought item is not repeated, each has a segment and reasons
    assert category_of(body["items"][0]["item_id"]) == 1
    assert "sku-9" not in ids(r)
    for item in body["items"]:
        assert item["segment"] in ("head", "tail") and item["reasons"] and item["title"]
    assert any("similar to an item you bought" in i["reasons"] for i in body["items"])


def test_tail_share_holds_in_every_prefix(api, model):
    ExposurePolicy.objects.create(name="fair", is_default=True, min_tail_share=0.5, tail_boost=0.0)
    body = api.get(USER.format("u2"), {"k": 10}).json()
    segs = [i["segment"] for i in body["items"]]
    assert body["policy"] == "fair"
    for p in range(1, len(segs) + 1):
        assert segs[:p].count("tail") >= int(0.5 * p)


def test_tail_quota_holds_even_when_the_models_top_candidates_run_short(api, model, serving_settings):
    # given only 2 model candidates per request: without a tail back-up the list would be 2 long
    serving_settings.RECOMMENDER = {**serving_settings.RECOMMENDER, "SERVING_CANDIDATES": 2}
    ExposurePolicy.objects.create(name="fair", is_default=True, min_tail_share=0.5)
    for user in ("u0", "u1", "u2"):
        segs = [i["segment"] for i in api.get(USER.format(user), {"k": 10}).json()["items"]]
        # then the best tail items back the quota up, and it holds in every prefix
        assert len(segs) == 10
        for p in range(1, 11):
            assert segs[:p].count("tail") >= int(0.5 * p)


def test_filters_category_price_exclude_and_stock(api, model):
    r = api.get(USER.format("u1"), {"k": 20, "category": "c2", "min_price": 10, "max_price": 30, "exclude": "sku-10,sku-14"})
    assert r.status_code == 200
    got = ids(r)
    assert got, "some c2 items between 10 and 30 exist"
    for item_id in got:
        i = int(item_id.split("-")[1])
        assert i % 4 == 2 and 10 <= 5 + i <= 30 and item_id not in ("sku-10", "sku-14")
    # sku-39 is out of stock: only with in_stock=false
    assert "sku-39" not in ids(api.get(USER.format("u3"), {"k": 100}))
    assert "sku-39" in ids(api.get(USER.format("u3"), {"k": 100, "in_stock": "false"}))
    # an unknown category matches nothing (not an error)
    assert api.get(USER.format("u1"), {"category": "nope"}).json()["items"] == []


# --- fallbacks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("user, why", [("stranger", "unknown user"), ("newbie", "no history")])
def test_unknown_user_or_no_history_gets_a_popular_fallback(api, model, user, why):
    r = api.get(USER.format(user), {"k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["fallback"]["reason"] == why and body["fallback"]["served"] == "popular overall"
    assert len(body["items"]) == 5
    assert body["items"][0]["item_id"] in {f"sku-{i}" for i in range(8)}


def test_no_trained_model_serves_popularity_and_says_so(api, shop):
    r = api.get(USER.format("u1"), {"k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] is None and len(body["items"]) == 5
    assert "no trained model" in body["fallback"]["model"]


def test_session_without_known_items_falls_back(api, model):
    r = post(api, SESSION, {"item_ids": ["ghost"], "event_types": ["view"]})
    assert r.status_code == 200
    assert r.json()["fallback"] == {"reason": "no known session items", "served": "popular overall"}
    # with a known shopper, their own history serves instead of plain popularity
    body = post(api, SESSION, {"item_ids": [], "user_id": "u3"}, k=3).json()
    assert body["fallback"] == {"reason": "empty session", "served": "the shopper's history"}
    assert category_of(body["items"][0]["item_id"]) == 3


def test_without_a_model_text_embeddings_and_popularity_serve(api, shop):
    # given item text embeddings (along each item's category) and no trained model
    import numpy as np

    from recommender.features.embeddings import text_model_name
    from recommender.models import ItemEmbedding

    rows = []
    for item in Item.objects.all():
        vec = np.zeros(4, np.float32)
        vec[category_of(item.external_id)] = 1.0
        rows.append(ItemEmbedding(item=item, model_name=text_model_name(), source_hash=item.text_hash, dim=4,
                                  vector=vec.tobytes()))
    ItemEmbedding.objects.bulk_create(rows)
    # when a session of category-2 items asks, then similar items by text come back, flagged
    body = post(api, SESSION, {"item_ids": ["sku-2", "sku-6"]}, k=4).json()
    assert body["model_version"] is None and body["fallback"]["model"].startswith("no trained model")
    assert {category_of(i) for i in ids_of(body)} == {2}
    # and similar items work from text too
    r = api.get(SIMILAR.format("sku-3"), {"k": 3})
    assert {category_of(i) for i in ids(r)} == {3}


# --- similar and session ------------------------------------------------------------------------

def test_similar_items_share_the_category_and_exclude_the_item(api, model):
    r = api.get(SIMILAR.format("sku-5"), {"k": 5})
    assert r.status_code == 200, r.content
    got = ids(r)
    assert "sku-5" not in got
    assert category_of(got[0]) == 1
    assert "similar to this item" in r.json()["items"][0]["reasons"]


def test_similar_to_unknown_or_removed_item_is_404(api, model, clock):
    r = api.get(SIMILAR.format("nope"))
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]
    assert api.delete("/api/v1/items/sku-6").status_code == 204
    clock.advance(61)  # past the catalog refresh
    r = api.get(SIMILAR.format("sku-6"))
    assert r.status_code == 404 and "removed" in r.json()["detail"]


def test_session_recommends_like_its_items(api, model):
    r = post(api, SESSION, {"item_ids": ["sku-3", "sku-7", "sku-11"], "event_types": ["view", "view", "add_to_cart"]}, k=5)
    assert r.status_code == 200, r.content
    got = ids(r)
    assert category_of(got[0]) == 3
    assert not {"sku-3", "sku-7", "sku-11"} & set(got)
    assert r.json()["fallback"] is None


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "query, message",
    [
        ({"k": 0}, "k=0 is out of range"),
        ({"k": 101}, "k=101 is out of range"),
        ({"k": "ten"}, "not an integer"),
        ({"colour": "red"}, "Unknown query parameter(s): colour"),
        ({"min_price": "cheap"}, "not a number"),
        ({"min_price": 30, "max_price": 10}, "swap them"),
        ({"in_stock": "maybe"}, "send true or false"),
        ({"min_price": -1}, ">= 0"),
    ],
)
def test_bad_query_is_400_with_a_message(api, model, query, message):
    for path in (USER.format("u1"), SIMILAR.format("sku-1")):
        r = api.get(path, query)
        assert r.status_code == 400, (path, r.content)
        assert message in r.json()["detail"]


@pytest.mark.parametrize(
    "body, message",
    [
        ([], "must be a JSON object"),
        ({}, "'item_ids' is missing"),
        ({"item_ids": "sku-1"}, "must be a list of non-empty strings"),
        ({"item_ids": [1, 2]}, "must be a list of non-empty strings"),
        ({"item_ids": ["sku-1"], "event_types": ["view", "view"]}, "one per item"),
        ({"item_ids": ["sku-1"], "event_types": ["stare"]}, "Unknown event type"),
        ({"item_ids": ["sku-1"], "colour": "red"}, "Unknown field(s) colour"),
        ({"item_ids": ["x"] * 101}, "at most"),
        ({"item_ids": ["sku-1"], "user_id": 7}, "user_id must be"),
        ({"item_ids": ["sku-1"], "user_id": "a\x00b"}, "control characters"),
        ({"item_ids": ["x" * 129]}, "1 to 128 characters"),
    ],
)
def test_bad_session_body_is_400_with_a_message(api, model, body, message):
    r = post(api, SESSION, body)
    assert r.status_code == 400, r.content
    assert message in r.json()["detail"]


def test_overlong_or_control_character_ids_are_400(api, model):
    r = api.get(USER.format("u" * 129))
    assert r.status_code == 400 and "1 to 128 characters" in r.json()["detail"]
    for path in (USER.format("a%00b"), SIMILAR.format("a%00b")):
        r = api.get(path)
        assert r.status_code == 400 and "control characters" in r.json()["detail"]


def test_one_unwritable_list_does_not_lose_the_others(api, model, monkeypatch):
    real = impressions.do_log_impressions

    def picky(records):
        if any(r.user_id == "u2" for r in records):
            raise ValueError("u2's list cannot be written")
        real(records)

    monkeypatch.setattr(impressions, "do_log_impressions", picky)
    for user in ("u1", "u2", "u3"):
        api.get(USER.format(user), {"k": 2})
    assert impressions.flush() == 2 and impressions.stats["failed"] == 1
    assert set(ServedList.objects.values_list("user_external_id", flat=True)) == {"u1", "u3"}


def test_malformed_json_is_400(api, model):
    r = api.post(SESSION, data=b"{not json", content_type="application/json")
    assert r.status_code == 400
    assert "Malformed JSON" in r.json()["detail"]


def test_scope_recommend_is_required(client_for, model):
    r = client_for("ingest").get(USER.format("u1"))
    assert r.status_code == 403
    assert "'recommend' scope" in r.json()["detail"]


# --- policy edits, promotions, rules, A/B -------------------------------------------------------

def test_policy_edits_take_effect_without_restart(api, model, clock):
    # given a policy that pins sku-20 for everybody
    policy = ExposurePolicy.objects.create(name="p", is_default=True)
    ItemRule.objects.create(policy=policy, item=Item.objects.get(external_id="sku-20"), action="pin")
    assert ids(api.get(USER.format("u1"), {"k": 3}))[0] == "sku-20"
    # when a merchandiser buries it instead and promotes sku-21
    rule = ItemRule.objects.get()
    rule.action = "bury"
    rule.save()
    Promotion.objects.create(policy=policy, item=Item.objects.get(external_id="sku-21"), boost=50)
    # then within the policy check interval nothing changes, and right after it does
    assert ids(api.get(USER.format("u1"), {"k": 3}))[0] == "sku-20"
    clock.advance(2.1)
    body = api.get(USER.format("u1"), {"k": 40}).json()
    assert "sku-20" not in ids_of(body)
    assert body["items"][0]["item_id"] == "sku-21" and "promoted" in body["items"][0]["reasons"]
    # and deleting the promotion is seen too (deletions change the row count in the key)
    Promotion.objects.all().delete()
    clock.advance(2.1)
    body = api.get(USER.format("u1"), {"k": 3}).json()
    assert body["items"][0]["item_id"] != "sku-21"


def ids_of(body) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def test_ab_variants_split_users_stably_by_share(api, model, shop):
    other = ExposurePolicy.objects.create(name="treatment", tail_boost=2.0, min_tail_share=0.5)
    ABVariant.objects.create(name="B", policy=other, share=0.5)
    arms = {}
    for j in range(40):
        body = api.get(USER.format(f"shopper-{j}"), {"k": 3}).json()
        arms[j] = (body["variant"], body["policy"])
    assert {a for a, _ in arms.values()} == {"B", None}
    assert all(p == ("treatment" if a == "B" else "built-in") for a, p in arms.values())
    assert 8 <= sum(a == "B" for a, _ in arms.values()) <= 32
    # the same user always lands in the same arm
    for j in range(5):
        assert api.get(USER.format(f"shopper-{j}"), {"k": 3}).json()["variant"] == arms[j][0]


def test_variant_with_its_own_model_version(api, model, shop):
    flipped = write_version(shop / "artifacts", "v2-flipped", activate=False, flip=True)
    ABVariant.objects.create(name="all", policy=ExposurePolicy.objects.create(name="q"), model_version=flipped, share=1.0)
    body = api.get(USER.format("u1"), {"k": 3}).json()
    assert body["model_version"] == "v2-flipped" and body["variant"] == "all"
    # in the flipped space category 1's items point where category 2's did
    assert category_of(body["items"][0]["item_id"]) == 2


# --- impressions --------------------------------------------------------------------------------

def test_served_lists_become_impression_events_with_the_request_id(api, model):
    body = api.get(USER.format("u1"), {"k": 4}).json()
    assert impressions.pending() == 1
    # the request did not write them; the flusher does
    assert not Event.objects.filter(event_type=EventType.IMPRESSION).exists()
    assert impressions.flush() == 1
    rows = Event.objects.filter(event_type=EventType.IMPRESSION).order_by("value")
    assert [e.item.external_id for e in rows] == ids_of(body)
    assert {str(e.request_id) for e in rows} == {body["request_id"]}
    served = ServedList.objects.get()
    assert str(served.request_id) == body["request_id"] and served.endpoint == "user"
    assert len(served.segments) == 4
    # flushing again (a retry) writes nothing twice
    impressions._enqueue(impressions.ServedRecord(
        request_id=body["request_id"], served_at=served.served_at, endpoint="user", user_id="u1", variant="",
        policy="built-in", model_version="v1", fallback="", item_pks=tuple(served.items),
        item_ids=tuple(ids_of(body)), segments=served.segments,
    ))
    impressions.flush()
    assert Event.objects.filter(event_type=EventType.IMPRESSION).count() == 4


def test_a_broken_log_path_never_fails_the_request(api, model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("queue on fire")

    monkeypatch.setattr(impressions, "_enqueue", broken)
    r = api.get(USER.format("u1"), {"k": 3})
    assert r.status_code == 200 and len(r.json()["items"]) == 3
    assert impressions.stats["dropped"] == 1
    # and a failing writer loses the batch, counted, without raising
    monkeypatch.undo()
    monkeypatch.setattr(impressions, "do_log_impressions", broken)
    assert api.get(USER.format("u1"), {"k": 3}).status_code == 200
    assert impressions.flush() == 0 and impressions.stats["failed"] == 1


def test_impression_cap_hides_items_shown_enough_today(api, model, clock):
    ExposurePolicy.objects.create(name="capped", is_default=True, daily_impression_cap=1)
    first = ids(api.get(USER.format("u1"), {"k": 5}))
    impressions.flush()
    clock.advance(11)  # past the impressions refresh
    second = ids(api.get(USER.format("u1"), {"k": 5}))
    assert not set(first) & set(second)


# --- query counts -------------------------------------------------------------------------------

def _count(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def test_query_counts_are_small_and_constant(api, model):
    api.get(USER.format("u1"))  # warms the process state and its cache of the API key
    # the user's recent events (1); the key is trusted from the process's cache for a few seconds
    assert _count(lambda: api.get(USER.format("u1"), {"k": 10})) == 1
    assert _count(lambda: api.get(USER.format("u2"), {"k": 100, "category": "c1"})) == 1
    # unknown user: the same single lookup finds nothing, then popularity from memory
    assert _count(lambda: api.get(USER.format("stranger"))) == 1
    # similar items and sessions need no query at all
    assert _count(lambda: api.get(SIMILAR.format("sku-3"), {"k": 50})) == 0
    assert _count(lambda: post(api, SESSION, {"item_ids": ["sku-1", "sku-2"]})) == 0


def test_a_cached_key_is_looked_up_again_after_a_few_seconds(api, model, monkeypatch):
    from recommender.api import authentication

    fake = FakeClock()
    monkeypatch.setattr(authentication, "clock", fake)
    api.get(USER.format("u1"))
    fake.advance(authentication.KEY_CACHE_SECONDS + 0.1)
    # the key lookup (1) and the user's recent events (1); last_used_at is fresh, so no write
    assert _count(lambda: api.get(USER.format("u1"))) == 2
    assert _count(lambda: api.get(USER.format("u1"))) == 1


def test_a_key_whose_last_use_cannot_be_written_still_answers(api, model, monkeypatch):
    """SQLite refuses a write while another thread writes: the bookkeeping waits, the request does not fail."""
    from django.db import OperationalError
    from django.db.models.query import QuerySet

    from recommender.api import authentication
    from recommender.models import APIKey

    APIKey.objects.update(last_used_at=None)
    authentication.forget_cached_keys()
    real_update = QuerySet.update

    def locked(self, **kwargs):
        if self.model is APIKey and "last_used_at" in kwargs:
            raise OperationalError("database table is locked: recommender_apikey")
        return real_update(self, **kwargs)

    monkeypatch.setattr(QuerySet, "update", locked)
    r = api.get(USER.format("u1"))
    assert r.status_code == 200, r.content
    assert APIKey.objects.get().last_used_at is None  # not written now
    monkeypatch.setattr(QuerySet, "update", real_update)
    authentication.forget_cached_keys()
    assert api.get(USER.format("u1")).status_code == 200
    assert APIKey.objects.get().last_used_at is not None  # the next lookup wrote it


def test_a_revoked_key_stops_working_within_the_cache_time(client_for, model, monkeypatch):
    from recommender.api import authentication
    from recommender.models import APIKey

    fake = FakeClock()
    monkeypatch.setattr(authentication, "clock", fake)
    client = client_for("recommend")
    assert client.get(USER.format("u1")).status_code == 200
    # revoked by another process (no signal here): trusted until the cache entry expires
    APIKey.objects.update(is_active=False)
    assert client.get(USER.format("u1")).status_code == 200
    fake.advance(authentication.KEY_CACHE_SECONDS + 0.1)
    r = client.get(USER.format("u1"))
    assert r.status_code == 401 and "Invalid or revoked" in r.json()["detail"]


def test_a_key_revoked_in_this_process_stops_working_at_once(client_for, model):
    from recommender.models import APIKey

    client = client_for("recommend")
    assert client.get(USER.format("u1")).status_code == 200
    key = APIKey.objects.get(name="tests-recommend")
    key.is_active = False
    key.save()  # the admin's way: the save signal empties this process's cache
    assert client.get(USER.format("u1")).status_code == 401


def test_responses_carry_the_server_side_time_of_the_view(api, model):
    r = api.get(USER.format("u1"), {"k": 5})
    name, dur = r["Server-Timing"].split(";")[:2]
    assert name == "view" and dur.startswith("dur=")
    assert 0 < float(dur[4:]) < 10_000
    bad = api.get(USER.format("u1"), {"k": 0})
    assert bad.status_code == 400 and bad["Server-Timing"].startswith("view;dur=")


def test_openapi_schema_lists_the_endpoints(api, model):
    r = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert r.status_code == 200
    paths = orjson.loads(r.content)["paths"] if r.content.startswith(b"{") else None
    if paths is None:  # YAML by default
        import yaml

        paths = yaml.safe_load(r.content)["paths"]
    for path in (
        "/api/v1/recommendations/users/{user_id}",
        "/api/v1/recommendations/items/{item_id}/similar",
        "/api/v1/recommendations/session",
        "/api/v1/reports/exposure",
    ):
        assert path in paths


def test_admin_pages_for_policies_render(admin_client, model):
    policy = ExposurePolicy.objects.create(name="p", is_default=True)
    Promotion.objects.create(policy=policy, category="c1", boost=1.0)
    ItemRule.objects.create(policy=policy, item=Item.objects.get(external_id="sku-1"), action="pin")
    ABVariant.objects.create(name="B", policy=policy, share=0.5)
    for url in (
        "/admin/recommender/exposurepolicy/",
        f"/admin/recommender/exposurepolicy/{policy.pk}/change/",
        "/admin/recommender/exposurepolicy/add/",
        "/admin/recommender/abvariant/",
        "/admin/recommender/servedlist/",
    ):
        assert admin_client.get(url).status_code == 200, url


def test_no_history_with_an_interest_segment_gets_the_segments_favourites(api, shop):
    # given a version whose segment 0 is into sku-30 and sku-34, and a member without events
    from recommender.models import InterestSegment, ShopUser, UserSegment

    version = write_version(shop / "artifacts", "v1")
    InterestSegment.objects.create(
        model_version=version, index=0, size=1, label="c2 fans",
        top_items=[{"item_id": "sku-30", "title": "", "count": 3}, {"item_id": "sku-34", "title": "", "count": 2}],
    )
    UserSegment.objects.create(model_version=version, user=ShopUser.objects.get(external_id="newbie"), segment=0)
    # when they ask for recommendations
    body = api.get(USER.format("newbie"), {"k": 5}).json()
    # then the list is a fallback that says so, led by the segment's items
    assert body["fallback"] == {"reason": "no history", "served": "popular in your interest segment"}
    assert ids_of(body)[:2] == ["sku-30", "sku-34"]
    assert "popular in your interest segment" in body["items"][0]["reasons"]


def test_similar_to_an_item_newer_than_the_model_is_a_fallback(api, model):
    from recommender.ingestion import do_upsert_items

    do_upsert_items([{"item_id": "sku-new", "title": "Brand new", "category": "c1"}])
    r = api.get(SIMILAR.format("sku-new"), {"k": 3})
    assert r.status_code == 200
    assert r.json()["fallback"]["reason"] == "item not in the model yet" and len(r.json()["items"]) == 3


def test_anonymous_session_impressions_are_logged_under_the_anonymous_shopper(api, model):
    body = post(api, SESSION, {"item_ids": ["sku-2"]}, k=3).json()
    impressions.flush()
    rows = Event.objects.filter(request_id=body["request_id"], event_type=EventType.IMPRESSION)
    assert rows.count() == 3 and {e.user.external_id for e in rows} == {"_anonymous"}
    # with a user_id, the shopper's own id is used (and their A/B arm)
    body = post(api, SESSION, {"item_ids": ["sku-2"], "user_id": "u4"}, k=3).json()
    impressions.flush()
    assert {e.user.external_id for e in Event.objects.filter(request_id=body["request_id"])} == {"u4"}


def test_invalid_policy_values_do_not_break_serving(api, model):
    ExposurePolicy.objects.create(name="broken", is_default=True, tail_boost=float("inf"))
    r = api.get(USER.format("u1"), {"k": 3})
    assert r.status_code == 200 and len(r.json()["items"]) == 3


def test_no_query_string_is_a_500(api, model):
    # any value for any filter, plus stray keys, is a 200 or a 400 with a message; never a 500
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.one_of(st.text(max_size=12), st.integers(-5, 200).map(str), st.floats().map(str))
    keys = st.sampled_from(["k", "category", "min_price", "max_price", "exclude", "in_stock", "zzz"])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(keys, values, max_size=4))
    def check(query):
        for path in (USER.format("u1"), SIMILAR.format("sku-1")):
            r = api.get(path, query)
            assert r.status_code in (200, 400), (query, r.content)
            if r.status_code == 400:
                assert r.json()["detail"]

    check()


# --- the hot path's database and content negotiation -------------------------------------------

def _prepared_statements() -> list[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cur.fetchall()]


def test_the_history_query_is_prepared_once_per_connection(api, model, serving_settings):
    from tests.conftest import require_postgres

    require_postgres()
    for user in ("u1", "u2", "u3"):
        assert api.get(USER.format(user), {"k": 5}).status_code == 200
    history = [s for s in _prepared_statements() if "LATERAL" in s]
    assert len(history) == 1, _prepared_statements()  # one statement, reused by every request
    # Django's own cursors (the ORM, the key lookup, this test's cursor) are not prepared.
    assert all("recommender_apikey" not in s and "pg_prepared_statements" not in s for s in _prepared_statements())


def test_the_history_cursor_is_kept_per_connection_unless_queries_are_watched(api, model, serving_settings):
    from django.db import DataError

    from recommender.serving.db import prepared_cursor
    from tests.conftest import require_postgres

    require_postgres()
    # given nothing watching the queries: one cursor serves every request of the connection
    for user in ("u1", "u2"):
        assert api.get(USER.format(user), {"k": 5}).status_code == 200
    kept = connection._rec_kept_cursor
    assert api.get(USER.format("u3"), {"k": 5}).status_code == 200
    assert connection._rec_kept_cursor is kept and prepared_cursor() is kept
    # when something watches (assertNumQueries, DEBUG, an APM's execute_wrapper), the query is a
    # wrapped cursor's like any other, and the kept one is left alone
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(USER.format("u4"), {"k": 5}).status_code == 200
    assert len(ctx.captured_queries) == 1  # the history query (the key is cached)
    assert "LATERAL" in ctx.captured_queries[0]["sql"]  # its text, as DEBUG logs show it
    seen = []
    with connection.execute_wrapper(lambda execute, sql, *a: seen.append(sql) or execute(sql, *a)):
        assert api.get(USER.format("u1"), {"k": 5}).status_code == 200
    assert any("LATERAL" in sql for sql in seen) and connection._rec_kept_cursor is kept
    # and a failure under the kept cursor is Django's error, as from any cursor
    with pytest.raises(DataError):  # django.db's, not psycopg's
        with prepared_cursor() as cur:
            cur.execute("SELECT 1/0")


def test_the_history_query_is_not_prepared_when_switched_off(api, model, serving_settings):
    from tests.conftest import require_postgres

    require_postgres()
    serving_settings.RECOMMENDER = {**serving_settings.RECOMMENDER, "SERVING_PREPARED_STATEMENTS": False}
    before = len(_prepared_statements())
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(USER.format("u1"), {"k": 5}).status_code == 200
    # Bound on the client, as Django binds: the shopper's id is in the text PostgreSQL parses.
    (history,) = [q["sql"] for q in ctx.captured_queries if "LATERAL" in q["sql"]]
    assert "'u1'" in history
    assert len(_prepared_statements()) == before


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json; indent=2", "text/*, application/*"])
def test_json_is_served_for_any_accept_header_that_takes_it(api, model, accept):
    extra = {} if accept is None else {"HTTP_ACCEPT": accept}
    r = api.get(USER.format("u1"), {"k": 3}, **extra)
    assert r.status_code == 200 and r["Content-Type"] == "application/json"
    assert len(orjson.loads(r.content)["items"]) == 3


def test_an_accept_header_without_json_is_406(api, model):
    r = api.get(USER.format("u1"), {"k": 3}, HTTP_ACCEPT="text/html")
    assert r.status_code == 406
    assert "detail" in orjson.loads(r.content)


# --- the fast path and DRF ----------------------------------------------------------------------

@pytest.fixture
def drf_runs(monkeypatch):
    """How many requests DRF's dispatch saw (the fast path answers plain requests without it)."""
    from rest_framework.views import APIView

    seen = []
    original = APIView.initial

    def initial(self, request, *args, **kwargs):
        seen.append(request.path)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initial", initial)
    return seen


def test_plain_requests_are_answered_without_drf(api, model, drf_runs):
    assert api.get(USER.format("u1"), {"k": 3}).status_code == 200
    assert api.get(SIMILAR.format("sku-3"), {"k": 3}).status_code == 200
    r = post(api, SESSION, {"item_ids": ["sku-1", "sku-5"]}, k=3)
    assert r.status_code == 200 and len(ids(r)) == 3
    assert drf_runs == []
    # and the fast answer is the same list, envelope and headers as DRF's (same seed, same day)
    fast = api.get(USER.format("u2"), {"k": 4})
    assert fast["Content-Type"] == "application/json" and fast["Server-Timing"].startswith("view;dur=")
    assert drf_runs == []


@pytest.mark.parametrize(
    "call, status",
    [
        (lambda api: api.get(USER.format("u1"), {"k": 0}), 400),
        (lambda api: api.get(USER.format("u1"), {"colour": "red"}), 400),
        (lambda api: api.get(SIMILAR.format("sku-404"), {"k": 3}), 404),
        (lambda api: api.post(SESSION, data=b"{not json", content_type="application/json"), 400),
        (lambda api: api.post(SESSION, data=b"item_ids=sku-1", content_type="application/x-www-form-urlencoded"), 415),
        (lambda api: api.get(USER.format("u1"), HTTP_ACCEPT="text/html"), 406),
        (lambda api: api.delete(USER.format("u1")), 405),
    ],
)
def test_anything_but_a_plain_request_is_answered_by_drf(api, model, drf_runs, call, status):
    r = call(api)
    assert r.status_code == status, r.content
    assert len(drf_runs) == 1  # DRF answered it, with its usual error body
    assert "detail" in orjson.loads(r.content)


def test_bad_or_missing_keys_and_scopes_are_answered_by_drf(client, client_for, model, drf_runs):
    assert client.get(USER.format("u1")).status_code == 401
    assert client.get(USER.format("u1"), HTTP_AUTHORIZATION="Bearer not-a-key").status_code == 401
    assert client.get(USER.format("u1"), HTTP_AUTHORIZATION="Bearer a b").status_code == 401
    assert client_for("ingest").get(USER.format("u1")).status_code == 403
    assert len(drf_runs) == 4


def test_a_failed_fast_attempt_is_answered_again_by_drf_and_logged_once(api, model, drf_runs, monkeypatch):
    # given a service that fails once (say, a dropped database connection), then works
    import recommender.api.recommend_views as views

    calls = []
    original = views.recommend_for_user

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("server closed the connection")
        return original(*args, **kwargs)

    monkeypatch.setattr(views, "recommend_for_user", flaky)
    r = api.get(USER.format("u1"), {"k": 3})
    # then DRF's attempt answers, and the one list served is the one logged
    assert r.status_code == 200 and len(calls) == 2 and len(drf_runs) == 1
    impressions.flush()
    assert ServedList.objects.filter(request_id=r.json()["request_id"]).count() == 1
    assert ServedList.objects.count() == 1


def test_drf_throttles_a_shop_configures_still_apply(api, model, drf_runs, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    from recommender.api.recommend_views import UserRecommendationsView

    class TwoAMinute(SimpleRateThrottle):
        rate = "2/min"

        def get_cache_key(self, request, view):
            return "tests-two-a-minute"

    from django.core.cache import cache

    cache.delete("tests-two-a-minute")
    monkeypatch.setattr(UserRecommendationsView, "throttle_classes", [TwoAMinute])
    codes = [api.get(USER.format("u1"), {"k": 3}).status_code for _ in range(3)]
    assert codes == [200, 200, 429] and len(drf_runs) == 3
