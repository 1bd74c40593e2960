"""Sweep a post-hoc new-item boost on a saved validation model (no refit).

nice .venv/bin/python -m bench.experiments.hybrid_boost var/hybrid_cache/models/val_...
"""

from __future__ import annotations

import sys

import numpy as np

from bench.experiments.hybrid_data import load_splits, metrics
from bench.experiments.hybrid_exp import fmt
from recommender.ml.base import topk
from recommender.ml.hybrid import N_POP_FEATURES, HybridSequentialModel


def main(path, split_name="val"):
    _raw, val, test = load_splits()
    split = val if split_name == "val" else test
    m = HybridSequentialModel.load(path)
    m.params["new_item_boost"] = 0.0  # swept below
    iv = m.item_vectors()
    uv = m.user_vectors()[split.test_users]
    col = len(m.nets) * m.params["dim"] + N_POP_FEATURES - 1  # the "new product" weight
    for boost in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0):
        u = uv.copy()
        u[:, col] += boost
        s = u @ iv.T
        allowed = np.zeros(s.shape[1], bool)
        allowed[split.candidates] = True
        s[:, ~allowed] = -np.inf
        for r, ex in enumerate(split.exclude):
            s[r, ex] = -np.inf
        ids, _ = topk(s, 20)
        print(fmt(f"boost {boost}", metrics(split, ids), 0), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
