"""The exposure policy's live preview: the service (before/after from the serving path, nothing logged)
and the admin endpoint the change form calls (staff only, CSRF, the admin form's own validation)."""
from __future__ import annotations

import pytest
from django.test import Client

from recommender.models import Event, ExposurePolicy, Item, ItemRule, ServedList
from recommender.serving import impressions
from recommender.serving.preview import PreviewError, clean_changes, preview_policy
from recommender.serving.services import recommend_for_user

pytestmark = pytest.mark.django_db

URL = "/admin/insights/policy-preview/"


@pytest.fixture
def policy(model):
    return ExposurePolicy.objects.create(name="house", is_default=True, tail_boost=0.0, min_tail_share=0.0)


def ids(side) -> list[str]:
    return [i["item_id"] for i in side.items]


# --- the service ---------------------------------------------------------------------------------

def test_before_is_what_the_shopper_is_served_under_the_saved_policy(policy):
    # given the default policy serving u1
    served = [i["item_id"] for i in recommend_for_user("u1", 10).items]
    # when its preview is asked for without any change
    preview = preview_policy("u1", policy.pk, {})
    # then both sides are the served list, nothing moved and nothing is reported as changed
    assert ids(preview.before) == served == ids(preview.after)
    assert preview.changed == {} and preview.dropped == []
    assert {i["move"] for i in preview.after.items} == {"same"}
    assert all(i["reasons"] for i in preview.after.items)


@pytest.mark.parametrize("user", ["u1", "newbie"])
def test_raising_tail_boost_raises_the_after_lists_tail_share(policy, user):
    # when the edit raises the long-tail boost from 0 to 3
    preview = preview_policy(user, policy.pk, {"tail_boost": 3.0})
    # then "after" holds more tail items than "before", and tail items say why they rose
    assert preview.after.tail_share > preview.before.tail_share
    assert preview.changed == {"tail_boost": (0.0, 3.0)}
    assert any("long-tail boost" in i["reasons"] for i in preview.after.items)
    assert not any("long-tail boost" in i["reasons"] for i in preview.before.items)
    # and the items that left the list are the head items the boost pushed out
    assert preview.dropped and {i["segment"] for i in preview.dropped} == {"head"}
    assert any(i["move"].startswith("up") or i["move"] == "new" for i in preview.after.items)


def test_min_tail_share_holds_in_the_after_list(policy):
    preview = preview_policy("newbie", policy.pk, {"min_tail_share": 0.5})
    segments = [i["segment"] for i in preview.after.items]
    for p in range(1, len(segments) + 1):
        assert segments[:p].count("tail") >= int(0.5 * p), segments
    # while the saved policy (no quota) leads with head items
    assert [i["segment"] for i in preview.before.items[:2]] == ["head", "head"]
    assert preview.after.tail_share >= 0.5 > preview.before.tail_share


def test_a_pinned_item_comes_first_in_after_only(policy):
    pin = Item.objects.get(external_id="sku-22")
    preview = preview_policy("u1", policy.pk, {"pinned": [pin.pk]})
    assert preview.after.items[0]["item_id"] == "sku-22"
    assert preview.after.items[0]["reasons"][0] == "pinned"
    assert preview.before.items[0]["item_id"] != "sku-22"


def test_a_bury_in_the_edit_removes_the_item_and_a_removed_pin_frees_the_top(policy):
    # given a saved pin of sku-22
    ItemRule.objects.create(policy=policy, item=Item.objects.get(external_id="sku-22"), action="pin")
    top = preview_policy("u1", policy.pk, {}).after.items[0]["item_id"]
    assert top == "sku-22"
    # when the edit drops the pin and buries u1's best item
    best = preview_policy("u1", policy.pk, {"pinned": []}).after.items[0]["item_id"]
    preview = preview_policy("u1", policy.pk, {"pinned": [], "buried": [Item.objects.get(external_id=best).pk]})
    # then before keeps the pin, after has neither the pin on top nor the buried item
    assert preview.before.items[0]["item_id"] == "sku-22"
    assert preview.after.items[0]["item_id"] != "sku-22"
    assert best not in ids(preview.after)


def test_preview_writes_nothing(policy):
    events_before = Event.objects.count()
    preview_policy("u1", policy.pk, {"tail_boost": 2.0, "min_tail_share": 0.4})
    preview_policy("nobody-knows-me", policy.pk, {"tail_boost": 2.0})
    assert impressions.pending() == 0
    assert impressions.flush() == 0
    assert ServedList.objects.count() == 0
    assert Event.objects.count() == events_before


def test_unknown_user_gets_a_fallback_labelled_as_such(policy):
    preview = preview_policy("nobody-knows-me", policy.pk, {"tail_boost": 1.0})
    assert preview.before.fallback["reason"] == preview.after.fallback["reason"] == "unknown user"
    assert len(preview.after.items) == 10


def test_before_reads_the_saved_policy_fresh_not_the_cached_config(policy, clock):
    first = preview_policy("newbie", policy.pk, {})
    # when the policy is saved with a large boost (no time passes: the serving snapshot is stale)
    policy.tail_boost = 3.0
    policy.save()
    second = preview_policy("newbie", policy.pk, {})
    # then the preview's "before" already shows the saved values
    assert second.before.tail_share > first.before.tail_share


def test_new_policy_previews_against_the_default(policy):
    preview = preview_policy("newbie", None, {"tail_boost": 3.0, "min_tail_share": 0.0})
    assert preview.before.policy == "house" and preview.after.policy == "new policy (unsaved)"
    assert preview.after.tail_share > preview.before.tail_share


@pytest.mark.parametrize("changes, field, words", [
    ({"min_tail_share": 1.5}, "min_tail_share", "less than or equal to 1"),
    ({"head_share": -0.1}, "head_share", "greater than or equal to 0"),
    ({"tail_boost": "lots"}, "tail_boost", "must be a float"),
    ({"tail_boost": "inf"}, "tail_boost", "finite number"),
    ({"head_window_days": 0}, "head_window_days", "greater than or equal to 1"),
    ({"colour": "red"}, "colour", "not a policy setting"),
])
def test_bad_values_say_what_to_change(changes, field, words):
    with pytest.raises(PreviewError) as err:
        clean_changes(changes)
    assert field in err.value.errors and words in err.value.errors[field], err.value.errors


def test_no_user_or_unknown_policy_is_refused(policy):
    with pytest.raises(PreviewError, match="Pick a shopper"):
        preview_policy("", policy.pk, {})
    with pytest.raises(PreviewError, match="No exposure policy with id"):
        preview_policy("u1", policy.pk + 100, {})


# --- the admin endpoint ---------------------------------------------------------------------------

def test_endpoint_previews_the_posted_form_values(admin_client, policy):
    r = admin_client.post(URL, {"preview_user": "newbie", "preview_policy": policy.pk, "tail_boost": "3",
                                "min_tail_share": "0.0"})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["ok"] and body["errors"] == {}
    assert body["preview"]["after"]["tail_share"] > body["preview"]["before"]["tail_share"]
    assert body["preview"]["changed"] == {"tail_boost": [0.0, 3.0]}
    html = body["html"]
    assert 'data-list="before"' in html and 'data-list="after"' in html
    assert "long-tail boost" in html and 'title="up 8, was 9">8↑<' in html
    assert ServedList.objects.count() == 0 and impressions.pending() == 0


def test_endpoint_reads_the_pin_and_bury_inline_rows(admin_client, policy):
    pin = Item.objects.get(external_id="sku-30")
    form = {"preview_user": "u1", "preview_policy": policy.pk,
            "rules-TOTAL_FORMS": "2", "rules-INITIAL_FORMS": "0",
            "rules-0-item": pin.pk, "rules-0-action": "pin", "rules-0-position": "0",
            "rules-1-item": "", "rules-1-action": "", "rules-1-position": "0"}
    body = admin_client.post(URL, form).json()
    assert body["ok"], body["errors"]
    assert body["preview"]["after"]["items"][0]["item_id"] == "sku-30"
    assert body["preview"]["after"]["items"][0]["reasons"][0] == "pinned"
    assert body["preview"]["changed"] == {"pinned": [[], [pin.pk]]}


def test_endpoint_reports_bad_numbers_with_the_admin_forms_message(admin_client, policy):
    r = admin_client.post(URL, {"preview_user": "u1", "preview_policy": policy.pk, "min_tail_share": "2",
                                "tail_boost": "abc"})
    assert r.status_code == 400
    body = r.json()
    assert set(body["errors"]) == {"min_tail_share", "tail_boost"}
    assert "less than or equal to 1" in body["errors"]["min_tail_share"]
    assert "Enter a number" in body["errors"]["tail_boost"] and "'abc'" in body["errors"]["tail_boost"]
    assert body["preview"] is None and "errorlist" in body["html"]


def test_endpoint_without_user_offers_recently_active_shoppers(admin_client, policy):
    body = admin_client.post(URL, {"preview_policy": policy.pk}).json()
    assert "Pick a shopper" in body["errors"]["user"]
    assert body["suggestions"] and set(body["suggestions"]) <= {f"u{j}" for j in range(12)}
    assert 'class="button preview-pick"' in body["html"]


def test_endpoint_is_staff_only_post_only_and_checks_csrf(client, django_user_model, admin_user, policy):
    # anonymous and non-staff are sent to the admin login
    assert client.post(URL, {"preview_user": "u1"}).status_code == 302
    django_user_model.objects.create_user("shopper", password="pw")
    client.login(username="shopper", password="pw")
    r = client.post(URL, {"preview_user": "u1"})
    assert r.status_code == 302 and "/admin/login/" in r["Location"]
    # staff: GET is not allowed, and a POST without the CSRF token is refused
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.get(URL).status_code == 405
    assert strict.post(URL, {"preview_user": "u1", "preview_policy": policy.pk}).status_code == 403


def test_change_and_add_forms_embed_the_preview_panel(admin_client, policy):
    for url in (f"/admin/recommender/exposurepolicy/{policy.pk}/change/", "/admin/recommender/exposurepolicy/add/"):
        html = admin_client.get(url).content.decode()
        assert 'id="policy-preview"' in html and 'data-url="/admin/insights/policy-preview/"' in html, url
    assert f'data-policy="{policy.pk}"' in admin_client.get(f"/admin/recommender/exposurepolicy/{policy.pk}/change/").content.decode()
