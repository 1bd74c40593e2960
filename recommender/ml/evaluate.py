"""The offline evaluation harness of EVALUATION.md: split, tune on validation, refit, test, report.

For every method (a name in a registry of factories and parameter grids):

1. tune: fit on the validation split's training part for each grid point and keep the point
   with the best validation NDCG@10 (test data is never looked at);
2. refit on the full training period with those parameters (the fit time is recorded);
3. recommend top-20 for every test user (training items excluded, candidates = training
   items + cold items) and compute every metric of :mod:`recommender.ml.metrics`.

A method may also declare a *curve*: a parameter applied to the fitted model without
refitting (the exposure policy's boost strength, a re-rank's penalty); each value becomes a
row of the table and a point of the NDCG@10-vs-APLT@10 curve in the PNG.

Other models plug in by name::

    from recommender.ml.evaluate import Method, register
    register(Method("main + exposure", build=lambda **p: MyModel(**p), grid={"dim": [64, 128]},
                    curve=("boost", [0.0, 0.5, 1.0]), curve_fn=lambda m, v, train: m.with_boost(v)))

The project's own models (``peer=False``, e.g. ``"main"``) are also evaluated *with the
exposure policy*: their top-100 candidates per test user re-ranked by
:func:`recommender.ranking.policy.rerank` with the protocol's head/tail (``Split.head``), as a
curve over ``tail_boost`` (:data:`POLICY_BOOSTS`, the other settings the product's defaults,
:data:`DEFAULT_POLICY`) plus a named row for the product's default policy. The fitted model is
reused, never refitted. A second curve, over ``exposure_spreading`` (:data:`POLICY_SPREADINGS`),
serves the test users as one simulated day: in order of their first test event, each list's
items counted as impressions before the next user is served, and a noise seed per user.

Pure numpy/torch: never imports Django.
"""
from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .base import Interactions, Recommender
from .metrics import METRIC_NAMES, evaluate_split
from .protocol import Split, temporal_split, validation_split

#: Metric used to pick hyper-parameters on validation.
TUNE_METRIC = "NDCG@10"
#: Relative validation gain a calibrated value needs over the model's default (see :func:`calibrate`).
CALIBRATION_TOL = 0.005
#: Length of every evaluated list (the largest K of the metrics).
LIST_LENGTH = 20
#: Penalty strengths of the popularity-penalised re-rank of the best peer (its curve).
RERANK_ALPHAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
#: Tail boosts (standard deviations of a list's scores) of the exposure-policy curve of the
#: project's own models; the other policy settings stay at :data:`DEFAULT_POLICY`.
POLICY_BOOSTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
#: Candidates per user that the exposure policy re-ranks (the model's top 100).
POLICY_DEPTH = 100
#: The product's default exposure policy, copied from the field defaults of
#: ``recommender.models.policy.ExposurePolicy`` (this module never imports Django; keep the
#: two in sync): tail_boost=0.3, min_tail_share=0.2, diversity=0.0, exposure_spreading=0.5,
#: exploration_slots=0 (no exploration positions), daily_impression_cap=None (no cap),
#: exclude_purchased=True.
#: Its head_share=0.2 is the protocol's head share too; the harness uses ``Split.head``.
DEFAULT_POLICY: dict[str, float] = {
    "tail_boost": 0.3, "min_tail_share": 0.2, "diversity": 0.0, "exposure_spreading": 0.5,
}
#: Exposure-spreading strengths of the spreading curve (the default policy otherwise), each
#: served as one simulated serving day (see :class:`PolicyRerank`).
POLICY_SPREADINGS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Base of the per-user noise seeds of the offline runs (fixed: results are reproducible).
POLICY_SEED = 20261129

Grid = dict[str, Sequence[Any]] | list[dict[str, Any]]


@dataclass
class Method:
    """One evaluated method: how to build it and what to tune.

    Attributes
    ----------
    name : row name in the table and key in results.json
    build : ``build(**params) -> Recommender`` (unfitted; ``random_state`` is passed too)
    grid : ``{param: values}`` (cartesian product or coordinate search) or an explicit list
        of parameter dicts
    search : ``"grid"`` (every combination) or ``"coordinate"`` (one parameter at a time from
        the middle of each list, repeated until nothing improves: for large grids)
    needs_text : the model reads ``Interactions.item_text``
    curve : optional ``(param name, values)`` applied after fitting, without refitting
    curve_fn : ``curve_fn(fitted_model, value, train) -> Recommender`` for each curve value
    peer : a peer (baseline) rather than the project's own model; the best peer by
        validation NDCG@10 is the base of the popularity-penalised re-rank
    """

    name: str
    build: Callable[..., Recommender]
    grid: Grid = field(default_factory=dict)
    search: str = "grid"
    needs_text: bool = False
    curve: tuple[str, Sequence[Any]] | None = None
    curve_fn: Callable[[Recommender, Any, Interactions], Recommender] | None = None
    peer: bool = True


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add (or replace) a method in the registry under its name."""
    REGISTRY[method.name] = method
    return method


def _register_default(method: Method) -> Method:
    return REGISTRY.setdefault(method.name, method)


def _baseline(cls_name: str):
    def build(**params):
        from . import baselines

        return getattr(baselines, cls_name)(**params)

    return build


def register_defaults() -> None:
    """Register the peers of EVALUATION.md and, when importable, the main model ``"main"``.

    Idempotent; a method already registered under a default name is kept (so a caller can
    replace, say, ``"EASE"`` with its own grid before running).
    """
    add = _register_default
    add(Method("MostPopular", _baseline("MostPopular"), [{}]))
    add(Method("RecentPop", _baseline("RecentPop"), {"window_days": [3, 7, 14, 30]}))
    add(
        Method(
            "ItemKNN",
            _baseline("ItemKNN"),
            {"neighbours": [3, 5, 10, 25, 50, 100, 200, 400, 800], "shrink": [0.0, 10.0, 50.0]},
            search="coordinate",
        )
    )
    add(Method("EASE", _baseline("EASE"), {"l2": [25, 50, 100, 200, 400, 800, 1600, 3200]}))
    add(
        Method(
            "ALS",
            _baseline("ALS"),
            {
                "factors": [32, 64, 128, 256, 512],
                "regularization": [1.0, 3.0, 10.0, 30.0, 100.0],
                "alpha": [0.25, 0.5, 1.0, 2.0, 4.0],
                "iterations": [5, 10, 20, 40],
            },
            search="coordinate",
        )
    )
    add(
        Method(
            "BPR",
            _baseline("BPR"),
            {
                "factors": [32, 64, 128, 256],
                "learning_rate": [0.003, 0.01, 0.03, 0.1],
                "regularization": [0.00001, 0.0001, 0.001, 0.01],
                "iterations": [25, 50, 100, 200],
            },
            search="coordinate",
        )
    )
    add(
        Method(
            "ContentOnly",
            _baseline("ContentOnly"),
            {"half_life_days": [0.01, 0.05, 0.25, 1, 3, 10, 30, 100, 365, 3650]},
            needs_text=True,
        )
    )
    if "main" in REGISTRY:
        return
    try:
        from .hybrid import HybridSequentialModel
    except Exception as exc:  # the main model is written elsewhere and may not exist yet
        print(f"note: main model not registered (recommender.ml.hybrid: {type(exc).__name__}: {exc})")
    else:
        add(
            Method(
                "main",
                lambda **p: HybridSequentialModel(**p),
                getattr(HybridSequentialModel, "param_grid", None) or [{}],
                search=getattr(HybridSequentialModel, "param_search", "grid"),
                needs_text=True,
                peer=False,
            )
        )


# --------------------------------------------------------------------------- tuning


def grid_points(grid: Grid) -> list[dict[str, Any]]:
    """Every parameter combination of a grid (a list of dicts is returned as is)."""
    if isinstance(grid, list):
        return [dict(p) for p in grid] or [{}]
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))] or [{}]


def recommend_split(model: Recommender, split: Split, k: int = LIST_LENGTH) -> np.ndarray:
    """(n_test_users, k) item ids for the split's test users (their training items excluded)."""
    ids, _ = model.recommend(split.users, k, exclude=split.exclude, candidates=split.candidates)
    return ids


def score_split(model: Recommender, split: Split) -> dict[str, float]:
    """Every metric of a fitted model's top-20 on ``split`` (empty when it has no test users)."""
    if len(split.users) == 0:
        return {}
    return evaluate_split(recommend_split(model, split), split)


@dataclass
class Trial:
    """One validation fit: parameters, validation metrics, seconds."""

    params: dict[str, Any]
    metrics: dict[str, float]
    seconds: float


def _score(metrics: dict[str, float]) -> float:
    v = metrics.get(TUNE_METRIC, float("nan"))
    return -math.inf if v is None or math.isnan(v) else float(v)


@dataclass
class Calibration:
    """What :func:`calibrate` chose and saw."""

    params: dict[str, Any]  # the chosen value of each calibrated parameter
    metrics: dict[str, float]  # the fitted model's validation metrics with those values
    trials: list[Trial]  # one per value tried (params: that parameter alone)


def calibrate(
    model: Recommender,
    split: Split,
    *,
    keep: Sequence[str] = (),
    tol: float = CALIBRATION_TOL,
    log: Callable[[str], None] = print,
) -> Calibration:
    """Set a fitted model's recommendation-time parameters to their best values on ``split``.

    Each parameter of ``model.calibration_grid`` not named in ``keep`` is swept over its values,
    one parameter at a time (the others at their best so far), by re-scoring the same fitted
    model: no refit. A value replaces the current one only when its :data:`TUNE_METRIC` is more
    than ``tol`` (relative) higher, so a flat metric keeps the model's default. The model is
    left with the chosen values in ``model.params``.
    """
    t0 = time.perf_counter()
    current = score_split(model, split)
    seconds = time.perf_counter() - t0  # of the current values' score (paid once)
    trials: list[Trial] = []
    chosen: dict[str, Any] = {}
    for name, values in type(model).calibration_grid.items():
        if name in keep:
            continue
        start = model.params[name]
        best_value, best = start, current
        trials.append(Trial({name: start}, current, seconds))
        seconds = 0.0
        for value in values:
            if value == start:
                continue
            t0 = time.perf_counter()
            model.params[name] = value
            metrics = score_split(model, split)
            trials.append(Trial({name: value}, metrics, time.perf_counter() - t0))
            if _score(metrics) > _score(best) * (1 + tol) + 1e-12:
                best_value, best = value, metrics
        model.params[name] = best_value
        chosen[name], current = best_value, best
        log(f"  calibrated {name}={best_value} (was {start}): val {TUNE_METRIC}={_score(best):.4f}, "
            + ", ".join(f"{t.params[name]}: {_score(t.metrics):.4f}" for t in trials if name in t.params))
    return Calibration(chosen, current, trials)


def tune(
    method: Method,
    val: Split,
    *,
    random_state: int = 0,
    tol: float = 0.005,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[Trial]]:
    """Best parameters of ``method`` on the validation split, and every trial made.

    ``"grid"`` tries every combination; ``"coordinate"`` starts from the middle value of each
    list and sweeps one parameter at a time (others fixed at the best so far) until a full
    round changes nothing. A coordinate move must improve the validation metric by more than
    ``tol`` (relative), so that a flat metric does not walk to the most expensive setting.
    """
    cache: dict[str, Trial] = {}
    swept: list[Trial] = []  # the calibration's re-scorings of each fit

    def trial(params: dict[str, Any]) -> Trial:
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in cache:
            t0 = time.perf_counter()
            try:
                model = method.build(random_state=random_state, **params).fit(val.train)
                if type(model).calibration_grid:
                    # Recommendation-time parameters the point does not set: chosen on the
                    # same fit, and carried with the point into the refit.
                    cal = calibrate(model, val, keep=list(params), log=log)
                    metrics, chosen = cal.metrics, {**params, **cal.params}
                    swept.extend(Trial({**params, **t.params}, t.metrics, t.seconds) for t in cal.trials)
                else:
                    metrics, chosen = evaluate_split(recommend_split(model, val), val), params
            except Exception as exc:  # a diverging point (NaN factors, ...) loses, it does not stop the run
                log(f"  {method.name} {params}: failed ({type(exc).__name__}: {exc})")
                metrics, chosen = {m: float("nan") for m in METRIC_NAMES}, params
            cache[key] = Trial(chosen, metrics, time.perf_counter() - t0)
            log(f"  {method.name} {params}: val {TUNE_METRIC}={_score(metrics):.4f} ({cache[key].seconds:.1f}s)")
        return cache[key]

    if method.search == "grid" or isinstance(method.grid, list):
        trials = [trial(p) for p in grid_points(method.grid)]
        best = max(trials, key=lambda t: _score(t.metrics))
        return best.params, list(cache.values()) + swept
    if method.search != "coordinate":
        raise ValueError(f"{method.name}: search={method.search!r}; use 'grid' or 'coordinate'")
    grid = {k: list(v) for k, v in method.grid.items()}
    current = {k: v[(len(v) - 1) // 2] for k, v in grid.items()}
    best = trial(current)
    for _ in range(3):  # rounds; in practice 2 suffice
        changed = False
        for name, values in grid.items():
            for v in values:
                t = trial({**current, name: v})
                if _score(t.metrics) > _score(best.metrics) * (1 + tol) + 1e-12:
                    best, changed = t, True
            current = {k: best.params[k] for k in grid}  # calibrated values are re-chosen per fit
        if not changed:
            break
    return best.params, list(cache.values()) + swept


def edge_notes(grid: Grid, best: dict[str, Any]) -> list[str]:
    """Parameters whose best value is the first or last of its (numeric, 3+ long) list."""
    if isinstance(grid, list):
        return []
    notes = []
    for name, values in grid.items():
        vals = list(values)
        if len(vals) >= 3 and all(isinstance(v, (int, float)) for v in vals) and name in best:
            if best[name] in (min(vals), max(vals)):
                notes.append(f"{name}={best[name]} is on the edge of {vals}")
    return notes


# --------------------------------------------------------------------------- the run


@dataclass
class Row:
    """One line of the results table."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    fit_s: float
    tune_s: float = 0.0
    val_metric: float = float("nan")
    notes: list[str] = field(default_factory=list)
    curve: str | None = None  # name of the curve the row belongs to


@dataclass
class Report:
    """Everything one evaluation run produced."""

    dataset: str
    split: str
    validation: str
    rows: list[Row]
    trials: dict[str, list[Trial]]
    seconds: float

    def results(self) -> dict[str, dict[str, float | None]]:
        """``{method: {metric: value, ..., "fit_s": seconds}}`` (NaN -> None, for JSON)."""
        out: dict[str, dict[str, float | None]] = {}
        for r in self.rows:
            d = {m: _json_num(r.metrics.get(m)) for m in METRIC_NAMES}
            d["fit_s"] = round(r.fit_s, 3)
            out[r.name] = d
        return out

    def markdown(self) -> str:
        """The results table (markdown), with the split described above it."""
        cols = [
            "NDCG@10", "NDCG@20", "Recall@10", "Recall@20", "HR@10", "HR@20", "APLT@10",
            "TailRecall@20", "Coverage@10", "Gini@10", "ARP@10", "ColdHit@20",
        ]  # fmt: skip
        head = "| method | " + " | ".join(cols) + " | fit s | tuned params |"
        sep = "|" + "---|" * (len(cols) + 3)
        lines = [
            f"Dataset: {self.dataset}",
            "",
            f"Test split: {self.split}",
            "",
            f"Validation split: {self.validation}",
            "",
            head,
            sep,
        ]
        for r in self.rows:
            vals = []
            for c in cols:
                v = r.metrics.get(c)
                vals.append("n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.1f}" if c == "ARP@10" else f"{v:.4f}"))
            params = ", ".join(f"{k}={v}" for k, v in r.params.items() if k != "base") or "-"
            lines.append(f"| {r.name} | " + " | ".join(vals) + f" | {r.fit_s:.1f} | {params} |")
        notes = [f"- {r.name}: {n}" for r in self.rows for n in r.notes]
        if notes:
            lines += ["", "Notes:", *notes]
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write results.md, results.json, tuning.json and ndcg_vs_aplt.png; returns their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "markdown": out / "results.md",
            "json": out / "results.json",
            "tuning": out / "tuning.json",
            "plot": out / "ndcg_vs_aplt.png",
        }
        paths["markdown"].write_text(self.markdown() + "\n")
        paths["json"].write_text(json.dumps(self.results(), indent=2) + "\n")
        tuning = {
            name: {
                "best": next((r.params for r in self.rows if r.name == name), None),
                "notes": next((r.notes for r in self.rows if r.name == name), []),
                "trials": [
                    {"params": t.params, "val": {m: _json_num(t.metrics.get(m)) for m in METRIC_NAMES}, "seconds": round(t.seconds, 2)}
                    for t in trials
                ],
            }
            for name, trials in self.trials.items()
        }
        paths["tuning"].write_text(json.dumps(tuning, indent=2, default=str) + "\n")
        plot_tradeoff(self.rows, paths["plot"], title=f"{self.dataset}: accuracy vs long-tail exposure")
        return paths


def json_metrics(metrics: dict[str, float]) -> dict[str, float | None]:
    """Metrics for JSON storage: an undefined one (NaN, e.g. ColdHit@20 on a split without new
    items) or an infinite one as None, as JSON (and PostgreSQL's jsonb) has no NaN."""
    return {name: _json_num(v) for name, v in metrics.items()}


def _json_num(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else round(v, 6)


def plot_tradeoff(rows: Sequence[Row], path: str | Path, title: str = "") -> None:
    """PNG of NDCG@10 (y) against APLT@10 (x): one point per method, a line per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6), dpi=120)
    curves: dict[str, list[Row]] = {}
    for r in rows:
        if r.curve:
            curves.setdefault(r.curve, []).append(r)
    for name, pts in curves.items():
        pts = sorted(pts, key=lambda r: r.metrics["APLT@10"])
        ax.plot([p.metrics["APLT@10"] for p in pts], [p.metrics["NDCG@10"] for p in pts], "-o", ms=4, label=name)
    for r in rows:
        if r.curve:
            continue
        x, y = r.metrics["APLT@10"], r.metrics["NDCG@10"]
        ax.scatter([x], [y], s=30, zorder=3)
        ax.annotate(r.name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("APLT@10 (share of tail items in the top 10)")
    ax.set_ylabel("NDCG@10")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def embed_items(
    dataset,
    cache_dir: str | Path | None = None,
    model_path: str | None = None,
    *,
    with_price_band: bool = True,
) -> np.ndarray:
    """(n_items, d) float32 text embeddings of a Dataset's items (cached by text hash)."""
    from .text import Embedder, dataset_texts

    texts = dataset_texts(dataset, with_price_band=with_price_band)
    return Embedder(model_path, cache_dir=cache_dir).encode(texts)


def rerank_curve_method(base_method: Method, alphas: Sequence[float]) -> Method:
    """The popularity-penalised re-rank of a peer, as a curve over ``alpha``."""

    def curve_fn(fitted: Recommender, alpha: float, train: Interactions) -> Recommender:
        from .baselines import PopularityPenalisedRerank

        return PopularityPenalisedRerank(base=fitted, alpha=alpha, refit_base=False).fit(train)

    return Method(
        f"{base_method.name} + pop-penalty",
        base_method.build,
        base_method.grid,
        needs_text=base_method.needs_text,
        curve=("alpha", list(alphas)),
        curve_fn=curve_fn,
    )


def run(
    dataset,
    methods: Sequence[str] | None = None,
    *,
    test_days: float = 30,
    val_days: float = 30,
    item_text: np.ndarray | None = None,
    cache_dir: str | Path | None = None,
    random_state: int = 0,
    rerank_alphas: Sequence[float] | None = RERANK_ALPHAS,
    policy_boosts: Sequence[float] | None = POLICY_BOOSTS,
    policy_spreadings: Sequence[float] | None = POLICY_SPREADINGS,
    log: Callable[[str], None] = print,
) -> Report:
    """Evaluate ``methods`` (registry names; default all registered) on ``dataset``.

    Parameters
    ----------
    dataset : a :class:`~recommender.ml.datasets.Dataset`
    methods : names in :data:`REGISTRY`; unknown names raise with the list of known ones
    item_text : (n_items, d) precomputed text embeddings; computed (and cached) when a method
        needs text and this is None
    cache_dir : embedding cache folder
    rerank_alphas : penalty strengths of the re-rank of the best peer (None: no re-rank)
    policy_boosts : tail boosts of the exposure-policy curve of every non-peer method (e.g.
        ``"main"``), plus a row for :data:`DEFAULT_POLICY`; None: no policy rows
    policy_spreadings : exposure-spreading strengths of the spreading curve of every
        non-peer method (with the policy rows); None or empty: no spreading rows
    """
    t_start = time.perf_counter()
    register_defaults()
    names = list(methods) if methods else list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {sorted(REGISTRY)}")
    chosen = [REGISTRY[n] for n in names]

    split = temporal_split(dataset.interactions, test_days)
    val = validation_split(split, val_days)
    log(f"{dataset.summary()}\ntest:       {split.describe()}\nvalidation: {val.describe()}")
    if item_text is None and any(m.needs_text for m in chosen):
        t0 = time.perf_counter()
        item_text = embed_items(dataset, cache_dir)
        log(f"item text embeddings {item_text.shape} in {time.perf_counter() - t0:.1f}s")
    for s in (split, val):
        s.train.item_text = item_text
        s.test.item_text = item_text

    rows: list[Row] = []
    trials: dict[str, list[Trial]] = {}
    fitted: dict[str, tuple[Method, Recommender, Row]] = {}
    for method in chosen:
        log(f"{method.name}: tuning on validation")
        t0 = time.perf_counter()
        best, tr = tune(method, val, random_state=random_state, log=log)
        tune_s = time.perf_counter() - t0
        trials[method.name] = tr
        val_best = max((_score(t.metrics) for t in tr), default=float("nan"))
        t0 = time.perf_counter()
        model = method.build(random_state=random_state, **best).fit(split.train)
        fit_s = time.perf_counter() - t0
        metrics = evaluate_split(recommend_split(model, split), split)
        row = Row(method.name, best, metrics, fit_s, tune_s, val_best, edge_notes(method.grid, best))
        log(f"{method.name}: best {best} -> test NDCG@10={metrics['NDCG@10']:.4f} (fit {fit_s:.1f}s, tuning {tune_s:.0f}s)")
        rows.append(row)
        rows.extend(_uncalibrated_rows(method, model, row, split, random_state))
        fitted[method.name] = (method, model, row)
        if method.curve is not None and method.curve_fn is not None:
            rows.extend(_curve_rows(method, model, row, split))
        if policy_boosts and not method.peer:
            t0 = time.perf_counter()
            n_before = len(rows)
            rows.extend(policy_rows(method, model, row, split, policy_boosts, policy_spreadings or ()))
            n_rows = len(rows) - n_before
            log(f"{method.name} + exposure policy: {n_rows} rows in {time.perf_counter() - t0:.1f}s")

    peers = [(n, r) for n, (m, _, r) in fitted.items() if m.peer and n != "MostPopular"]
    if rerank_alphas and peers:
        best_name = max(peers, key=lambda p: p[1].val_metric)[0]
        method, model, row = fitted[best_name]
        rr = rerank_curve_method(method, rerank_alphas)
        log(f"re-rank of the best peer by validation {TUNE_METRIC}: {best_name}")
        rows.extend(_curve_rows(rr, model, row, split))
    return Report(
        dataset=dataset.name,
        split=split.describe(),
        validation=val.describe(),
        rows=rows,
        trials=trials,
        seconds=time.perf_counter() - t_start,
    )


def _uncalibrated_rows(method: Method, model: Recommender, row: Row, split: Split, random_state: int) -> list[Row]:
    """A row for the same fit with its calibrated parameters at the model's defaults, when the
    calibration moved any: what choosing them on validation changed on the test split."""
    explicit = {k for point in grid_points(method.grid) for k in point}  # set, not calibrated
    grid = {k: v for k, v in type(model).calibration_grid.items() if k not in explicit}
    if not grid:
        return []
    plain = method.build(random_state=random_state, **{k: v for k, v in row.params.items() if k not in grid})
    defaults = {k: plain.params[k] for k in grid if k in row.params and plain.params[k] != row.params[k]}
    if not defaults:
        return []
    chosen = {k: model.params[k] for k in defaults}
    model.params.update(defaults)
    try:
        metrics = evaluate_split(recommend_split(model, split), split)
    finally:
        model.params.update(chosen)
    label = ", ".join(f"{k}={v}" for k, v in defaults.items())
    return [Row(f"{method.name}, uncalibrated ({label})", {**row.params, **defaults}, metrics, row.fit_s,
                notes=[f"the same fit with {label} (the default) instead of the value chosen on validation"])]


def _curve_rows(method: Method, model: Recommender, base_row: Row, split: Split) -> list[Row]:
    """Rows for each curve value of a fitted model (no refit; fit time adds the wrapper's)."""
    name, values = method.curve
    out = []
    for v in values:
        t0 = time.perf_counter()
        m = method.curve_fn(model, v, split.train)
        extra = time.perf_counter() - t0
        metrics = evaluate_split(recommend_split(m, split), split)
        out.append(
            Row(
                f"{method.name} ({name}={v})",
                {**base_row.params, name: v},
                metrics,
                base_row.fit_s + extra,
                curve=method.name,
            )
        )
    return out


# --------------------------------------------------------------------------- exposure policy


class PolicyRerank:
    """A fitted model's top ``depth`` per user, re-ranked by the product's exposure policy.

    Offline stand-in for serving: :func:`recommender.ranking.policy.rerank` per user with
    ``is_head`` as the head/tail segments, every item active and in stock, the user's
    training items as ``bought`` and no request filters. Only :meth:`recommend` is provided
    (what the harness calls).

    Without ``arrival`` every user is served on its own, with nothing shown before (no
    impressions). With ``arrival``, each :meth:`recommend` call is one simulated serving
    day: impressions start at zero, users are served in ascending ``arrival`` order (ties:
    the order given), and every item of a served list counts one impression before the
    next user is served, which the policy's exposure spreading reads as
    ``impressions_today``. Nothing is "ever shown" (exploration would see every item as new).

    Parameters
    ----------
    base : the fitted model (not refitted)
    policy : a :class:`recommender.ranking.policy.PolicyConfig`
    is_head : (n_items,) bool head segment (the protocol's ``Split.head``)
    vectors : (n_items, d) item vectors for the policy's diversity, or None
    depth : how many of the base model's items are re-ranked
    now : timezone-aware time at which promotions are evaluated (default: now)
    cache : a dict shared by instances over one base model, so that the base lists of a
        (users, exclude, candidates) call are computed once for a whole curve
    arrival : (n_users,) float, when each user arrives (e.g. its first test event), or None
    seed : base of the per-user noise seeds (``seed * 2**32 + user``), or None for no noise
    """

    kind = "exposure_policy_rerank"

    def __init__(self, base, policy, is_head: np.ndarray, *, vectors: np.ndarray | None = None,
                 depth: int = POLICY_DEPTH, now=None, cache: dict | None = None,
                 arrival: np.ndarray | None = None, seed: int | None = None) -> None:
        from datetime import datetime, timezone

        from ..ranking.policy import CatalogArrays

        n = len(is_head)
        self.base, self.policy, self.depth = base, policy, int(depth)
        self.now = now or datetime.now(timezone.utc)
        self.catalog = CatalogArrays(
            is_head=np.asarray(is_head, dtype=bool),
            category=np.full(n, -1, dtype=np.int64),
            price=np.full(n, np.nan),
            in_stock=np.ones(n, dtype=bool),
            impressions_today=np.zeros(n, dtype=np.int64),
            ever_shown=np.zeros(n, dtype=bool),
            vectors=vectors if vectors is not None and len(vectors) == n else None,
        )
        self.cache = {} if cache is None else cache
        self.arrival = None if arrival is None else np.asarray(arrival, dtype=np.float64)
        self.seed = seed

    def _base_lists(self, users, exclude, candidates) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users)
        key = (users.tobytes(), id(exclude), id(candidates), self.depth)
        if key not in self.cache:
            lists = self.base.recommend(users, self.depth, exclude=exclude, candidates=candidates)
            # exclude and candidates are kept so that their ids are not reused while cached.
            self.cache[key] = (lists, exclude, candidates)
        return self.cache[key][0]

    def recommend(
        self, users, k=10, *, exclude=None, candidates=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, k) ids and policy scores, as :meth:`Recommender.recommend` (-1 / -inf pads)."""
        from ..ranking.policy import RequestFilters, rerank

        ids, scores = self._base_lists(users, exclude, candidates)
        request = RequestFilters(in_stock_only=False)
        out_ids = np.full((len(ids), k), -1, dtype=np.int64)
        out_sc = np.full((len(ids), k), -np.inf, dtype=np.float32)
        users = np.asarray(users, dtype=np.int64)
        shown = self.catalog.impressions_today  # int64: CatalogArrays keeps it, so += is seen
        shown[:] = 0
        rows = range(len(ids))
        if self.arrival is not None:
            rows = np.argsort(self.arrival[users], kind="stable").tolist()
        for r in rows:
            bought = exclude[r] if exclude is not None else None
            seed = None if self.seed is None else int(self.seed) * 2**32 + int(users[r])
            ranked = rerank(
                ids[r], scores[r], self.catalog, self.policy, k, self.now,
                request=request, bought=bought, seed=seed,
            )
            if self.arrival is not None:
                shown[ranked.ids] += 1  # ids are distinct
            m = len(ranked.ids)
            out_ids[r, :m] = ranked.ids
            out_sc[r, :m] = ranked.policy_scores
        return out_ids, out_sc


def policy_config(**overrides):
    """The product's default :class:`~recommender.ranking.policy.PolicyConfig`, with ``overrides``.

    Offline there are no promotions, pins, buried items, exploration positions or caps.
    """
    from ..ranking.policy import PolicyConfig

    return PolicyConfig(**{**DEFAULT_POLICY, **overrides})


def policy_rows(
    method: Method,
    model: Recommender,
    base_row: Row,
    split: Split,
    boosts: Sequence[float] = POLICY_BOOSTS,
    spreadings: Sequence[float] = POLICY_SPREADINGS,
) -> list[Row]:
    """Rows of a fitted model re-ranked by the exposure policy (no refit).

    One row per ``tail_boost`` in ``boosts`` (the curve ``"<name> + exposure policy"``, other
    settings at :data:`DEFAULT_POLICY`), a row ``"<name> + exposure policy (default)"``
    for the product's default policy (a labelled point in the PNG), and, when
    ``spreadings`` is not empty, one row per ``exposure_spreading`` (the curve
    ``"<name> + exposure spreading"``, other settings at :data:`DEFAULT_POLICY`) plus two
    ablations at the strongest: impressions only (no noise seeds) and noise only (users
    served independently). Spreading rows and the default row are served as one simulated
    day (:class:`PolicyRerank` with ``arrival`` = each test user's first test event and
    per-user seeds from :data:`POLICY_SEED`). The ``tail_boost`` curve serves every user on
    its own (no impressions, no seeds), so exposure spreading has nothing to act on there and
    the curve shows the boost alone.
    """
    from datetime import datetime, timezone

    name = f"{method.name} + exposure policy"
    now = datetime.fromtimestamp(split.cut, tz=timezone.utc)
    cache: dict = {}
    vectors = split.train.item_text

    def curve_fn(fitted: Recommender, boost: float, train: Interactions) -> PolicyRerank:
        policy = policy_config(tail_boost=float(boost))
        return PolicyRerank(fitted, policy, split.head, vectors=vectors, now=now, cache=cache)

    curve = Method(name, method.build, method.grid, needs_text=method.needs_text,
                   curve=("tail_boost", [float(b) for b in boosts]), curve_fn=curve_fn, peer=False)
    rows = _curve_rows(curve, model, base_row, split)
    t0 = time.perf_counter()
    arrival = first_arrival(split)
    default = PolicyRerank(
        model, policy_config(), split.head, vectors=vectors, now=now, cache=cache,
        arrival=arrival, seed=POLICY_SEED,
    )
    metrics = evaluate_split(recommend_split(default, split), split)
    settings = ", ".join(f"{k}={v}" for k, v in DEFAULT_POLICY.items())
    rows.append(
        Row(
            f"{name} (default)",
            {**base_row.params, **DEFAULT_POLICY},
            metrics,
            base_row.fit_s + time.perf_counter() - t0,
            notes=[f"the product's default ExposurePolicy ({settings}), top {POLICY_DEPTH} re-ranked, "
                   "test users served as one simulated day in order of their first test event"],
        )
    )
    if not spreadings:
        return rows

    spread_name = f"{method.name} + exposure spreading"

    def spread_fn(fitted: Recommender, strength: float, train: Interactions) -> PolicyRerank:
        policy = policy_config(exposure_spreading=float(strength))
        return PolicyRerank(fitted, policy, split.head, vectors=vectors, now=now, cache=cache,
                            arrival=arrival, seed=POLICY_SEED)

    spread_curve = Method(spread_name, method.build, method.grid, needs_text=method.needs_text,
                          curve=("exposure_spreading", [float(v) for v in spreadings]),
                          curve_fn=spread_fn, peer=False)
    spread_rows = _curve_rows(spread_curve, model, base_row, split)
    strongest = float(max(spreadings))
    if strongest > 0:
        for label, kwargs in (("impressions only", {"arrival": arrival, "seed": None}),
                              ("noise only", {"arrival": None, "seed": POLICY_SEED})):
            t0 = time.perf_counter()
            policy = policy_config(exposure_spreading=strongest)
            m = PolicyRerank(model, policy, split.head, vectors=vectors, now=now, cache=cache, **kwargs)
            spread_rows.append(
                Row(
                    f"{spread_name} (exposure_spreading={strongest}, {label})",
                    {**base_row.params, "exposure_spreading": strongest},
                    evaluate_split(recommend_split(m, split), split),
                    base_row.fit_s + time.perf_counter() - t0,
                )
            )
    spread_rows[0].notes.append(
        "spreading rows: the default policy with exposure_spreading at each strength (0.0 is the "
        "default policy before spreading existed), test users served as one simulated day "
        "(first-test-event order, each served list counted as impressions before the next user), "
        f"per-user noise seeds from {POLICY_SEED}. Spreading never changes how many tail items a "
        "list holds (APLT@10 is the same in every row); it trades NDCG@10 for coverage and a "
        "lower Gini by rotating which tail items fill the tail's places"
    )
    return rows + spread_rows


def first_arrival(split: Split) -> np.ndarray:
    """(n_users,) float64 time of each user's first test event; ``inf`` for users with none."""
    arrival = np.full(split.train.n_users, np.inf)
    np.minimum.at(arrival, split.test.user, split.test.timestamp.astype(np.float64))
    return arrival
