"""Fit time of HybridSequentialModel on all of Online Retail (wall and CPU seconds).

    nice .venv/bin/python -m bench.experiments.hybrid_fit_time n_threads=2

On a shared machine the wall time depends on the load; CPU seconds / threads is the time
the fit would take with the cores to itself.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from bench.experiments.hybrid_data import embed_titles, load_online_retail
from recommender.ml.base import Interactions
from recommender.ml.hybrid import HybridSequentialModel


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv):
    params = {k: json.loads(v) for k, v in (a.split("=", 1) for a in argv if "=" in a)}
    raw = load_online_retail()
    text = embed_titles(raw["titles"])
    data = Interactions(
        user=raw["user"],
        item=raw["item"],
        timestamp=raw["ts"],
        n_users=len(raw["user_ids"]),
        n_items=len(raw["item_ids"]),
        weight=raw["qty"],
        item_text=text,
    )
    print(f"events {len(data.user)} users {data.n_users} items {data.n_items}", flush=True)
    c0, t0 = cpu_seconds(), time.perf_counter()
    model = HybridSequentialModel(random_state=0, **params).fit(data)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    n_threads = model.params["n_threads"]
    print(
        f"params {params} | wall {wall:.1f}s | cpu {cpu:.1f}s | cpu/threads {cpu / n_threads:.1f}s"
        f" | load {Path('/proc/loadavg').read_text().split()[:3]}"
    )
    assert np.isfinite(model.user_vectors()).all()


if __name__ == "__main__":
    main(sys.argv[1:])
