"""Interest segments (recommender.ml.segments): planted tastes are found and described."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from recommender.ml.base import EVENT_CODES, Interactions
from recommender.ml.segments import (
    InterestSegments,
    describe_segments,
    fit_segments,
    user_interest_vectors,
)

DAY = 86_400
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
T_NOW = int(NOW.timestamp())

#: Three tastes, each with its own words, plus best-sellers that every shopper buys.
TASTES = {
    "kitchen": (["ceramic", "mug"], ["teapot", "saucer", "espresso", "jug"], "Home > Kitchen"),
    "yoga": (["yoga", "mat"], ["cork", "strap", "bolster", "block"], "Sport > Yoga"),
    "cycling": (["bike", "light"], ["saddle", "pump", "helmet", "bell"], "Sport > Cycling"),
}
GENERIC_TITLES = ["gift card voucher", "gift wrap voucher", "gift bag voucher"]
PER_TASTE_ITEMS, PER_TASTE_USERS, DIM = 12, 40, 24


def planted_shop(seed: int = 0):
    """Items of three tastes (text vectors near the taste's direction) and users with one taste each.

    Returns
    -------
    data, titles (n_items,), categories (n_items,), user taste (n_users,), item taste (n_items,)
    (-1 for the generic best-sellers)
    """
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0][:4]  # orthonormal: 3 tastes + generic
    titles, cats, item_taste, vecs = [], [], [], []
    for t, (core, extra, cat) in enumerate(TASTES.values()):
        for j in range(PER_TASTE_ITEMS):
            # numbers and stop words in titles must never become terms
            titles.append(f"The {core[j % 2]} {extra[j % 4]} {core[(j + 1) % 2]} {100 + j}ml no. {j}")
            cats.append(cat)
            item_taste.append(t)
            vecs.append(directions[t] + 0.15 * rng.normal(size=DIM))
    for title in GENERIC_TITLES:
        titles.append(title)
        cats.append("Gifts")
        item_taste.append(-1)
        vecs.append(directions[3] + 0.15 * rng.normal(size=DIM))
    item_taste = np.array(item_taste)
    n_items = len(titles)
    generic = np.flatnonzero(item_taste == -1)

    user, item, ts = [], [], []
    user_taste = np.repeat(np.arange(3), PER_TASTE_USERS)
    for u, t in enumerate(user_taste):
        own = rng.choice(np.flatnonzero(item_taste == t), size=6, replace=False)
        for i in list(own) + list(rng.choice(generic, size=2, replace=False)):
            user.append(u)
            item.append(i)
            ts.append(T_NOW - int(rng.integers(0, 20 * DAY)))
    order = np.argsort(ts, kind="stable")
    vecs = np.asarray(vecs, dtype=np.float32)
    data = Interactions(
        user=np.asarray(user, dtype=np.int32)[order],
        item=np.asarray(item, dtype=np.int32)[order],
        timestamp=np.asarray(ts, dtype=np.int64)[order],
        n_users=len(user_taste),
        n_items=n_items,
        event_type=np.full(len(user), EVENT_CODES["view"], dtype=np.int8),
        item_text=vecs / np.linalg.norm(vecs, axis=1, keepdims=True),
        item_ids=np.array([f"sku-{i}" for i in range(n_items)], dtype=object),
    )
    return data, np.array(titles, dtype=object), np.array(cats, dtype=object), user_taste, item_taste


@pytest.fixture(scope="module")
def shop():
    return planted_shop()


@pytest.fixture(scope="module")
def fitted(shop):
    data, titles, cats, _, _ = shop
    vectors = user_interest_vectors(data, now=NOW, half_life_days=30)
    return fit_segments(vectors, data, k=None, k_range=range(2, 7), titles=titles, categories=cats, random_state=0)


def test_planted_tastes_are_recovered(shop, fitted):
    _, _, _, user_taste, _ = shop
    # then silhouette picks k = 3 and each segment is exactly one planted taste
    assert fitted.k == 3
    assert set(fitted.silhouette) == {2, 3, 4, 5, 6}
    assert max(fitted.silhouette, key=fitted.silhouette.get) == 3
    pairs = set(zip(user_taste.tolist(), fitted.labels.tolist()))
    assert len(pairs) == 3 and len({s for _, s in pairs}) == 3
    assert [s.size for s in fitted.segments] == [PER_TASTE_USERS] * 3


def test_labels_name_the_planted_terms_not_the_best_sellers(shop, fitted):
    _, _, _, user_taste, item_taste = shop
    for taste, (core, extra, cat) in enumerate(TASTES.values()):
        seg = fitted.segments[fitted.labels[user_taste == taste][0]]
        words = set(core) | set(extra)
        label_terms = seg.label.split(", ")
        assert 2 <= len(label_terms) <= 3 and set(label_terms) <= words, seg.label
        assert {t["term"] for t in seg.top_terms[:2]} == set(core)
        listed = [t["term"] for t in seg.top_terms]
        # every shopper buys two gifts: "gift" and "voucher" are not distinctive of anyone;
        # a chance excess of "card", "wrap" or "bag" may be listed, but after the taste's words
        assert "gift" not in listed and "voucher" not in listed
        assert set(listed[: len(words)]) == words
        assert not {"the", "no", "ml"} & set(listed)
        assert not any(ch.isdigit() for t in seg.top_terms for ch in t["term"])
        assert seg.top_categories[0]["category"] == cat
        # every listed item is distinctive (lift > 1) and of the segment's taste
        assert seg.top_items and all(it["lift"] > 1 for it in seg.top_items)
        assert all(item_taste[it["item"]] == taste for it in seg.top_items)
        assert seg.top_items[0]["item_id"] == f"sku-{seg.top_items[0]['item']}"


def test_segments_are_numbered_largest_first():
    data, titles, cats, user_taste, _ = planted_shop(seed=1)
    vectors = user_interest_vectors(data, now=NOW)
    # drop half of the yoga shoppers: that segment becomes the smallest
    keep = ~((user_taste == 1) & (np.arange(len(user_taste)) % 2 == 0))
    users = np.flatnonzero(keep)
    segs = fit_segments(vectors[users], data, users=users, k=3, titles=titles, random_state=0)
    assert [s.size for s in segs.segments] == [40, 40, 20]
    assert "yoga" in segs.segments[2].label or "mat" in segs.segments[2].label


def test_assign_sends_new_users_to_their_taste(shop, fitted):
    data, _, _, user_taste, item_taste = shop
    rng = np.random.default_rng(7)
    new = []
    for taste in range(3):
        items = rng.choice(np.flatnonzero(item_taste == taste), size=3, replace=False)
        new.append(data.item_text[items].mean(axis=0))
    new.append(np.zeros(DIM, dtype=np.float32))  # a user without history
    got = fitted.assign(np.asarray(new))
    want = [fitted.labels[user_taste == t][0] for t in range(3)] + [-1]
    assert got.tolist() == want
    # and assignment of the clustered users reproduces their labels
    vectors = user_interest_vectors(data, now=NOW, half_life_days=30)
    assert fitted.assign(vectors).tolist() == fitted.labels.tolist()


def test_save_and_load_round_trip_without_pickle(tmp_path, shop, fitted):
    data, *_ = shop
    fitted.save(tmp_path / "segments")
    assert sorted(p.name for p in (tmp_path / "segments").iterdir()) == [
        "centroids.npy", "labels.npy", "segments.json", "users.npy",
    ]
    loaded = InterestSegments.load(tmp_path / "segments")
    assert loaded.k == 3 and loaded.silhouette == fitted.silhouette
    assert [s.as_dict() for s in loaded.segments] == [s.as_dict() for s in fitted.segments]
    vectors = user_interest_vectors(data, now=NOW, half_life_days=30)
    assert loaded.assign(vectors).tolist() == fitted.assign(vectors).tolist()
    np.save(tmp_path / "segments" / "centroids.npy", loaded.centroids[:2])
    with pytest.raises(ValueError, match="two different fits"):
        InterestSegments.load(tmp_path / "segments")


def test_interest_vector_is_the_recency_weighted_mean():
    # given one user who viewed item 0 sixty days ago and item 1 today, and a user with nothing
    x = np.eye(3, dtype=np.float32)
    data = Interactions(
        user=np.array([0, 0, 0], dtype=np.int32),
        item=np.array([0, 1, 2], dtype=np.int32),
        timestamp=np.array([T_NOW - 60 * DAY, T_NOW, T_NOW], dtype=np.int64),
        n_users=2,
        n_items=3,
        event_type=np.array([EVENT_CODES["view"], EVENT_CODES["view"], EVENT_CODES["impression"]], dtype=np.int8),
    )
    # when the half-life is 60 days, the old view counts half; impressions never count
    v = user_interest_vectors(data, x, now=NOW, half_life_days=60)
    np.testing.assert_allclose(v[0], [0.5 / 1.5, 1 / 1.5, 0.0], rtol=1e-6)
    assert not v[1].any()
    # without decay it is the plain mean
    np.testing.assert_allclose(user_interest_vectors(data, x, half_life_days=None)[0], [0.5, 0.5, 0.0])


def test_users_without_history_are_not_clustered(shop):
    data, titles, *_ = shop
    vectors = user_interest_vectors(data, now=NOW)
    vectors[:5] = 0.0
    segs = fit_segments(vectors, data, k=3, titles=titles)
    assert segs.labels[:5].tolist() == [-1] * 5
    assert (segs.labels[5:] >= 0).all()
    assert sum(s.size for s in segs.segments) == len(vectors) - 5


def test_bad_k_and_shapes_fail_with_a_clear_message(shop):
    data, *_ = shop
    vectors = user_interest_vectors(data, now=NOW)
    with pytest.raises(ValueError, match="k=500"):
        fit_segments(vectors, data, k=500)
    with pytest.raises(ValueError, match="pass users="):
        fit_segments(vectors[:10], data, k=2)
    with pytest.raises(ValueError, match=r"\(n, 24\)"):
        fit_segments(vectors, data, k=2).assign(np.zeros((2, 5)))


def test_description_falls_back_without_titles():
    data = Interactions(
        user=np.array([0, 0, 1, 1], dtype=np.int32),
        item=np.array([0, 0, 1, 1], dtype=np.int32),
        timestamp=np.full(4, T_NOW, dtype=np.int64),
        n_users=2,
        n_items=2,
    )
    segs = describe_segments(data, np.array([0, 1]), np.array([0, 1]), 2, categories=["Mugs", ""])
    assert segs[0].label == "Mugs" and segs[1].label == "segment 1"
    assert segs[0].top_items[0] == {"item": 0, "item_id": None, "title": None, "count": 2, "lift": 2.0}
