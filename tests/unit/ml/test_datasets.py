"""Dataset loaders: the interchange CSVs (bad rows reported by line) and Online Retail."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from ml_testdata import ONLINE_RETAIL, require_shared
from recommender.ml.base import EVENT_CODES
from recommender.ml.datasets import (
    DEFAULT_EVENT_WEIGHTS,
    fix_mojibake,
    load_dataset,
    load_interchange,
    load_online_retail,
    parse_timestamp,
)

ITEMS = """item_id,title,description,category,brand,price,colour
A1,Red mug,"A big
red mug",Kitchen/Mugs,Acme,4.50,red
A2,Blue mug,,Kitchen/Mugs,,3,blue
,No id,,,,,
A3,,,,,,
A4,Teapot,,Kitchen,Acme,cheap,
A1,Red mug again,,,,,
A5,Lamp,,Home,,1200.00,
"""
# line numbers: header 1; A1 spans 2-3; A2 4; empty id 5; empty title 6; bad price 7; duplicate 8; A5 9

EVENTS = """user_id,item_id,event_type,timestamp,value,event_id
u1,A1,purchase,2024-05-01T12:00:00Z,2,e1
u1,A2,view,2024-05-01T11:00:00,,e2
u2,A1,click,1714560000,,e3
u2,A5,add_to_cart,2024-05-01T14:00:00+02:00,1,e4
u3,A1,like,2024-05-02T10:00:00Z,,e5
u3,A1,view,yesterday,,e6
u3,,view,2024-05-02T10:00:00Z,,e7
u3,A2,view,1714560000000,,e8
u1,A1,purchase,2024-05-03T12:00:00Z,2,e1
u4,ZZ,view,2024-05-04T00:00:00Z,,e9
u4,A2,rating,2024-05-04T01:00:00Z,five,e10
u4,A2,rating,2024-05-04T02:00:00Z,5,e11
u4,A2
"""
# header 1; e1 2; e2 3; e3 4; e4 5; bad type 6; bad time 7; no item 8; ms 9; dup e1 10;
# unknown item ZZ 11; bad value 12; good rating 13; short row 14


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "items.csv").write_text(ITEMS, encoding="utf-8")
    (tmp_path / "events.csv").write_text(EVENTS, encoding="utf-8")
    return tmp_path


def _ts(text):
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


def test_bad_item_rows_are_reported_with_line_and_reason(folder):
    ds = load_interchange(folder)
    errs = {(e.file, e.line): e.reason for e in ds.errors if e.file == "items.csv"}
    assert set(errs) == {("items.csv", 5), ("items.csv", 6), ("items.csv", 7), ("items.csv", 8)}
    assert "item_id is empty" in errs[("items.csv", 5)]
    assert "title is empty" in errs[("items.csv", 6)]
    assert "price 'cheap'" in errs[("items.csv", 7)]
    assert "duplicate item_id 'A1'" in errs[("items.csv", 8)]


def test_bad_event_rows_are_reported_with_line_and_reason(folder):
    ds = load_interchange(folder)
    errs = {e.line: e.reason for e in ds.errors if e.file == "events.csv"}
    assert set(errs) == {6, 7, 8, 9, 10, 12, 14}
    assert "event_type 'like'" in errs[6]
    assert "neither ISO 8601" in errs[7]
    assert "missing value for item_id" in errs[8]
    assert "milliseconds" in errs[9]
    assert "duplicate event_id 'e1'" in errs[10]
    assert "value 'five'" in errs[12]
    assert "fields" in errs[14]
    assert "events.csv:6:" in str(next(e for e in ds.errors if e.line == 6 and e.file == "events.csv"))


def test_good_rows_are_loaded_sorted_by_time_with_weights(folder):
    ds = load_interchange(folder)
    inter = ds.interactions
    assert len(inter.user) == 6  # e1, e2, e3, e4, e9 (placeholder item), e11
    assert (np.diff(inter.timestamp) >= 0).all()
    got = sorted(
        zip(ds.user_ids[inter.user], ds.item_ids[inter.item], inter.timestamp.tolist(), inter.event_type.tolist())
    )
    assert got == sorted(
        [
            ("u1", "A1", _ts("2024-05-01T12:00:00"), EVENT_CODES["purchase"]),
            ("u1", "A2", _ts("2024-05-01T11:00:00"), EVENT_CODES["view"]),  # naive = UTC
            ("u2", "A1", 1714560000, EVENT_CODES["click"]),
            ("u2", "A5", _ts("2024-05-01T12:00:00"), EVENT_CODES["add_to_cart"]),  # +02:00
            ("u4", "ZZ", _ts("2024-05-04T00:00:00"), EVENT_CODES["view"]),
            ("u4", "A2", _ts("2024-05-04T02:00:00"), EVENT_CODES["rating"]),
        ]
    )
    by_type = dict(zip(inter.event_type.tolist(), inter.weight.tolist()))
    assert by_type[EVENT_CODES["purchase"]] == DEFAULT_EVENT_WEIGHTS["purchase"] == 8.0
    assert by_type[EVENT_CODES["view"]] == 1.0 and by_type[EVENT_CODES["click"]] == 2.0


def test_a_dataset_ending_earlier_keeps_the_indices_and_cuts_every_event_array(folder):
    ds = load_interchange(folder)
    # exclusive: u1's purchase and u2's add to cart (14:00+02:00) at 12:00 UTC are cut
    until = _ts("2024-05-01T12:00:00")
    cut = ds.ending(until)
    inter, full = cut.interactions, ds.interactions
    assert (inter.timestamp < until).all() and len(inter.user) == (full.timestamp < until).sum() == 2
    assert inter.n_items == full.n_items and inter.n_users == full.n_users
    assert list(cut.item_ids) == list(ds.item_ids) and list(cut.titles) == list(ds.titles)
    for name in ("user", "item", "event_type", "weight"):
        assert len(getattr(inter, name)) == 2
    assert len(inter.extra["value"]) == 2 and len(full.extra["value"]) == 6
    a2, a5 = list(ds.item_ids).index("A2"), list(ds.item_ids).index("A5")
    assert cut.first_seen[a2] == ds.first_seen[a2] == _ts("2024-05-01T11:00:00")
    assert cut.first_seen[a5] == -1 and ds.first_seen[a5] == until, "first seen again from the cut"
    assert "until 2024-05-01" in cut.name
    with pytest.raises(ValueError, match="no event before"):
        ds.ending(_ts("2020-01-01T00:00:00"))


def test_item_metadata_is_aligned_with_the_item_index(folder):
    ds = load_interchange(folder)
    i = {iid: k for k, iid in enumerate(ds.item_ids)}
    assert ds.titles[i["A1"]] == "Red mug" and ds.descriptions[i["A1"]] == "A big\nred mug"
    assert ds.categories[i["A1"]] == "Kitchen/Mugs" and ds.brands[i["A1"]] == "Acme"
    assert ds.prices[i["A1"]] == 4.5 and np.isnan(ds.prices[i["ZZ"]])
    assert ds.titles[i["ZZ"]] == "", "unknown event items become placeholders by default"
    assert any("not in items.csv" in n for n in ds.notes)
    assert ds.first_seen[i["A1"]] == 1714560000 and ds.first_seen[i["A5"]] == _ts("2024-05-01T12:00:00")


def test_strict_unknown_items_are_rejected_rows(folder):
    ds = load_interchange(folder, unknown_items="strict")
    errs = {e.line: e.reason for e in ds.errors if e.file == "events.csv"}
    assert "'ZZ' is not in items.csv" in errs[11]
    assert "ZZ" not in set(ds.item_ids)


def test_event_weights_can_be_overridden_and_typos_fail(folder):
    ds = load_interchange(folder, event_weights={"view": 0.25})
    assert set(ds.interactions.weight[ds.interactions.event_type == EVENT_CODES["view"]]) == {0.25}
    with pytest.raises(ValueError, match="Unknown event type"):
        load_interchange(folder, event_weights={"veiw": 1})


def test_missing_required_column_says_which(tmp_path):
    (tmp_path / "items.csv").write_text("item_id,name\nA,x\n")
    (tmp_path / "events.csv").write_text("user_id,item_id,event_type,timestamp\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['title'\]"):
        load_interchange(tmp_path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-05-01T12:00:00Z", 1714564800),
        ("2024-05-01T12:00:00", 1714564800),
        ("2024-05-01 14:00:00+02:00", 1714564800),
        ("2024-05-01T12:00:00.900Z", 1714564800),
        ("1714564800", 1714564800),
        ("1714564800.7", 1714564800),
    ],
)
def test_parse_timestamp(text, expected):
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "1714564800000", "12", "nan"])
def test_parse_timestamp_rejects(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_fix_mojibake():
    assert fix_mojibake("Gift Voucher Â£20.00") == "Gift Voucher £20.00"


def test_load_dataset_dispatches_on_folder_content(folder):
    assert load_dataset(folder).name == folder.name
    with pytest.raises(ValueError, match="expected a folder"):
        load_dataset(folder / "items.csv")


@pytest.mark.dataset
def test_online_retail_purchases_follow_the_rules():
    path = require_shared(ONLINE_RETAIL)
    ds = load_online_retail(path)
    inter = ds.interactions
    # README: 397,924 purchase lines; 1,554 of them have non-5-digit codes, of which only the
    # 4 PADS lines are products -> 1,550 dropped. 3,665 codes minus POST, M, C2, DOT and BANK
    # CHARGES = 3,660 items; 4 customers bought only non-products -> 4,335 users.
    assert len(inter.user) == 397_924 - 1_550
    assert ds.n_items == 3_660 and ds.n_users == 4_335
    assert (np.diff(inter.timestamp) >= 0).all()
    assert (inter.event_type == EVENT_CODES["purchase"]).all() and (inter.weight == 8.0).all()
    codes = set(ds.item_ids)
    for bad in ("POST", "DOT", "M", "m", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"):
        assert bad not in codes
    assert not any(c.startswith("gift_0001") for c in codes)
    assert "PADS" in codes, "PADS is a real product with an unusual code"
    assert all(t and t == t.strip() and "Â£" not in t for t in ds.titles)
    assert np.isfinite(ds.prices).all() and (ds.first_seen > 0).all()
    assert datetime.fromtimestamp(int(inter.timestamp[0]), timezone.utc) == datetime(2010, 12, 1, 8, 26, tzinfo=timezone.utc)
    assert datetime.fromtimestamp(int(inter.timestamp[-1]), timezone.utc) == datetime(2011, 12, 9, 12, 50, tzinfo=timezone.utc)


@pytest.mark.dataset
def test_online_retail_title_and_price_are_the_most_recent():
    import pandas as pd

    path = require_shared(ONLINE_RETAIL)
    ds = load_online_retail(path)
    df = pd.read_parquet(path)
    pur = df[df.CustomerID.notna() & ~df.InvoiceNo.str.startswith("C") & (df.Quantity > 0)]
    # 213 codes carry more than one wording; check every item against an independent pandas pass
    pur = pur.assign(ts=pd.to_datetime(pur.InvoiceDate), d=pur.Description.str.strip())
    pur = pur.reset_index().sort_values(["ts", "index"], kind="stable")
    last = pur[pur.d.str.len() > 0].groupby("StockCode").agg(d=("d", "last"), p=("UnitPrice", "last"))
    idx = {c: i for i, c in enumerate(ds.item_ids)}
    multi = pur.groupby("StockCode").d.nunique()
    multi = multi[multi > 1].index.intersection(list(idx))
    assert len(multi) > 100
    for code in multi:
        assert ds.titles[idx[code]] == last.loc[code, "d"], code
        assert ds.prices[idx[code]] == last.loc[code, "p"], code
