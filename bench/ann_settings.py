"""Host settings for ``bench/serving.py --ann-min-cells N``: the project's own, with another ANN threshold.

Lets the benchmark measure the hnswlib graph against exact search on the same catalog,
in process and through gunicorn, without editing the project's defaults.
"""
import os

from shop_recs.settings import *  # noqa: F401,F403
from shop_recs.settings import RECOMMENDER as _PROJECT

RECOMMENDER = {**_PROJECT, "SERVING_ANN_MIN_CELLS": int(os.environ["BENCH_ANN_MIN_CELLS"])}
