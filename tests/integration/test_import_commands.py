"""The import_items / import_events commands: CSV and Online Retail, bad rows, idempotency, clear errors."""
from __future__ import annotations

import io
import math
import re
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction

from recommender.ingestion import files
from recommender.models import Event, EventType, Item, ShopUser

pytestmark = pytest.mark.django_db


def run(command: str, *args, **options) -> tuple[str, str]:
    """Call a command; returns (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *map(str, args), stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def count(out: str, label: str) -> int:
    """The number a summary line gives after ``label:``."""
    match = re.search(rf"{re.escape(label)}:\s+([\d,]+)", out)
    assert match, f"no {label!r} in:\n{out}"
    return int(match.group(1).replace(",", ""))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


ITEMS_CSV = """item_id,title,description,category,brand,price,colour_we_ignore
mug-1,Blue mug,"A mug, blue",kitchen/mugs,Acme,9.50,blue
mug-2,Red mug,,kitchen/mugs,,,red
plate-1,Plate,"A plate
that spans two lines",kitchen/plates,Acme,12,white
"""

EVENTS_CSV = """user_id,item_id,event_type,timestamp,value,event_id
u1,mug-1,view,2024-05-01T12:00:00Z,35,e1
u1,mug-1,purchase,2024-05-01T12:05:00,2,e2
u2,plate-1,rating,1714565100,4,e3
u2,mug-2,search,2024-05-01T14:00:00+02:00,,e4
"""


# --- happy paths ---------------------------------------------------------------------------------


def test_import_items_csv(tmp_path):
    # given an items.csv with an extra column, empty optional cells and a quoted multi-line cell
    path = write(tmp_path, "items.csv", ITEMS_CSV)
    # when it is imported
    out, err = run("import_items", path)
    # then every item is there with its fields; empty cells are absent, not empty strings or zero
    assert Item.objects.count() == 3
    mug = Item.objects.get(external_id="mug-1")
    assert (mug.title, mug.description, mug.category, mug.brand, mug.price) == (
        "Blue mug", "A mug, blue", "kitchen/mugs", "Acme", Decimal("9.50")
    )
    red = Item.objects.get(external_id="mug-2")
    assert red.price is None and red.brand == "" and red.description == ""
    assert Item.objects.get(external_id="plate-1").description == "A plate\nthat spans two lines"
    assert "rows read:" in out and "3 created, 0 updated" in out and "rows skipped:" in out
    assert "chunks committed: 1" in out
    assert "items.csv" in err  # the progress bar goes to stderr


def test_import_events_csv(tmp_path):
    run("import_items", write(tmp_path, "items.csv", ITEMS_CSV))
    out, _ = run("import_events", write(tmp_path, "events.csv", EVENTS_CSV))
    assert Event.objects.count() == 4
    e2 = Event.objects.get(event_id="e2")
    assert e2.event_type == EventType.PURCHASE and e2.value == 2.0
    assert e2.timestamp == datetime(2024, 5, 1, 12, 5, tzinfo=timezone.utc)  # no zone: UTC
    assert Event.objects.get(event_id="e3").timestamp == datetime(2024, 5, 1, 12, 5, tzinfo=timezone.utc)
    assert Event.objects.get(event_id="e4").timestamp == datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert Event.objects.get(event_id="e4").value is None  # an empty cell is absent
    assert ShopUser.objects.count() == 2
    assert count(out, "events imported") == 4


def test_update_existing_items(tmp_path):
    run("import_items", write(tmp_path, "items.csv", ITEMS_CSV))
    out, _ = run("import_items", write(tmp_path, "items2.csv", "item_id,title\nmug-1,Green mug\nnew-1,New\n"))
    assert Item.objects.get(external_id="mug-1").title == "Green mug"
    assert "1 created, 1 updated" in out


# --- bad rows ------------------------------------------------------------------------------------


def test_bad_item_rows_are_listed_with_line_numbers_and_good_rows_imported(tmp_path):
    # given rows that break each rule, after a quoted cell spanning two physical lines
    text = (
        "item_id,title,price\n"            # line 1
        'ok-1,"Two\nline title",1\n'      # lines 2-3
        "ok-2,Fine,2.5\n"                  # line 4
        ",No id,1\n"                       # line 5: empty item_id
        "bad-2,,1\n"                       # line 6: empty title
        "bad-3,Pricey,abc\n"              # line 7: price not a number
        "bad-4,Too,many,fields\n"          # line 8
        "bad-5,Negative,-3\n"              # line 9
        "ok-3,Last,\n"                     # line 10
    )
    out, _ = run("import_items", write(tmp_path, "items.csv", text))
    assert sorted(Item.objects.values_list("external_id", flat=True)) == ["ok-1", "ok-2", "ok-3"]
    assert count(out, "rows read") == 8
    assert count(out, "rows skipped") == 5
    for needle in (
        "line 5: 'item_id' must not be empty",
        "line 6: 'title' must not be empty",
        "line 7: 'price' must be a number",
        "line 8: has 4 fields; the header has 3",
        "line 9: 'price' must be a number",
        "invalid price: 2",
        "wrong number of fields: 1",
    ):
        assert needle in out, needle


def test_bad_event_rows_are_listed_with_line_numbers_and_good_rows_imported(tmp_path):
    text = (
        "user_id,item_id,event_type,timestamp,value\n"  # line 1
        "u1,i1,view,2024-05-01T10:00:00Z,12\n"           # 2 ok
        "u1,i1,teleport,2024-05-01T10:00:00Z,\n"         # 3 unknown type
        "u1,i1,click,yesterday,\n"                       # 4 bad timestamp
        "u1,i1,click,2999-01-01T00:00:00Z,\n"            # 5 future
        "u1,i1,purchase,2024-05-01T10:00:00Z,lots\n"     # 6 value not a number
        ",i1,view,2024-05-01T10:00:00Z,\n"               # 7 no user
        "\n"                                             # 8 blank: not a row
        "u2,i2,Purchase,1714557600,3\n"                  # 9 ok (type is case-insensitive)
    )
    out, _ = run("import_events", write(tmp_path, "events.csv", text))
    assert Event.objects.count() == 2
    assert set(Event.objects.values_list("event_type", flat=True)) == {EventType.VIEW, EventType.PURCHASE}
    assert count(out, "rows skipped") == 5
    for needle in (
        "line 3: Unknown event type 'teleport'",
        "line 4: 'timestamp' 'yesterday'",
        "line 5: 'timestamp' 2999-01-01T00:00:00+00:00 is in the future",
        "line 6: 'value' must be a finite number",
        "line 7: 'user_id' must not be empty",
        "invalid timestamp: 2",
    ):
        assert needle in out, needle
    # the events named items the catalog did not have: placeholders, counted
    assert "placeholder items created: 2" in out
    assert Item.objects.filter(is_placeholder=True).count() == 2


def test_strict_items_lists_unknown_items_instead_of_creating_placeholders(tmp_path):
    run("import_items", write(tmp_path, "items.csv", ITEMS_CSV))
    text = "user_id,item_id,event_type,timestamp\nu1,mug-1,view,2024-05-01T10:00:00Z\nu1,ghost,view,2024-05-01T10:00:00Z\n"
    out, _ = run("import_events", write(tmp_path, "events.csv", text), strict_items=True)
    assert list(Event.objects.values_list("item__external_id", flat=True)) == ["mug-1"]
    assert not Item.objects.filter(external_id="ghost").exists()
    assert "line 3: Unknown item 'ghost'" in out and "unknown item: 1" in out


def test_many_bad_rows_are_all_counted_but_only_the_first_listed(tmp_path):
    rows = "".join(f"u{i},i{i},nope,2024-05-01T10:00:00Z\n" for i in range(50))
    out, _ = run("import_events", write(tmp_path, "events.csv", "user_id,item_id,event_type,timestamp\n" + rows))
    assert "invalid event_type: 50" in out
    assert f"first {files.MAX_LISTED} skipped row(s)" in out
    assert "line 21:" in out and "line 22:" not in out
    assert Event.objects.count() == 0


def test_undecodable_bytes_are_reported_per_row(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(
        b"user_id,item_id,event_type,timestamp\nu1,i1,view,2024-05-01T10:00:00Z\nu\xff,i1,view,2024-05-01T10:00:00Z\n"
    )
    out, _ = run("import_events", path)
    assert Event.objects.count() == 1
    assert "line 3: holds bytes that are not valid UTF-8" in out


# --- idempotency ---------------------------------------------------------------------------------


def test_reimport_without_event_ids_stores_nothing_twice(tmp_path):
    # given a file with no event_id column, holding two identical rows (two separate events)
    text = (
        "user_id,item_id,event_type,timestamp,value\n"
        "u1,i1,add_to_cart,2024-05-01T10:00:00Z,1\n"
        "u1,i1,add_to_cart,2024-05-01T10:00:00Z,1\n"
        "u2,i1,view,2024-05-01T10:01:00Z,\n"
    )
    path = write(tmp_path, "events.csv", text)
    out1, _ = run("import_events", path, chunk_size=1)
    # then both identical rows are stored, with deterministic ids
    assert Event.objects.count() == 3
    ids = set(Event.objects.values_list("event_id", flat=True))
    assert len(ids) == 3 and all(i.startswith("csv-") for i in ids)
    # when the same file is imported again
    out2, _ = run("import_events", path)
    # then nothing new is stored and the summary says why
    assert Event.objects.count() == 3
    assert set(Event.objects.values_list("event_id", flat=True)) == ids
    assert count(out2, "events imported") == 0 and count(out2, "duplicates skipped") == 3
    assert "chunks committed: 3" in out1


def test_reimport_with_event_ids_and_repeats_within_the_file(tmp_path):
    path = write(tmp_path, "events.csv", EVENTS_CSV + "u1,mug-1,view,2024-05-01T12:00:00Z,35,e1\n")
    out, _ = run("import_events", path)
    assert Event.objects.count() == 4 and count(out, "duplicates skipped") == 1
    run("import_events", path)
    assert Event.objects.count() == 4


# --- errors that stop the import before anything is written ------------------------------------


def test_missing_required_columns_name_them(tmp_path):
    path = write(tmp_path, "events.csv", "user_id,item,event_type\nu1,i1,view\n")
    with pytest.raises(CommandError, match="missing required column\\(s\\): item_id, timestamp"):
        run("import_events", path)
    path = write(tmp_path, "items.csv", "id,name\n1,x\n")
    with pytest.raises(CommandError, match="item_id, title"):
        run("import_items", path)
    assert Event.objects.count() == 0 and Item.objects.count() == 0


def test_missing_file_empty_file_and_wrong_format(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        run("import_items", tmp_path / "nope.csv")
    with pytest.raises(CommandError, match="is empty"):
        run("import_items", write(tmp_path, "empty.csv", ""))
    with pytest.raises(CommandError, match="is a folder"):
        run("import_items", tmp_path)
    with pytest.raises(CommandError, match="not a readable Parquet file"):
        run("import_events", write(tmp_path, "events.csv", EVENTS_CSV), fmt="online-retail")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("import_items", str(tmp_path / "x.csv"), "--format", "json", stdout=io.StringIO())
    with pytest.raises(CommandError, match="at least 1"):
        run("import_items", write(tmp_path, "items.csv", ITEMS_CSV), chunk_size=0)


def test_the_parquet_file_as_csv_says_which_format_to_use(online_retail_path):
    with pytest.raises(CommandError, match="Parquet file, not CSV.*--format online-retail"):
        run("import_events", online_retail_path)
    assert Event.objects.count() == 0


def test_a_failing_chunk_is_rolled_back_and_earlier_chunks_stay(tmp_path, monkeypatch):
    # given a writer that fails on the second chunk after having written part of it
    real = files.do_write_events
    calls = {"n": 0}

    def flaky(events, **kwargs):
        calls["n"] += 1
        with transaction.atomic():
            result = real(events, **kwargs)
            if calls["n"] == 2:
                raise DatabaseError("disk full")
        return result

    monkeypatch.setattr(files, "do_write_events", flaky)
    rows = "".join(f"u{i},i{i},view,2024-05-01T10:00:{i:02d}Z,,e{i}\n" for i in range(6))
    path = write(tmp_path, "events.csv", "user_id,item_id,event_type,timestamp,value,event_id\n" + rows)
    # when the import runs in chunks of 2
    out = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("import_events", str(path), chunk_size=2, stdout=out, stderr=io.StringIO())
    # then the first chunk is committed, the failed one left nothing, and the message says so
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["e0", "e1"]
    assert "Chunk 2 (lines 4-5) failed and was rolled back: disk full" in str(info.value)
    assert "1 earlier chunk(s) were committed" in str(info.value)
    assert "chunks committed: 1" in out.getvalue()
    # and running it again (fixed) completes without duplicates
    monkeypatch.setattr(files, "do_write_events", real)
    out2, _ = run("import_events", path, chunk_size=2)
    assert Event.objects.count() == 6 and count(out2, "duplicates skipped") == 2


# --- Online Retail (UCI) -------------------------------------------------------------------------

SAMPLE_ROWS = 25_000
NON_PRODUCT = {"POST", "DOT", "M", "m", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"}


def expected_online_retail(path: Path, n_rows: int):
    """The documented rules (EVALUATION.md), computed independently with pandas on the same sample."""
    import pandas as pd

    df = pd.read_parquet(path).head(n_rows)
    code = df.StockCode.astype(str).str.strip()
    pur_mask = (
        df.CustomerID.notna()
        & ~df.InvoiceNo.astype(str).str.startswith("C")
        & (df.Quantity > 0)
        & ~code.isin(NON_PRODUCT)
        & ~code.str.startswith("gift_0001")
    )
    pur = df[pur_mask].assign(StockCode=code[pur_mask])
    ordered = pur.assign(ts=pd.to_datetime(pur.InvoiceDate)).sort_values("ts", kind="stable")
    desc = ordered.Description.fillna("").str.replace("Â£", "£").str.strip()
    titles = ordered.assign(d=desc)[desc != ""].groupby("StockCode").d.last()
    prices = ordered.groupby("StockCode").UnitPrice.last()
    return df, pur, titles, prices


def test_online_retail_items_and_events_on_a_sample(online_retail_path):
    df, pur, titles, prices = expected_online_retail(online_retail_path, SAMPLE_ROWS)
    # when the items, then the purchases, of the first rows are imported
    out_items, _ = run("import_items", online_retail_path, fmt="online-retail", limit_rows=SAMPLE_ROWS)
    out_events, _ = run("import_events", online_retail_path, fmt="online-retail", limit_rows=SAMPLE_ROWS)
    # then the catalog is one item per purchased product code, titled by its latest Description
    assert Item.objects.count() == pur.StockCode.nunique() == len(titles)
    sample = titles.sample(50, random_state=0)
    stored = dict(Item.objects.filter(external_id__in=list(sample.index)).values_list("external_id", "title"))
    assert stored == sample.to_dict()
    stored_prices = dict(Item.objects.filter(external_id__in=list(sample.index)).values_list("external_id", "price"))
    assert stored_prices == {k: Decimal(str(round(prices[k], 2))).quantize(Decimal("0.01")) for k in sample.index}
    # and every purchase line is one event, by a user named by the integer CustomerID
    assert Event.objects.count() == len(pur)
    assert ShopUser.objects.count() == pur.CustomerID.nunique()
    assert set(ShopUser.objects.values_list("external_id", flat=True)) == {str(int(c)) for c in pur.CustomerID.unique()}
    assert set(Event.objects.values_list("event_type", flat=True)) == {EventType.PURCHASE}
    assert math.isclose(sum(Event.objects.values_list("value", flat=True)), float(pur.Quantity.sum()))
    first = pur.iloc[0]
    ev = Event.objects.get(event_id=f"or-{first.InvoiceNo}-{first.StockCode}-{pur.index[0] + 1}")
    assert ev.timestamp == datetime.fromisoformat(first.InvoiceDate).replace(tzinfo=timezone.utc)
    assert ev.value == float(first.Quantity) and ev.user.external_id == str(int(first.CustomerID))
    # the items were all there already: nothing written twice, no placeholders
    assert not Item.objects.filter(is_placeholder=True).exists()
    assert "catalog items written first" not in out_events
    # and the summaries count what the rules dropped, by reason
    no_customer = int(df.CustomerID.isna().sum())
    cancelled = int((df.CustomerID.notna() & df.InvoiceNo.str.startswith("C")).sum())
    assert count(out_events, "rows read") == SAMPLE_ROWS
    assert f"not used, no CustomerID: {no_customer:,}" in out_events
    assert f"not used, cancellation (InvoiceNo starts with C): {cancelled:,}" in out_events
    assert count(out_events, "events imported") == len(pur)
    assert f"{len(titles):,} created" in out_items
    # when the purchases are imported again, nothing is stored twice
    again, _ = run("import_events", online_retail_path, fmt="online-retail", limit_rows=SAMPLE_ROWS)
    assert Event.objects.count() == len(pur)
    assert count(again, "duplicates skipped") == len(pur)


def test_online_retail_events_create_their_items_with_titles(online_retail_path):
    # given an empty catalog, when purchases are imported before the items
    out, _ = run("import_events", online_retail_path, fmt="online-retail", limit_rows=3_000)
    _, pur, titles, _ = expected_online_retail(online_retail_path, 3_000)
    # then the items were created first, with their titles: no placeholders
    assert "catalog items written first" in out
    assert Item.objects.count() == len(titles)
    assert not Item.objects.filter(is_placeholder=True).exists()
    assert not Item.objects.filter(title="").exists()
    assert Event.objects.count() == len(pur)
