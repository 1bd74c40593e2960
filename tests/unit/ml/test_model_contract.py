"""One contract suite, run against every model (after implicit's shared test mixin).

Given the tiny two-cluster shop of conftest, when a model is fitted, then its lists have the
right shape, are best-first, honour ``exclude`` and ``candidates``, hold no duplicates,
survive a save/load round trip unchanged, are reproducible from ``random_state``, and
``similar_items`` never returns the item itself. The project's main model joins the suite
as soon as ``recommender.ml.hybrid`` is importable (it may set ``test_params`` for a fast fit).
"""
from __future__ import annotations

import numpy as np
import pytest

from recommender.ml import baselines as B
from recommender.ml.base import Recommender

from ml_testdata import N_COLD, N_ITEMS

COLD = np.arange(N_ITEMS - N_COLD, N_ITEMS)

FACTORIES = {
    "most_popular": lambda rs: B.MostPopular(random_state=rs),
    "recent_pop": lambda rs: B.RecentPop(random_state=rs, window_days=30),
    "item_knn": lambda rs: B.ItemKNN(random_state=rs, neighbours=10),
    "ease": lambda rs: B.EASE(random_state=rs, l2=5.0),
    "als": lambda rs: B.ALS(random_state=rs, factors=8, iterations=5, regularization=0.1, alpha=2.0),
    "bpr": lambda rs: B.BPR(random_state=rs, factors=8, iterations=30, learning_rate=0.05),
    "content_only": lambda rs: B.ContentOnly(random_state=rs, half_life_days=30),
    "rerank": lambda rs: B.PopularityPenalisedRerank(random_state=rs, base=B.EASE(l2=5.0), alpha=0.5, depth=30),
}
#: Models that learn each user's taste (the popularity peers give everyone one list).
PERSONALISED = {"item_knn", "ease", "als", "bpr", "content_only", "rerank"}
#: Models that can score items with no training events.
SCORES_COLD = {"content_only"}

try:  # the main model joins the suite once it exists
    from recommender.ml.hybrid import HybridSequentialModel
except Exception:  # pragma: no cover - depends on another file's progress
    HybridSequentialModel = None
else:
    FACTORIES["main"] = lambda rs: HybridSequentialModel(
        random_state=rs, **getattr(HybridSequentialModel, "test_params", {})
    )
    PERSONALISED.add("main")
    SCORES_COLD.add("main")


@pytest.fixture(
    params=[pytest.param(n, marks=pytest.mark.slow) if n == "main" else n for n in sorted(FACTORIES)],
    scope="module",
)
def name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def fitted(name, synthetic) -> Recommender:
    data, _ = synthetic
    return FACTORIES[name](0).fit(data)


def _user_items(data, users):
    return [np.unique(data.item[data.user == u]) for u in users]


def test_lists_have_shape_and_dtypes(fitted, synthetic):
    data, _ = synthetic
    users = np.arange(data.n_users)
    ids, scores = fitted.recommend(users, k=7)
    assert ids.shape == (data.n_users, 7) and scores.shape == (data.n_users, 7)
    assert np.issubdtype(ids.dtype, np.integer)
    assert scores.dtype == np.float32
    assert ((ids >= 0) & (ids < data.n_items)).all(), "every list can be filled from 40 items"


def test_lists_are_best_first(fitted, synthetic):
    data, _ = synthetic
    ids, scores = fitted.recommend(np.arange(data.n_users), k=10)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_no_duplicates(fitted, synthetic):
    data, _ = synthetic
    ids, _ = fitted.recommend(np.arange(data.n_users), k=25)
    for row in ids:
        real = row[row >= 0]
        assert len(np.unique(real)) == len(real)


def test_exclude_is_honoured(fitted, synthetic):
    data, _ = synthetic
    users = np.arange(data.n_users)
    exclude = _user_items(data, users)
    ids, _ = fitted.recommend(users, k=10, exclude=exclude)
    for row, ex in zip(ids, exclude):
        assert not np.isin(row, ex).any()


def test_candidates_are_honoured_and_short_lists_pad(fitted, synthetic):
    data, _ = synthetic
    users = np.arange(data.n_users)
    cands = np.array([1, 4, 19, 20, 33, 37])
    ids, scores = fitted.recommend(users, k=10, candidates=cands)
    assert np.isin(ids[:, :6], cands).all()
    assert (ids[:, 6:] == -1).all() and np.isneginf(scores[:, 6:]).all()


def test_exclude_and_candidates_together(fitted, synthetic):
    data, _ = synthetic
    users = np.array([0, 25])
    cands = np.arange(0, 30)
    exclude = _user_items(data, users)
    ids, _ = fitted.recommend(users, k=20, exclude=exclude, candidates=cands)
    for row, ex in zip(ids, exclude):
        real = row[row >= 0]
        assert np.isin(real, cands).all() and not np.isin(real, ex).any()
        assert len(real) == min(20, len(np.setdiff1d(cands, ex)))


def test_cold_items_do_not_crash_and_are_scored_when_possible(name, fitted, synthetic):
    data, _ = synthetic
    ids, scores = fitted.recommend(np.arange(data.n_users), k=N_COLD, candidates=COLD)
    assert np.isin(ids[ids >= 0], COLD).all()
    if name in SCORES_COLD:
        assert (ids >= 0).all() and np.isfinite(scores).all()


def test_save_load_round_trip_gives_identical_lists(name, fitted, synthetic, tmp_path):
    data, _ = synthetic
    fitted.save(tmp_path / "model")
    assert not list((tmp_path / "model").rglob("*.pkl")), "models are saved without pickle"
    loaded = type(fitted).load(tmp_path / "model")
    users = np.arange(data.n_users)
    exclude = _user_items(data, users)
    a_ids, a_sc = fitted.recommend(users, k=10, exclude=exclude)
    b_ids, b_sc = loaded.recommend(users, k=10, exclude=exclude)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_allclose(a_sc, b_sc, rtol=1e-5)
    a_sim, _ = fitted.similar_items(np.arange(5), k=5)
    b_sim, _ = loaded.similar_items(np.arange(5), k=5)
    np.testing.assert_array_equal(a_sim, b_sim)


def test_load_refuses_another_kind(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    other = B.MostPopular if not isinstance(fitted, B.MostPopular) else B.EASE
    with pytest.raises(ValueError, match="holds a"):
        other.load(tmp_path / "model")


def test_fit_returns_self_and_random_state_makes_fits_reproducible(name, fitted, synthetic):
    data, _ = synthetic
    users = np.arange(data.n_users)
    again = FACTORIES[name](0)  # same random_state as the ``fitted`` fixture
    assert again.fit(data) is again
    a, _ = fitted.recommend(users, k=10)
    b, _ = again.recommend(users, k=10)
    np.testing.assert_array_equal(a, b)


def test_similar_items_never_returns_the_item_itself(fitted, synthetic):
    data, _ = synthetic
    items = np.arange(data.n_items)
    ids, scores = fitted.similar_items(items, k=8)
    assert ids.shape == (data.n_items, 8) and scores.shape == (data.n_items, 8)
    assert not (ids == items[:, None]).any()
    for row in ids:
        real = row[row >= 0]
        assert len(np.unique(real)) == len(real)


def test_similar_items_honours_candidates(fitted):
    cands = np.array([2, 3, 5, 30])
    ids, _ = fitted.similar_items(np.array([2, 30]), k=4, candidates=cands)
    assert np.isin(ids[ids >= 0], cands).all()
    assert ids[0, 3] == -1 and ids[1, 3] == -1, "the item itself is never among its similar items"


@pytest.mark.parametrize("name", sorted(n for n in FACTORIES if n in PERSONALISED), scope="module")
def test_personalised_models_learn_the_clusters(name, fitted, synthetic):
    # Popularity peers give everyone the same list, so only personalised models are asked.
    data, cluster = synthetic
    users = np.arange(data.n_users)
    user_cluster = (users >= data.n_users // 2).astype(int)
    ids, _ = fitted.recommend(users, k=5, exclude=_user_items(data, users))
    same = cluster[ids] == user_cluster[:, None]
    assert same.mean() >= 0.8, f"only {same.mean():.0%} of the top 5 match the user's cluster"


@pytest.mark.parametrize("name", sorted(n for n in FACTORIES if n not in SCORES_COLD), scope="module")
def test_collaborative_models_rank_cold_items_last(name, fitted, synthetic):
    # Models that score cold items from their text are checked by their own cold-start tests.
    data, _ = synthetic
    ids, _ = fitted.recommend(np.arange(data.n_users), k=10)
    assert not np.isin(ids, COLD).any()


@pytest.mark.parametrize("name", sorted(n for n in FACTORIES if n != "main"))
def test_unfitted_model_says_so(name):
    # The main model's own tests cover its errors.
    model = FACTORIES[name](0)
    with pytest.raises(RuntimeError, match="fit"):
        model.recommend(np.array([0]), k=3)


#: Models with recommendation-time parameters that ``evaluate.calibrate`` sets after fitting.
CALIBRATED = sorted(n for n in FACTORIES if type(FACTORIES[n](0)).calibration_grid)


@pytest.mark.parametrize("name", CALIBRATED, scope="module")
def test_calibration_parameters_are_only_read_when_recommending(name, fitted, synthetic):
    # Calibration sets them on a model fitted with other values: that must give exactly the
    # lists of a model fitted with them, or the calibrated value would not be what is served.
    data, _ = synthetic
    users = np.arange(data.n_users)
    for param, values in type(fitted).calibration_grid.items():
        start = fitted.params[param]
        for value in [v for v in values if v != start][:2]:
            refit = type(fitted)(random_state=0, **{**fitted.params, param: value}).fit(data)
            fitted.params[param] = value
            try:
                a_ids, a_sc = fitted.recommend(users, k=10)
            finally:
                fitted.params[param] = start
            b_ids, b_sc = refit.recommend(users, k=10)
            np.testing.assert_array_equal(a_ids, b_ids)
            np.testing.assert_allclose(a_sc, b_sc, rtol=1e-5)
