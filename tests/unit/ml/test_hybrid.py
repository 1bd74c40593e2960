"""HybridSequentialModel on the tiny two-cluster shop of conftest (plus variants made here).

Given users 0-19 who buy cluster-A items and users 20-39 who buy cluster-B items, items
36-39 cold (text only), when the model is fitted, then it ranks each user's own cluster
first, places cold items by their text, serves the same ranking from exported vectors,
and survives save/load bit for bit.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from ml_testdata import N_COLD, N_ITEMS, N_USERS

from recommender.ml.base import EVENT_CODES
from recommender.ml.hybrid import HybridSequentialModel

COLD = np.arange(N_ITEMS - N_COLD, N_ITEMS)
FAST = HybridSequentialModel.test_params
USERS = np.arange(N_USERS)
A_USERS, B_USERS = USERS[: N_USERS // 2], USERS[N_USERS // 2 :]


def _user_items(data, users):
    return [np.unique(data.item[data.user == u]) for u in users]


@pytest.fixture(scope="module")
def twin_data(synthetic):
    """The synthetic shop where cold item 36 has the text of cluster A's best seller and
    cold item 38 that of cluster B's best seller."""
    data, cluster = synthetic
    pop = np.bincount(data.item, minlength=N_ITEMS)
    best_a = int(np.argmax(np.where(cluster[:36] == 0, pop[:36], -1)))
    best_b = int(np.argmax(np.where(cluster[:36] == 1, pop[:36], -1)))
    text = data.item_text.copy()
    text[36], text[38] = text[best_a], text[best_b]
    return dataclasses.replace(data, item_text=text), cluster, best_a, best_b


@pytest.fixture(scope="module")
def model(twin_data):
    data, *_ = twin_data
    return HybridSequentialModel(random_state=0, **FAST).fit(data)


def test_lists_have_shape_and_respect_exclude_and_candidates(model, twin_data):
    data, *_ = twin_data
    exclude = _user_items(data, USERS)
    cands = np.array([0, 3, 18, 21, 36, 38, 39])
    ids, scores = model.recommend(USERS, k=9, exclude=exclude, candidates=cands)
    assert ids.shape == (N_USERS, 9) and scores.dtype == np.float32
    for row, sc, ex in zip(ids, scores, exclude):
        real = row[row >= 0]
        allowed = np.setdiff1d(cands, ex)
        assert len(real) == len(allowed) and set(real) == set(allowed)
        assert len(np.unique(real)) == len(real)
        assert (row[len(real) :] == -1).all() and np.isneginf(sc[len(real) :]).all()
        assert (np.diff(sc[: len(real)]) <= 0).all()


def test_users_get_their_own_cluster(model, twin_data):
    data, cluster, *_ = twin_data
    ids, _ = model.recommend(USERS, k=5, exclude=_user_items(data, USERS))
    user_cluster = (USERS >= N_USERS // 2).astype(int)
    assert (cluster[ids] == user_cluster[:, None]).mean() >= 0.8


def test_cold_items_are_scored_from_text_and_the_users_cluster_comes_first(model):
    ids, scores = model.recommend(USERS, k=N_COLD, candidates=COLD)
    assert np.isfinite(scores).all()
    assert np.isin(ids[A_USERS, 0], [36, 37]).mean() >= 0.9
    assert np.isin(ids[B_USERS, 0], [38, 39]).mean() >= 0.9


@pytest.mark.parametrize("users, twin, other", [(A_USERS, 36, 1), (B_USERS, 38, 0)])
def test_cold_twin_of_a_best_seller_ranks_high_for_its_cluster(
    model, twin_data, users, twin, other
):
    data, cluster, *_ = twin_data
    ids, _ = model.recommend(users, k=N_ITEMS, exclude=_user_items(data, users))
    ranks, beaten = [], []
    for row in ids:
        row = row[row >= 0]
        rank = int(np.flatnonzero(row == twin)[0])
        ranks.append(rank)
        beaten.append((cluster[row[rank + 1 :]] == other).sum() / (cluster[row] == other).sum())
    assert np.mean(beaten) >= 0.9, "the cold twin should outrank the other cluster's items"
    assert np.median(ranks) <= 10, f"the cold twin should be near the top, ranks {ranks}"


def test_exported_vectors_reproduce_scores_and_ranking(model):
    item_vecs, user_vecs = model.item_vectors(), model.user_vectors()
    assert item_vecs.dtype == np.float32 and user_vecs.dtype == np.float32
    assert item_vecs.shape[0] == N_ITEMS and user_vecs.shape == (N_USERS, item_vecs.shape[1])
    ids, scores = model.recommend(USERS, k=10)
    dot = user_vecs @ item_vecs.T
    np.testing.assert_allclose(np.take_along_axis(dot, ids, 1), scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.argsort(-dot, axis=1, kind="stable")[:, :10], ids)


def test_same_seed_same_model_other_seed_other_model(twin_data, model):
    data, *_ = twin_data
    again = HybridSequentialModel(random_state=0, **FAST).fit(data)
    np.testing.assert_array_equal(again.user_vectors(), model.user_vectors())
    np.testing.assert_array_equal(again.item_vectors(), model.item_vectors())
    other = HybridSequentialModel(random_state=1, **FAST).fit(data)
    assert not np.allclose(other.item_vectors(), model.item_vectors())


def test_save_load_round_trip_is_identical_and_pickle_free(model, tmp_path):
    model.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert "params.json" in files and "weights.safetensors" in files
    assert not [f for f in files if f.endswith((".pkl", ".pt", ".pth"))]
    assert json.loads((tmp_path / "m" / "params.json").read_text())["kind"] == "hybrid-transformer"
    loaded = HybridSequentialModel.load(tmp_path / "m")
    a = model.recommend(USERS, k=10)
    b = loaded.recommend(USERS, k=10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(
        model.similar_items(USERS, k=5)[0], loaded.similar_items(USERS, k=5)[0]
    )
    seq = [np.array([1, 2, 3]), np.array([20, 21])]
    np.testing.assert_array_equal(
        model.recommend_sequences(seq, k=5)[0], loaded.recommend_sequences(seq, k=5)[0]
    )


def test_encoding_a_users_stored_history_gives_their_user_vector(model):
    items, types, ts = model.user_history(3)
    vec = model.encode_sequences([items], [types], [ts], now=model.fitted_until)
    np.testing.assert_allclose(vec[0], model.user_vectors()[3], rtol=1e-4, atol=1e-5)


def test_a_session_of_one_clusters_items_gets_that_cluster(model, twin_data):
    _, cluster, *_ = twin_data
    sessions = [np.array([0, 1, 2]), np.array([18, 19, 20])]
    types = [np.full(3, EVENT_CODES["view"]), np.full(3, EVENT_CODES["add_to_cart"])]
    ids, _ = model.recommend_sequences(sessions, types, k=5, exclude=sessions)
    assert (cluster[ids[0]] == 0).mean() >= 0.8
    assert (cluster[ids[1]] == 1).mean() >= 0.8
    assert not np.isin(ids[0], sessions[0]).any()


def test_items_added_after_training_are_scored_from_text(model, twin_data):
    data, _cluster, best_a, best_b = twin_data
    m = _copy(model)  # add_items changes the model in place
    new = m.add_items(np.stack([data.item_text[best_b], data.item_text[best_a]]))
    np.testing.assert_array_equal(new, [N_ITEMS, N_ITEMS + 1])
    assert m.item_vectors().shape[0] == N_ITEMS + 2
    ids, scores = m.recommend(USERS, k=2, candidates=new)
    assert np.isfinite(scores).all()
    assert (ids[A_USERS, 0] == N_ITEMS + 1).mean() >= 0.9
    assert (ids[B_USERS, 0] == N_ITEMS).mean() >= 0.9
    # a new item is scored exactly as a cold item with the same text
    _cold_ids, cold_scores = m.recommend(USERS, k=1, candidates=np.array([36]))
    _new_ids, new_scores = m.recommend(USERS, k=1, candidates=np.array([N_ITEMS + 1]))
    np.testing.assert_allclose(new_scores, cold_scores, rtol=1e-5, atol=1e-5)


def _copy(model):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        model.save(d)
        return HybridSequentialModel.load(d)


def test_similar_items_use_the_item_space(model, twin_data):
    _, cluster, best_a, _ = twin_data
    ids, _ = model.similar_items(np.array([best_a]), k=5)
    assert ids[0, 0] == 36, "the cold twin has the same text and no id part"
    assert (cluster[ids[0]] == 0).all()


def test_training_loss_goes_down(model):
    assert model.loss_history_[-1] < model.loss_history_[0]


def test_errors_say_what_to_change(twin_data, model):
    data, *_ = twin_data
    with pytest.raises(TypeError, match="unknown parameters"):
        HybridSequentialModel(dimension=3)
    with pytest.raises(ValueError, match="item_text"):
        HybridSequentialModel(**FAST).fit(dataclasses.replace(data, item_text=None))
    with pytest.raises(RuntimeError, match="fit"):
        HybridSequentialModel(**FAST).recommend(USERS, k=3)
    with pytest.raises(ValueError, match="add_items"):
        model.recommend_sequences([np.array([N_ITEMS + 5])], k=3)


def test_fit_time_is_recorded(model):
    assert model.fit_seconds_ is not None and model.fit_seconds_ > 0


def test_new_item_boost_lifts_exactly_the_items_without_events(model):
    boosted = _copy(model)
    boosted.params["new_item_boost"] = model.params["new_item_boost"] + 1.5
    diff = (
        boosted.user_vectors() @ boosted.item_vectors().T
        - model.user_vectors() @ model.item_vectors().T
    )
    np.testing.assert_allclose(diff[:, COLD], 1.5, atol=1e-4)
    np.testing.assert_allclose(diff[:, : N_ITEMS - N_COLD], 0.0, atol=1e-4)
    ids, _ = boosted.recommend(USERS, k=1, candidates=np.array([0, 36]))
    assert (ids[:, 0] == 36).mean() > (
        model.recommend(USERS, k=1, candidates=np.array([0, 36]))[0][:, 0] == 36
    ).mean()


def test_impressions_are_context_not_interactions(synthetic):
    """Given impressions of cold item 39 shown to every user, the item stays a new product
    (no interaction), and an impressed item is not treated as one the user already had."""
    data, _ = synthetic
    n = N_USERS
    last = int(data.timestamp.max())
    imp = dataclasses.replace(
        data,
        user=np.concatenate([data.user, USERS.astype(np.int32)]),
        item=np.concatenate([data.item, np.full(n, 39, np.int32)]),
        timestamp=np.concatenate([data.timestamp, np.full(n, last, np.int64)]),
        event_type=np.concatenate(
            [data.event_type, np.full(n, EVENT_CODES["impression"], np.int8)]
        ),
        weight=np.concatenate([data.weight, np.ones(n, np.float32)]),
    )
    m = HybridSequentialModel(random_state=0, **FAST).fit(imp)
    is_new = m.item_vectors()[:, m.params["n_models"] * m.params["dim"] + 3]
    np.testing.assert_array_equal(is_new[COLD], 1.0)
    np.testing.assert_array_equal(is_new[: N_ITEMS - N_COLD], 0.0)
    # each user's stored history ends with the impression, seen as context
    items, types, _ = m.user_history(0)
    assert items[-1] == 39 and types[-1] == EVENT_CODES["impression"]


def test_an_ensemble_scores_the_mean_of_its_members(twin_data, model, tmp_path):
    """Member 0 is the single model of the same seed, member 1 the one of seed + 1_000_003."""
    data, *_ = twin_data
    pair = HybridSequentialModel(random_state=0, **{**FAST, "n_models": 2}).fit(data)
    second = HybridSequentialModel(random_state=1_000_003, **FAST).fit(data)
    single = [m.user_vectors() @ m.item_vectors().T for m in (model, second)]
    both = pair.user_vectors() @ pair.item_vectors().T
    np.testing.assert_allclose(both, (single[0] + single[1]) / 2, rtol=1e-4, atol=1e-4)
    ids, scores = pair.recommend(USERS, k=10)
    np.testing.assert_allclose(np.take_along_axis(both, ids, 1), scores, rtol=1e-5, atol=1e-5)
    pair.save(tmp_path / "pair")
    loaded = HybridSequentialModel.load(tmp_path / "pair")
    np.testing.assert_array_equal(loaded.recommend(USERS, k=10)[0], ids)
    seq = [np.array([1, 2, 3])]
    np.testing.assert_array_equal(
        loaded.recommend_sequences(seq, k=5)[0], pair.recommend_sequences(seq, k=5)[0]
    )


def test_similarity_mask_drops_exactly_the_trend_columns(model):
    vecs = model.item_vectors()
    mask = model.similarity_mask()
    assert mask.shape == (vecs.shape[1],)
    dropped = np.flatnonzero(mask == 0)
    # the trend block (recent buyer counts and the new-product flag) sits after the id/text part
    start = model._item_table.shape[1]
    assert dropped.tolist() == list(range(start, start + model._item_feat.shape[1]))
    np.testing.assert_array_equal(vecs[:, dropped], model._item_feat)


def test_the_warmup_takes_at_most_a_tenth_of_a_short_log(synthetic):
    from recommender.ml.hybrid import DAY, WARMUP_MAX_SHARE

    data, _ = synthetic  # 120 days: a tenth is 12 days
    m = HybridSequentialModel(random_state=0, **{**FAST, "warmup_days": 30})
    m.n_items = data.n_items
    m._prepare(data)
    tenth = WARMUP_MAX_SHARE * (m._t_end - m._t_start)
    assert 11 * DAY < tenth < 13 * DAY
    cuts = m._examples(np.random.default_rng(0))[1]
    assert cuts.min() >= m._t_start + tenth and cuts.min() < m._t_start + 30 * DAY
    # a warmup shorter than a tenth of the log is kept as asked
    m.params["warmup_days"] = 5
    cuts = m._examples(np.random.default_rng(0))[1]
    assert m._t_start + 5 * DAY <= cuts.min() < m._t_start + tenth
