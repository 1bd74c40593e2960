"""The evaluation harness: tuning sees validation only, search finds the best, reports are written."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from ml_testdata import make_dataset
from recommender.ml import evaluate as E
from recommender.ml.base import Interactions, Recommender, topk


class Spy(Recommender):
    """Popularity scores plus ``quality`` noise; records the last timestamp of every fit."""

    kind = "spy-for-tests"
    fits: list[int] = []

    def __init__(self, random_state=0, quality: float = 0.0, **params: Any):
        super().__init__(random_state, quality=quality, **params)
        self.quality = quality

    def fit(self, data: Interactions):
        Spy.fits.append(int(data.timestamp.max()))
        pop = np.bincount(data.item, minlength=data.n_items).astype(np.float32)
        noise = np.random.default_rng(0).random(data.n_items).astype(np.float32) * pop.max()
        # quality 0 -> pure popularity, larger |quality - 0.3| -> more noise: best is 0.3
        self.scores_ = pop + abs(self.quality - 0.3) * 10 * noise
        return self

    def recommend(self, users, k=10, *, exclude=None, candidates=None):
        from recommender.ml.base import filter_scores

        sc = np.tile(self.scores_, (len(users), 1))
        filter_scores(sc, exclude, candidates)
        return topk(sc, k)

    def similar_items(self, items, k=10, *, candidates=None):
        return self.recommend(items, k, exclude=[np.array([i]) for i in items], candidates=candidates)

    def _state(self):
        return {"scores": self.scores_}

    def _set_state(self, arrays):
        self.scores_ = arrays["scores"]


@pytest.fixture
def dataset():
    return make_dataset()


def test_tuning_fits_on_validation_training_only_and_final_fit_on_training(dataset):
    Spy.fits = []
    method = E.Method("spy", Spy, {"quality": [0.0, 0.3, 1.0]})
    E.register(method)
    try:
        report = E.run(dataset, ["spy"], rerank_alphas=None, log=lambda s: None)
    finally:
        E.REGISTRY.pop("spy")
    from recommender.ml.protocol import temporal_split, validation_split

    split = temporal_split(dataset.interactions)
    val = validation_split(split)
    *tuning_fits, final_fit = Spy.fits
    assert len(tuning_fits) == 3
    assert all(t < val.cut for t in tuning_fits), "tuning never sees validation or test events"
    assert val.cut <= final_fit < split.cut, "the final fit sees training, not test"
    assert report.rows[0].params == {"quality": 0.3}


def test_grid_and_coordinate_search_find_the_best_point(dataset):
    from recommender.ml.protocol import temporal_split, validation_split

    val = validation_split(temporal_split(dataset.interactions))
    grid = {"quality": [0.0, 0.1, 0.3, 0.6, 1.0], "unused": [1, 2, 3]}
    best, trials = E.tune(E.Method("spy", Spy, grid), val, log=lambda s: None)
    assert best["quality"] == 0.3 and len(trials) == 15
    best_c, trials_c = E.tune(E.Method("spy", Spy, grid, search="coordinate"), val, log=lambda s: None)
    assert best_c["quality"] == 0.3 and len(trials_c) < 15


def test_a_failing_grid_point_loses_instead_of_stopping_the_run(dataset):
    from recommender.ml.protocol import temporal_split, validation_split

    class Fragile(Spy):
        kind = "fragile-for-tests"

        def fit(self, data):
            if self.quality > 0.5:
                raise FloatingPointError("NaN encountered in factors")
            return super().fit(data)

    val = validation_split(temporal_split(dataset.interactions))
    best, trials = E.tune(E.Method("f", Fragile, {"quality": [0.3, 1.0]}), val, log=lambda s: None)
    assert best == {"quality": 0.3} and len(trials) == 2


class Tunable(Spy):
    """Spy whose noise is added when recommending, by ``shift`` (best at 0.3): a calibration
    parameter. ``quality`` still acts at fit time."""

    kind = "tunable-for-tests"
    calibration_grid = {"shift": (0.0, 0.3, 1.0)}

    def __init__(self, random_state=0, shift: float = 1.0, **params: Any):
        super().__init__(random_state, **params)
        self.params["shift"] = shift

    def fit(self, data: Interactions):
        super().fit(data)
        pop = np.bincount(data.item, minlength=data.n_items).astype(np.float32)
        self.noise_ = np.random.default_rng(0).random(data.n_items).astype(np.float32) * pop.max()
        return self

    def recommend(self, users, k=10, *, exclude=None, candidates=None):
        from recommender.ml.base import filter_scores

        scores = self.scores_ + abs(self.params["shift"] - 0.3) * 10 * self.noise_
        sc = np.tile(scores, (len(users), 1))
        filter_scores(sc, exclude, candidates)
        return topk(sc, k)


@pytest.fixture
def val(dataset):
    from recommender.ml.protocol import temporal_split, validation_split

    return validation_split(temporal_split(dataset.interactions))


def test_calibrate_picks_the_best_value_on_the_fitted_model_without_refitting(val):
    Spy.fits = []
    model = Tunable(quality=0.3).fit(val.train)
    cal = E.calibrate(model, val, log=lambda s: None)
    assert len(Spy.fits) == 1, "calibration re-scores the fitted model; it never refits"
    assert cal.params == {"shift": 0.3} and model.params["shift"] == 0.3
    assert E.json_metrics(cal.metrics) == E.json_metrics(E.score_split(model, val))
    assert sorted(t.params["shift"] for t in cal.trials) == [0.0, 0.3, 1.0]
    noisy = next(t for t in cal.trials if t.params["shift"] == 1.0)
    assert noisy.metrics["NDCG@10"] < cal.metrics["NDCG@10"], "the values differ on this split"


def test_calibrate_keeps_what_the_caller_set_and_a_default_the_metric_cannot_tell_apart(val):
    model = Tunable(quality=0.3, shift=1.0).fit(val.train)
    cal = E.calibrate(model, val, keep=["shift"], log=lambda s: None)
    assert cal.params == {} and model.params["shift"] == 1.0 and cal.trials == []

    class Inert(Tunable):
        kind = "inert-for-tests"
        calibration_grid = {"unused": (0.0, 1.0, 2.0)}

        def __init__(self, random_state=0, unused: float = 1.0, **params: Any):
            super().__init__(random_state, **params)
            self.params["unused"] = unused

    inert = Inert(quality=0.3, shift=0.3, unused=2.0).fit(val.train)
    assert E.calibrate(inert, val, log=lambda s: None).params == {"unused": 2.0}


def test_tuning_carries_the_calibrated_value_into_the_refit(dataset, val):
    best, trials = E.tune(E.Method("t", Tunable, {"quality": [0.0, 0.3]}), val, log=lambda s: None)
    assert best == {"quality": 0.3, "shift": 0.3}
    assert len([t for t in trials if set(t.params) == {"quality", "shift"}]) == 2 + 2 * 3
    # a grid point that sets the calibration parameter itself is not calibrated (nor has an
    # "uncalibrated" row)
    fixed, _ = E.tune(E.Method("t", Tunable, {"shift": [1.0]}), val, log=lambda s: None)
    assert fixed == {"shift": 1.0}
    E.register(E.Method("set", Tunable, {"shift": [0.0]}))
    try:
        report = E.run(dataset, ["set"], rerank_alphas=None, log=lambda s: None)
    finally:
        E.REGISTRY.pop("set")
    assert [r.name for r in report.rows] == ["set"] and report.rows[0].params == {"shift": 0.0}
    E.register(E.Method("tunable", Tunable, {"quality": [0.3]}))
    try:
        report = E.run(dataset, ["tunable"], rerank_alphas=None, log=lambda s: None)
    finally:
        E.REGISTRY.pop("tunable")
    assert report.rows[0].params == {"quality": 0.3, "shift": 0.3}
    # and the same fit with the default shows on the test split what the calibration changed
    plain = report.rows[1]
    assert plain.name == "tunable, uncalibrated (shift=1.0)" and plain.params["shift"] == 1.0
    assert plain.metrics["NDCG@10"] < report.rows[0].metrics["NDCG@10"]
    assert len(report.rows) == 2


def test_json_metrics_store_undefined_values_as_null():
    assert E.json_metrics({"NDCG@10": 0.25, "ColdHit@20": float("nan"), "x": float("inf")}) == {
        "NDCG@10": 0.25, "ColdHit@20": None, "x": None,
    }


def test_edge_notes_flag_best_values_at_the_ends_of_numeric_lists():
    grid = {"l2": [1, 10, 100], "k": [5, 10], "kind": ["a", "b", "c"]}
    assert E.edge_notes(grid, {"l2": 100, "k": 5, "kind": "a"}) == ["l2=100 is on the edge of [1, 10, 100]"]
    assert E.edge_notes(grid, {"l2": 10, "k": 5, "kind": "c"}) == []


def test_run_writes_table_json_and_plot(dataset, tmp_path):
    rng = np.random.default_rng(0)
    text = rng.standard_normal((dataset.n_items, 8)).astype(np.float32)
    E.register_defaults()
    report = E.run(
        dataset,
        ["MostPopular", "RecentPop", "EASE", "ContentOnly"],
        item_text=text,
        rerank_alphas=(0.0, 0.5),
        log=lambda s: None,
    )
    paths = report.write(tmp_path)
    results = json.loads(paths["json"].read_text())
    best_peer = max((r for r in report.rows if r.name in ("RecentPop", "EASE", "ContentOnly")), key=lambda r: r.val_metric)
    assert set(results) == {"MostPopular", "RecentPop", "EASE", "ContentOnly",
                            f"{best_peer.name} + pop-penalty (alpha=0.0)", f"{best_peer.name} + pop-penalty (alpha=0.5)"}
    for name, metrics in results.items():
        assert 0.0 <= metrics["NDCG@10"] <= 1.0 and metrics["fit_s"] >= 0.0, name
        assert "ColdHit@20" in metrics  # null when there is no cold truth
    base = results[best_peer.name]
    assert results[f"{best_peer.name} + pop-penalty (alpha=0.0)"]["NDCG@10"] == pytest.approx(base["NDCG@10"])
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = paths["markdown"].read_text()
    assert "| EASE |" in table and "NDCG@10" in table and "fit s" in table
    tuning = json.loads(paths["tuning"].read_text())
    assert len(tuning["RecentPop"]["trials"]) == 4


def test_unknown_method_names_are_listed(dataset):
    E.register_defaults()
    with pytest.raises(ValueError, match="known"):
        E.run(dataset, ["NoSuchModel"], log=lambda s: None)


def test_bench_script_evaluates_an_interchange_folder(tmp_path):
    import csv
    import subprocess
    import sys

    from ml_testdata import REPO

    ds = make_dataset()
    data = tmp_path / "shop"
    data.mkdir()
    with (data / "items.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "price"])
        for iid, title, price in zip(ds.item_ids, ds.titles, ds.prices):
            w.writerow([iid, title, f"{price:.2f}"])
    inter = ds.interactions
    with (data / "events.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "event_type", "timestamp"])
        for u, i, t in zip(inter.user, inter.item, inter.timestamp):
            w.writerow([ds.user_ids[u], ds.item_ids[i], "purchase", int(t)])
        w.writerow(["u1", "i1", "purchase", "not a time"])  # reported, not fatal
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "offline_eval.py"), "--data-dir", str(data), "--out", str(out),
         "--methods", "MostPopular,EASE", "--json", str(tmp_path / "copy.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| EASE |" in proc.stdout
    assert "events.csv:" in proc.stderr and "not a time" in proc.stderr
    results = json.loads((tmp_path / "copy.json").read_text())
    assert {"MostPopular", "EASE"} <= set(results)
    assert (out / "ndcg_vs_aplt.png").exists() and (out / "results.md").exists()
    # --until evaluates as if the log had ended earlier; a date it cannot read is refused
    last = datetime.fromtimestamp(int(inter.timestamp[-1]), timezone.utc)
    until = (last - timedelta(days=20)).strftime("%Y-%m-%d")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "offline_eval.py"), "--data-dir", str(data), "--out", str(out),
         "--methods", "MostPopular", "--until", until],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"until {until}" in proc.stdout and f"-> {until}" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "offline_eval.py"), "--data-dir", str(data), "--out", str(out),
         "--methods", "MostPopular", "--until", "last week"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "YYYY-MM-DD" in proc.stderr


def test_exposure_policy_rows_of_the_projects_own_model(dataset, tmp_path):
    """A non-peer method gets the policy curve over tail_boost and the default-policy row, without refits."""
    Spy.fits = []
    E.register(E.Method("own", Spy, [{"quality": 1.0}], peer=False))  # continuous scores: no ties
    boosts = (0.0, 0.5, 1.0, 3.0)
    try:
        report = E.run(dataset, ["own"], rerank_alphas=None, policy_boosts=boosts, log=lambda s: None)
    finally:
        E.REGISTRY.pop("own")
    assert len(Spy.fits) == 2, "one tuning fit and one final fit: the policy rows reuse the fitted model"
    paths = report.write(tmp_path)
    results = json.loads(paths["json"].read_text())
    curve = [f"own + exposure policy (tail_boost={float(b)})" for b in boosts]
    spread = [f"own + exposure spreading (exposure_spreading={float(v)})" for v in E.POLICY_SPREADINGS]
    top = float(max(E.POLICY_SPREADINGS))
    ablations = [f"own + exposure spreading (exposure_spreading={top}, {w})" for w in ("impressions only", "noise only")]
    assert set(results) == {"own", *curve, "own + exposure policy (default)", *spread, *ablations}
    rows = {r.name: r for r in report.rows}
    assert all(rows[n].curve == "own + exposure policy" for n in curve)
    assert rows["own + exposure policy (default)"].params["tail_boost"] == E.DEFAULT_POLICY["tail_boost"]
    aplt = [results[n]["APLT@10"] for n in curve]
    assert all(b >= a - 1e-12 for a, b in zip(aplt, aplt[1:])), aplt
    assert aplt[-1] > results["own"]["APLT@10"], "a strong boost puts tail items in the lists"
    assert "own + exposure policy (default)" in paths["markdown"].read_text()
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Spreading rotates which tail items fill the tail's places, never how many there are:
    # the same APLT@10 at every strength, more items shown, exposure more even.
    assert all(rows[n].curve == "own + exposure spreading" for n in spread)
    assert {results[n]["APLT@10"] for n in spread + ablations} == {results[spread[0]]["APLT@10"]}
    off, on = results[spread[0]], results[spread[-1]]
    assert on["Coverage@10"] > off["Coverage@10"] and on["Gini@10"] < off["Gini@10"], (off, on)


def test_exposure_policy_without_rules_keeps_the_base_ranking(dataset):
    from recommender.ml.protocol import temporal_split
    from recommender.ranking.policy import PolicyConfig

    split = temporal_split(dataset.interactions)
    base = Spy(quality=1.0).fit(split.train)
    plain = E.PolicyRerank(base, PolicyConfig(tail_boost=0.0), split.head)
    want = E.recommend_split(base, split)
    got = E.recommend_split(plain, split)
    np.testing.assert_array_equal(got, want)
    boosted = E.recommend_split(E.PolicyRerank(base, PolicyConfig(tail_boost=3.0), split.head), split)
    assert split.tail[boosted[boosted >= 0]].mean() > split.tail[want[want >= 0]].mean()
    seen = [set(u) for u in boosted.tolist()]
    assert all(not (s & set(ex.tolist())) for s, ex in zip(seen, split.exclude)), "training items stay excluded"


class Fixed:
    """The same list for every user: 4 head items well ahead of 12 equal tail items."""

    n = 16

    def recommend(self, users, k=10, *, exclude=None, candidates=None):
        ids = np.tile(np.arange(self.n), (len(users), 1))[:, :k]
        scores = np.tile(np.r_[np.linspace(9, 8, 4), np.ones(self.n - 4)], (len(users), 1))[:, :k]
        return ids, scores.astype(np.float32)


def _serve_day(spreading, *, arrival=None, seed=None, users=np.arange(6)):
    is_head = np.arange(Fixed.n) < 4
    policy = E.policy_config(tail_boost=0.0, min_tail_share=0.5, exposure_spreading=spreading)
    model = E.PolicyRerank(Fixed(), policy, is_head, arrival=arrival, seed=seed)
    return model.recommend(users, 4)[0], is_head


def test_a_simulated_day_rotates_equal_tail_items_by_the_days_impressions():
    # given 6 users arriving in reverse order and the same base list for all
    arrival = np.arange(6)[::-1].astype(float)
    off, is_head = _serve_day(0.0, arrival=arrival)
    day, _ = _serve_day(1.0, arrival=arrival)
    independent, _ = _serve_day(1.0)
    # then without spreading, or without the day's impressions (and no noise), all lists are equal
    assert len({tuple(r) for r in off.tolist()}) == 1
    np.testing.assert_array_equal(independent, off)
    # and with them, the tail places rotate: users 5, 4, 3, ... see tail items not shown yet
    np.testing.assert_array_equal(is_head[day], is_head[off])  # same places for the tail
    tails = [set(r[~is_head[r]].tolist()) for r in day]
    assert tails[5] == set(off[0][~is_head[off[0]]].tolist()), "the first to arrive sees today's list"
    assert len(set().union(*tails)) == 12, "12 tail places over the day, 12 tail items"


def test_per_user_seeds_spread_tail_items_and_repeat_exactly():
    off, is_head = _serve_day(0.0, seed=7)
    noisy, _ = _serve_day(0.5, seed=7)
    np.testing.assert_array_equal(noisy, _serve_day(0.5, seed=7)[0])
    assert not np.array_equal(noisy, _serve_day(0.5, seed=8)[0])
    np.testing.assert_array_equal(is_head[noisy], is_head[off])
    assert len({i for r in noisy for i in r[~is_head[r]].tolist()}) > 2


def test_default_policy_copies_the_exposure_policy_model_defaults():
    """DEFAULT_POLICY mirrors recommender/models/policy.py (read as text: no Django here)."""
    import ast

    from ml_testdata import REPO

    tree = ast.parse((REPO / "recommender" / "models" / "policy.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ExposurePolicy")
    defaults = {}
    for node in cls.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            for kw in node.value.keywords:
                if kw.arg == "default" and isinstance(kw.value, ast.Constant):
                    defaults[node.targets[0].id] = kw.value.value
    for key, value in E.DEFAULT_POLICY.items():
        assert defaults[key] == value, key
    assert defaults["exploration_slots"] == 0 and "daily_impression_cap" not in defaults
