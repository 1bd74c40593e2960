"""Exposure spreading from the admin to served lists: set once, rotates the tail's places."""
from __future__ import annotations

import pytest

from recommender.models import ExposurePolicy
from recommender.ranking.policy import REASON_SPREAD
from recommender.serving import impressions
from recommender.serving.policies import BUILT_IN

pytestmark = pytest.mark.django_db

USER = "/api/v1/recommendations/users/{}"
C1_USERS = ("u1", "u5", "u9")  # same taste (category c1), each their own seed


def served(api, user: str, k: int = 4) -> tuple[list[str], list[list[str]]]:
    body = api.get(USER.format(user), {"k": k}).json()
    return [i["item_id"] for i in body["items"]], [i["reasons"] for i in body["items"]]


def all_tail_policy(spreading: float) -> ExposurePolicy:
    return ExposurePolicy.objects.create(
        name="all tail", is_default=True, tail_boost=0.0, min_tail_share=1.0, exposure_spreading=spreading
    )


def change_form(policy: ExposurePolicy, **changes) -> dict:
    data = {
        "name": policy.name, "is_default": "on", "head_share": policy.head_share,
        "head_window_days": policy.head_window_days, "tail_boost": policy.tail_boost,
        "min_tail_share": policy.min_tail_share, "diversity": policy.diversity,
        "exposure_spreading": policy.exposure_spreading, "exploration_slots": policy.exploration_slots,
        "exclude_purchased": "on", "daily_impression_cap": "",
    }
    for prefix in ("promotions", "rules"):
        data |= {f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0,
                 f"{prefix}-MIN_NUM_FORMS": 0, f"{prefix}-MAX_NUM_FORMS": 1000}
    return data | changes


def test_built_in_policy_carries_the_model_default():
    assert BUILT_IN.exposure_spreading == ExposurePolicy._meta.get_field("exposure_spreading").default


def test_spreading_set_in_the_admin_reaches_the_served_lists(admin_client, api, model, clock):
    # given all-tail lists without spreading: shoppers of one taste see the same tail items
    policy = all_tail_policy(0.0)
    before = {u: served(api, u) for u in C1_USERS}
    assert not any(REASON_SPREAD in r for _, reasons in before.values() for r in reasons)
    # when a merchandiser sets exposure_spreading to 1 in the admin
    r = admin_client.post(
        f"/admin/recommender/exposurepolicy/{policy.pk}/change/", change_form(policy, exposure_spreading=1.0)
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    policy.refresh_from_db()
    assert policy.exposure_spreading == 1.0
    clock.advance(2.1)  # past the policy check interval
    after = {u: served(api, u) for u in C1_USERS}
    # then the same shoppers together see more distinct tail items, and say why
    union_before = {i for ids, _ in before.values() for i in ids}
    union_after = {i for ids, _ in after.values() for i in ids}
    assert len(union_after) > len(union_before), (before, after)
    assert any(REASON_SPREAD in r for _, reasons in after.values() for r in reasons)
    # and a shopper who asks again (no new impressions) gets the same list
    assert all(served(api, u) == after[u] for u in C1_USERS)


def test_the_admin_rejects_spreading_outside_zero_to_one(admin_client, model):
    policy = all_tail_policy(0.0)
    r = admin_client.post(
        f"/admin/recommender/exposurepolicy/{policy.pk}/change/", change_form(policy, exposure_spreading=1.5)
    )
    assert r.status_code == 200 and "less than or equal to 1" in r.content.decode()
    policy.refresh_from_db()
    assert policy.exposure_spreading == 0.0


@pytest.mark.parametrize("spreading, rotates", [(1.0, True), (0.0, False)])
def test_items_shown_today_give_way_with_spreading_on(api, model, clock, spreading, rotates):
    # given a shopper served once
    all_tail_policy(spreading)
    first, _ = served(api, "u1")
    # when those impressions are written and the serving process reads them again
    impressions.flush()
    clock.advance(11)
    second, reasons = served(api, "u1")
    # then with spreading on, close tail items not shown yet take some of the places
    if rotates:
        assert set(second) != set(first), (first, second)
        assert any(REASON_SPREAD in r for r in reasons)
    else:
        assert second == first


def test_the_live_preview_shows_an_unsaved_spreading_edit(model):
    from recommender.serving.preview import preview_policy

    # given an all-tail policy without spreading
    policy = all_tail_policy(0.0)
    # when the preview applies exposure_spreading = 1 (not saved)
    preview = preview_policy("u1", policy.pk, {"exposure_spreading": 1.0})
    # then it is reported as the change, and the tail places may only rotate: same segments
    assert preview.changed == {"exposure_spreading": (0.0, 1.0)}
    assert [i["segment"] for i in preview.after.items] == [i["segment"] for i in preview.before.items]
    policy.refresh_from_db()
    assert policy.exposure_spreading == 0.0, "a preview saves nothing"
