"""What a serving process does for its own speed: the history query's plan, the frozen collector."""
from __future__ import annotations

import gc
import uuid

import pytest

from recommender.models import Event, EventType, ShopUser
from recommender.serving import impressions
from recommender.serving.services import _HISTORY_LATERAL, _history
from recommender.serving.state import get_state
from tests.conftest import require_postgres

from .pg_plans import explain, leave_only_index
from .serving_data import write_version

pytestmark = pytest.mark.django_db

USER = "/api/v1/recommendations/users/{}"


def test_history_query_reads_the_partial_covering_index_and_never_impressions(api, model):
    require_postgres()  # the serving history query is PostgreSQL's (LATERAL)
    # u1 has been shown many lists: hundreds of impression rows newer than any of their events.
    for _ in range(15):
        assert api.get(USER.format("u1") + "?k=20").status_code == 200
    impressions.flush()
    user = ShopUser.objects.get(external_id="u1")
    assert Event.objects.filter(user=user, event_type=EventType.IMPRESSION).count() >= 200

    leave_only_index("rec_event_user_history")
    plan = explain(_HISTORY_LATERAL, [50, "u1"])
    assert "Index Only Scan Backward using rec_event_user_history" in plan, plan

    space = get_state().current()[0]
    user_pk, items, codes = _history("u1", space)
    assert user_pk == user.pk
    expected = list(
        Event.objects.filter(user=user).exclude(event_type=EventType.IMPRESSION)
        .order_by("-timestamp").values_list("item_id", "event_type")[:50]
    )
    assert [int(space.index.item_pks[i]) for i in items] == [pk for pk, _ in expected]
    assert codes.tolist() == [t for _, t in expected]
    assert EventType.IMPRESSION not in codes.tolist()


@pytest.fixture
def freezing(serving_settings):
    serving_settings.RECOMMENDER = {**serving_settings.RECOMMENDER, "SERVING_GC_FREEZE": True}
    gc.unfreeze()
    yield
    gc.unfreeze()  # hand this process's objects back to the collector for the rest of the suite


def test_first_load_and_each_swap_freeze_what_is_alive(api, model, freezing, clock, tmp_path):
    assert gc.get_freeze_count() == 0
    assert api.get(USER.format("u1")).status_code == 200
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # Django, the app, the loaded space
    loaded = get_state().current()[0]
    assert gc.is_tracked(loaded) and gc.is_tracked(loaded.catalog)
    # The loaded space is out of the collector's generations now.
    assert not any(o is loaded or o is loaded.catalog for o in gc.get_objects())

    marker = [uuid.uuid4()]  # allocated after the first freeze: still collected as usual
    assert any(o is marker for o in gc.get_objects())
    write_version(tmp_path / "artifacts", "v2", seed=1)
    clock.advance(5)
    assert api.get(USER.format("u1")).json()["model_version"] == "v2"
    assert gc.get_freeze_count() > frozen
    swapped = get_state().current()[0]
    assert swapped is not loaded
    assert not any(o is swapped for o in gc.get_objects())


def test_without_the_setting_nothing_is_frozen(api, model):
    gc.unfreeze()
    assert api.get(USER.format("u1")).status_code == 200
    assert gc.get_freeze_count() == 0
