"""`manage.py evaluate` on a small interchange dataset and on a sample of the real shop."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest
from django.core.management import CommandError, call_command

from recommender.demo.synthetic import generate_shop

FAST_METHODS = "MostPopular,RecentPop,ItemKNN,EASE"


def write_interchange(folder, weeks: int = 12):
    shop = generate_shop(n_items=300, n_users=250, weeks=weeks, seed=5, now=datetime(2024, 6, 1, tzinfo=timezone.utc))
    items = folder / "shop_items.csv"
    events = folder / "shop_events.csv"
    with items.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["item_id", "title", "description", "category", "brand", "price"], extrasaction="ignore")
        w.writeheader()
        w.writerows(shop.items)
    with events.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["user_id", "item_id", "event_type", "timestamp", "value", "event_id"], extrasaction="ignore")
        w.writeheader()
        w.writerows(e for e in shop.events if e["event_type"] != "impression")
        fh.write("u1,i1,teleport,2024-01-01T00:00:00Z,,bad-1\n")  # a bad row: reported, not fatal
    return items, events


def test_evaluate_interchange_dataset(tmp_path):
    items, events = write_interchange(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    call_command("evaluate", "--events", str(events), "--items", str(items), "--out", str(tmp_path / "res"),
                 "--methods", FAST_METHODS, stdout=out, stderr=err)
    results = json.loads((tmp_path / "res" / "results.json").read_text())
    for name in FAST_METHODS.split(","):
        assert name in results, results.keys()
        metrics = results[name]
        assert 0 <= metrics["NDCG@10"] <= 1 and 0 <= metrics["APLT@10"] <= 1
        assert {"Recall@10", "Recall@20", "HR@10", "TailRecall@20", "Coverage@10", "Gini@10", "ARP@10", "ColdHit@20"} <= set(metrics)
    # a personalised peer beats the global popularity list on users with distinct tastes
    assert results["EASE"]["NDCG@10"] > results["MostPopular"]["NDCG@10"]
    assert (tmp_path / "res" / "ndcg_vs_aplt.png").stat().st_size > 10_000
    assert "| EASE" in out.getvalue()
    assert "teleport" in err.getvalue()  # the bad row was reported with its reason


def test_evaluate_online_retail_sample(tmp_path, online_retail_path):
    import pandas as pd

    df = pd.read_parquet(online_retail_path)
    sample = df[df.InvoiceDate < "2011-05-01"]
    path = tmp_path / "online_retail.parquet"
    sample.to_parquet(path)
    out = io.StringIO()
    call_command("evaluate", "--format", "online-retail", "--path", str(path), "--out", str(tmp_path / "res"),
                 "--methods", "MostPopular,RecentPop,EASE", "--no-rerank", stdout=out, stderr=io.StringIO())
    results = json.loads((tmp_path / "res" / "results.json").read_text())
    assert set(results) >= {"MostPopular", "RecentPop", "EASE"}
    assert results["EASE"]["NDCG@10"] > 0.02
    assert all(r["ColdHit@20"] == 0 for r in results.values())  # collaborative peers cannot reach cold items


def test_evaluate_explains_bad_arguments(tmp_path):
    with pytest.raises(CommandError, match="--events"):
        call_command("evaluate", "--out", str(tmp_path))
    with pytest.raises(CommandError, match="Unknown method"):
        call_command("evaluate", "--events", "x", "--items", "y", "--out", str(tmp_path), "--methods", "Magic")
