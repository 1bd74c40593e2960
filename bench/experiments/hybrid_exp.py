"""Tuning runs for HybridSequentialModel on Online Retail (validation split unless --test).

nice .venv/bin/python -m bench.experiments.hybrid_exp --peers
nice .venv/bin/python -m bench.experiments.hybrid_exp epochs=10 dim=64 [--test]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from bench.experiments.hybrid_data import DAY, load_splits, run_model
from recommender.ml.base import Recommender, topk


class _Scores(Recommender):
    kind = "scores"

    def _state(self):
        return {}

    def _set_state(self, arrays):
        pass

    def similar_items(self, items, k=10, *, candidates=None):
        raise NotImplementedError

    def recommend(self, users, k=10, *, exclude=None, candidates=None):
        s = self.user_scores(np.asarray(users))
        if candidates is not None:
            m = np.ones(s.shape[1], bool)
            m[candidates] = False
            s[:, m] = -np.inf
        for r, ex in enumerate(exclude or []):
            s[r, ex] = -np.inf
        return topk(s, k)


class RecentPop(_Scores):
    def __init__(self, days=7):
        super().__init__(days=days)
        self.days = days

    def fit(self, d):
        t_end = d.timestamp.max()
        m = d.timestamp >= t_end - self.days * DAY
        pairs = np.unique(np.stack([d.user[m], d.item[m]], 1), axis=0)
        self.pop = np.bincount(pairs[:, 1], minlength=d.n_items).astype(np.float32)
        return self

    def user_scores(self, users):
        return np.tile(self.pop, (len(users), 1))


class EASE(_Scores):
    def __init__(self, lam=500.0):
        super().__init__(lam=lam)
        self.lam = lam

    def fit(self, d):
        X = d.csr()
        G = (X.T @ X).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = -P / np.diag(P)[None, :]
        B[np.diag_indices_from(B)] = 0
        self.B, self.X = B.astype(np.float32), X
        return self

    def user_scores(self, users):
        return (self.X[users] @ self.B).astype(np.float32)


class ContentOnly(_Scores):
    def __init__(self, half_life_days=30):
        super().__init__()
        self.hl = half_life_days

    def fit(self, d):
        import scipy.sparse as sp

        w = 0.5 ** ((d.timestamp.max() - d.timestamp) / (self.hl * DAY))
        M = sp.csr_matrix((w, (d.user, d.item)), shape=(d.n_users, d.n_items))
        prof = M @ d.item_text
        prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-9)
        self.prof, self.text = prof.astype(np.float32), d.item_text
        return self

    def user_scores(self, users):
        return self.prof[users] @ self.text.T


def fmt(name, r, secs):
    keys = [
        "NDCG@10",
        "Recall@10",
        "Recall@20",
        "APLT@10",
        "TailRecall@20",
        "ColdHit@20",
        "Coverage@10",
    ]
    return f"{name:40s} " + " ".join(f"{r[k]:.4f}" for k in keys) + f" {secs:7.1f}s"


def main(argv):
    use_test = "--test" in argv
    peers = "--peers" in argv
    params = {}
    for a in argv:
        if "=" in a:
            k, v = a.split("=", 1)
            params[k] = json.loads(v) if v not in ("None",) else None
    import torch

    torch.set_num_threads(2)
    _raw, val, test = load_splits()
    split = test if use_test else val
    print(
        "split",
        "test" if use_test else "val",
        "| NDCG@10 R@10 R@20 APLT@10 TailR@20 ColdHit@20 Cov@10 fit",
    )
    if peers:
        for name, m in [
            ("RecentPop-7d", RecentPop(7)),
            ("RecentPop-14d", RecentPop(14)),
            ("RecentPop-30d", RecentPop(30)),
            ("EASE-200", EASE(200.0)),
            ("EASE-500", EASE(500.0)),
            ("EASE-1000", EASE(1000.0)),
            ("Content-30d", ContentOnly(30)),
        ]:
            t0 = time.time()
            m.fit(split.train)
            print(fmt(name, run_model(split, m), time.time() - t0), flush=True)
        return
    from recommender.ml.hybrid import HybridSequentialModel

    seed = params.pop("seed", 0)
    m = HybridSequentialModel(random_state=seed, **params)
    t0 = time.time()
    m.fit(split.train)
    secs = time.time() - t0
    print("loss", " ".join(f"{x:.3f}" for x in m.loss_history_))
    print(
        fmt("hybrid " + " ".join(a for a in argv if "=" in a), run_model(split, m), secs),
        flush=True,
    )
    diagnose(split, m)
    name = "_".join(a for a in argv if "=" in a) or "default"
    m.save(f"var/hybrid_cache/models/{'test' if use_test else 'val'}_{name}")


def diagnose(split, m):
    """Median rank of truth items, cold vs warm, and the learned trend weights."""
    u = m.user_vectors()[split.test_users]
    s = u @ m.item_vectors().T
    allowed = np.zeros(s.shape[1], bool)
    allowed[split.candidates] = True
    s[:, ~allowed] = -np.inf
    for r, ex in enumerate(split.exclude):
        s[r, ex] = -np.inf
    rank = (-s).argsort(1).argsort(1)
    cold_r, warm_r = [], []
    for r, t in enumerate(split.truth):
        for i in t:
            (cold_r if split.cold[i] else warm_r).append(rank[r, i])
    print(
        f"median rank cold {np.median(cold_r):.0f} warm {np.median(warm_r):.0f} | "
        f"cold in top20 of lists: {split.cold[np.argsort(-s, 1)[:, :20]].mean():.3f}"
    )
    n_u = len(m.nets) * m.params["dim"]
    pu = u[:, n_u : n_u + 4]
    print("mean user trend weights (7d, 30d, all, new):", np.round(pu.mean(0), 3))


if __name__ == "__main__":
    main(sys.argv[1:])
