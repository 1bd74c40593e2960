"""Host settings for ``bench/serving.py`` knobs: the project's own, with what the flags change.

* ``--ann-min-cells N`` (``BENCH_ANN_MIN_CELLS``): another ANN threshold, to measure the
  hnswlib graph against exact search on the same catalog without editing the defaults;
* ``--no-impressions`` (``BENCH_NO_IMPRESSIONS=1``): served lists are not written (no flusher
  thread; the queue fills and then drops), to show what impression logging costs.
"""
import os

from shop_recs.settings import *  # noqa: F401,F403
from shop_recs.settings import RECOMMENDER as _PROJECT

RECOMMENDER = dict(_PROJECT)
if os.environ.get("BENCH_ANN_MIN_CELLS"):
    RECOMMENDER["SERVING_ANN_MIN_CELLS"] = int(os.environ["BENCH_ANN_MIN_CELLS"])
if os.environ.get("BENCH_NO_IMPRESSIONS") == "1":
    RECOMMENDER["IMPRESSION_FLUSH_SECONDS"] = 0
