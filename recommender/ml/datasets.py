"""Load evaluation datasets into arrays: the Online Retail (UCI) log and the interchange CSVs.

Both loaders return a :class:`Dataset`: the behaviour events as
:class:`~recommender.ml.base.Interactions` (sorted by time) plus per-item metadata arrays
aligned with the item index. Rows that cannot be used are reported as :class:`RowError`
(file, line number, reason) in ``Dataset.errors``; they never silently vanish.

The rules are those of ``EVALUATION.md`` (purchases of Online Retail; the ``items.csv`` /
``events.csv`` interchange format). Pure numpy/pandas: never imports Django.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .base import DEFAULT_EVENT_WEIGHTS, EVENT_CODES, Interactions


#: Online Retail stock codes that are not products (postage, manual, carriage, discount, ...).
NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "M", "m", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"}
)
NON_PRODUCT_PREFIXES = ("gift_0001",)

# Unix seconds outside this range are almost always a unit mistake (milliseconds, days).
_MIN_TS = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp())
_MAX_TS = int(datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp())


@dataclass(frozen=True)
class RowError:
    """One unusable input row: where it is and why it was not used."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class Dataset:
    """Events plus item metadata, every array aligned with the index spaces of ``interactions``.

    Attributes
    ----------
    name : short name used in reports
    interactions : events sorted by time; ``interactions.item_ids`` / ``user_ids`` are set
    item_ids : (n_items,) object, the shop's item ids (str)
    titles, descriptions, categories, brands : (n_items,) object, str ("" when unknown)
    prices : (n_items,) float64, NaN when unknown
    first_seen : (n_items,) int64 unix seconds of the item's first event, ``-1`` if it has none
    user_ids : (n_users,) object, the shop's user ids (str)
    errors : rows that were not used, with line numbers and reasons
    notes : human-readable remarks about the load (counts, placeholders created, ...)
    """

    name: str
    interactions: Interactions
    item_ids: np.ndarray
    titles: np.ndarray
    descriptions: np.ndarray
    categories: np.ndarray
    brands: np.ndarray
    prices: np.ndarray
    first_seen: np.ndarray
    user_ids: np.ndarray
    errors: list[RowError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.interactions.n_items

    def ending(self, until: int) -> "Dataset":
        """The same shop as if its log had ended at ``until`` (unix seconds, exclusive).

        For back-tests at other times of the year. Items and users keep their indices (one
        with no event left is never a candidate nor a test user); ``first_seen`` is recomputed.
        """
        inter = self.interactions
        n = int(np.searchsorted(inter.timestamp, until, side="left"))  # sorted by time
        if n == 0:
            raise ValueError(f"no event before {until} (the log starts at {int(inter.timestamp[0])}).")
        cut = replace(
            inter,
            **{name: getattr(inter, name)[:n] for name in ("user", "item", "timestamp", "event_type", "weight")},
            # per-event arrays (``value``) are cut the same way
            extra={k: v[:n] if isinstance(v, np.ndarray) and len(v) == len(inter.user) else v
                   for k, v in inter.extra.items()},
        )
        first_seen = _first_seen(cut)
        when = datetime.fromtimestamp(until, timezone.utc).strftime("%Y-%m-%d")
        return replace(self, name=f"{self.name} until {when}", interactions=cut, first_seen=first_seen,
                       notes=[*self.notes, f"events from {when} on left out ({len(inter.user) - n:,})"])

    def summary(self) -> str:
        """One line: sizes, time range and number of rejected rows."""
        ts = self.interactions.timestamp
        span = ""
        if len(ts):
            fmt = "%Y-%m-%d"
            lo = datetime.fromtimestamp(int(ts[0]), timezone.utc).strftime(fmt)
            hi = datetime.fromtimestamp(int(ts[-1]), timezone.utc).strftime(fmt)
            span = f", {lo} -> {hi}"
        return (
            f"{self.name}: {len(ts):,} events, {self.n_users:,} users, {self.n_items:,} items"
            f"{span}, {len(self.errors):,} rejected rows"
        )


# --------------------------------------------------------------------------- helpers


def _first_seen(inter: Interactions) -> np.ndarray:
    """(n_items,) int64 unix seconds of each item's first event, -1 for an item with none."""
    first = np.full(inter.n_items, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inter.item, inter.timestamp)
    first[first == np.iinfo(np.int64).max] = -1
    return first


def _event_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_EVENT_WEIGHTS)
    if weights:
        unknown = sorted(set(weights) - set(DEFAULT_EVENT_WEIGHTS))
        if unknown:
            raise ValueError(
                f"Unknown event type(s) in event_weights: {unknown}; "
                f"valid types are {sorted(DEFAULT_EVENT_WEIGHTS)}."
            )
        merged.update({k: float(v) for k, v in weights.items()})
    return merged


def _weight_table(weights: Mapping[str, float]) -> np.ndarray:
    """(max_code + 1,) float32 lookup from event code to weight."""
    table = np.zeros(max(EVENT_CODES.values()) + 1, dtype=np.float32)
    for name, code in EVENT_CODES.items():
        table[code] = weights[name]
    return table


def _build(
    name: str,
    user_codes: np.ndarray,
    item_codes: np.ndarray,
    timestamp: np.ndarray,
    event_type: np.ndarray,
    value: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    titles: np.ndarray,
    descriptions: np.ndarray,
    categories: np.ndarray,
    brands: np.ndarray,
    prices: np.ndarray,
    weights: Mapping[str, float],
    errors: list[RowError],
    notes: list[str],
) -> Dataset:
    """Sort events by time (stable, so file order breaks ties) and assemble the Dataset."""
    order = np.argsort(timestamp, kind="stable")
    ts = timestamp[order].astype(np.int64)
    et = event_type[order].astype(np.int8)
    n_items = len(item_ids)
    inter = Interactions(
        user=user_codes[order].astype(np.int32),
        item=item_codes[order].astype(np.int32),
        timestamp=ts,
        n_users=len(user_ids),
        n_items=n_items,
        event_type=et,
        weight=_weight_table(weights)[et],
        user_ids=user_ids,
        item_ids=item_ids,
        extra={"value": value[order].astype(np.float32)},
    )
    first_seen = _first_seen(inter)
    return Dataset(
        name=name,
        interactions=inter,
        item_ids=item_ids,
        titles=titles,
        descriptions=descriptions,
        categories=categories,
        brands=brands,
        prices=prices.astype(np.float64),
        first_seen=first_seen,
        user_ids=user_ids,
        errors=errors,
        notes=notes,
    )


def fix_mojibake(text: str) -> str:
    """Undo the UTF-8-read-as-Latin-1 damage seen in Online Retail (``Â£`` -> ``£``)."""
    return text.replace("Â£", "£").replace("Â ", " ")


# --------------------------------------------------------------------------- Online Retail


def load_online_retail(
    path: str | Path,
    *,
    event_weights: Mapping[str, float] | None = None,
) -> Dataset:
    """Load the Online Retail (UCI) purchase log with the rules of EVALUATION.md.

    A purchase is a row with a CustomerID, an InvoiceNo not starting with ``C``,
    ``Quantity > 0`` and a real product code (the non-product codes ``POST``, ``DOT``, ``M``,
    ``m``, ``C2``, ``D``, ``S``, ``B``, ``BANK CHARGES``, ``AMAZONFEE``, ``CRUK`` and
    ``gift_0001*`` are dropped). Every purchase row becomes one ``purchase`` event (invoice
    lines of the same product are not merged); ``extra["value"]`` holds the quantity.
    ``InvoiceDate`` has no zone and is read as UTC.

    The title of an item is its most recent non-empty Description among purchases (stripped,
    ``Â£`` mojibake fixed); its price is its most recent UnitPrice. There is no category,
    brand or description. Rows that are not purchases are not errors: the dataset is a
    general ledger, and ``notes`` counts what was filtered out and why.

    Parameters
    ----------
    path : the ``online_retail.parquet`` file, or the folder that holds it
    event_weights : overrides of :data:`DEFAULT_EVENT_WEIGHTS`
    """
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "online_retail.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass the online_retail.parquet file or its folder.")
    weights = _event_weights(event_weights)
    df = pd.read_parquet(path)
    n_rows = len(df)
    df = df.reset_index(drop=True)
    notes: list[str] = [f"{n_rows:,} rows read from {path.name}"]

    invoice = df["InvoiceNo"].astype(str)
    code = df["StockCode"].astype(str).str.strip()
    no_customer = df["CustomerID"].isna().to_numpy()
    cancelled = invoice.str.startswith("C").to_numpy()
    not_positive = (df["Quantity"] <= 0).to_numpy()
    non_product = (
        code.isin(NON_PRODUCT_CODES) | code.str.startswith(NON_PRODUCT_PREFIXES)
    ).to_numpy()
    keep = ~(no_customer | cancelled | not_positive | non_product)
    for label, mask in (
        ("no CustomerID", no_customer),
        ("cancellation invoice", cancelled & ~no_customer),
        ("Quantity <= 0", not_positive & ~no_customer & ~cancelled),
        ("non-product code", non_product & ~no_customer & ~cancelled & ~not_positive),
    ):
        notes.append(f"{int(mask.sum()):,} rows dropped: {label}")

    pur = pd.DataFrame(
        {
            "user": df["CustomerID"].to_numpy()[keep],
            "item": code.to_numpy()[keep],
            "desc": df["Description"].to_numpy()[keep],
            "qty": df["Quantity"].to_numpy()[keep].astype(np.float64),
            "price": df["UnitPrice"].to_numpy()[keep].astype(np.float64),
            "ts": pd.to_datetime(df["InvoiceDate"].to_numpy()[keep], utc=True),
            "row": np.flatnonzero(keep),
        }
    )
    # Seconds since the epoch, independent of the datetime unit pandas chose.
    epoch = pd.Timestamp(0, tz="UTC")
    pur["ts"] = ((pur["ts"] - epoch) // pd.Timedelta(seconds=1)).astype(np.int64)
    pur["user"] = pur["user"].astype(np.int64).astype(str)
    notes.append(f"{len(pur):,} purchase events kept")

    # Index spaces: users and items in order of first appearance in time.
    pur = pur.sort_values(["ts", "row"], kind="stable").reset_index(drop=True)
    user_codes, user_ids = pd.factorize(pur["user"], sort=False)
    item_codes, item_ids = pd.factorize(pur["item"], sort=False)
    user_ids = np.asarray(user_ids, dtype=object)
    item_ids = np.asarray(item_ids, dtype=object)
    n_items = len(item_ids)

    # Most recent non-empty Description / UnitPrice per item (file order breaks ties).
    pur["item_code"] = item_codes
    desc = pur["desc"].astype(object).where(pur["desc"].notna(), "")
    desc = desc.map(lambda s: fix_mojibake(str(s)).strip())
    with_title = pur.assign(title=desc)[desc.str.len() > 0]
    last_title = with_title.groupby("item_code", sort=True)["title"].last()
    titles = np.full(n_items, "", dtype=object)
    titles[last_title.index.to_numpy()] = last_title.to_numpy()
    last_price = pur.groupby("item_code", sort=True)["price"].last()
    prices = np.full(n_items, np.nan)
    prices[last_price.index.to_numpy()] = last_price.to_numpy()
    empty = np.full(n_items, "", dtype=object)

    n = len(pur)
    return _build(
        name="online-retail",
        user_codes=np.asarray(user_codes),
        item_codes=np.asarray(item_codes),
        timestamp=pur["ts"].to_numpy(),
        event_type=np.full(n, EVENT_CODES["purchase"], dtype=np.int8),
        value=pur["qty"].to_numpy(),
        user_ids=user_ids,
        item_ids=item_ids,
        titles=titles,
        descriptions=empty,
        categories=empty.copy(),
        brands=empty.copy(),
        prices=prices,
        weights=weights,
        errors=[],
        notes=notes,
    )


# --------------------------------------------------------------------------- interchange CSV

ITEM_COLUMNS = ("item_id", "title", "description", "category", "brand", "price")
ITEM_REQUIRED = ("item_id", "title")
EVENT_COLUMNS = ("user_id", "item_id", "event_type", "timestamp", "value", "event_id")
EVENT_REQUIRED = ("user_id", "item_id", "event_type", "timestamp")


def parse_timestamp(text: str) -> int:
    """Unix seconds (int, floored) from ISO 8601 or Unix seconds; a naive time is UTC.

    Raises
    ------
    ValueError
        with a message that says what was expected.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty timestamp")
    try:
        secs = float(s)
    except ValueError:
        secs = None
    if secs is not None:
        if not math.isfinite(secs):
            raise ValueError(f"timestamp {s!r} is not a finite number")
        ts = math.floor(secs)
    else:
        iso = s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s
        try:
            dt = datetime.fromisoformat(iso)
        except ValueError:
            raise ValueError(
                f"timestamp {s!r} is neither ISO 8601 (2024-05-01T12:30:00Z) nor Unix seconds"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        ts = math.floor(dt.timestamp())
    if not _MIN_TS <= ts < _MAX_TS:
        hint = " (milliseconds? send seconds)" if ts >= _MAX_TS else ""
        raise ValueError(f"timestamp {s!r} is outside 2000-01-01 .. 2100-01-01{hint}")
    return ts


def _read_csv(path: Path, required: Iterable[str], errors: list[RowError]):
    """Yield ``(line_number, {column: value})`` for each data row of a UTF-8 CSV file."""
    name = path.name
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path} is empty; it needs a header row.") from None
        header = [h.strip().lower() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(
                f"{path} has no column(s) {missing}; its header is {header}. "
                f"Required columns: {list(required)}."
            )
        n_cols = len(header)
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                errors.append(RowError(name, start, f"unreadable row: {exc}"))
                start = reader.line_num + 1
                continue
            line = start
            start = reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line: nothing to report
            if len(row) != n_cols:
                errors.append(
                    RowError(name, line, f"has {len(row)} fields, the header has {n_cols}")
                )
                continue
            yield line, dict(zip(header, (v.strip() for v in row)))


def load_interchange(
    folder: str | Path,
    *,
    event_weights: Mapping[str, float] | None = None,
    unknown_items: str = "placeholder",
    name: str | None = None,
) -> Dataset:
    """Load ``items.csv`` and ``events.csv`` (the interchange format of EVALUATION.md).

    Every rejected row is reported in ``Dataset.errors`` with its file, line number
    (1-based, the header is line 1; the first line of a multi-line quoted row) and reason:
    wrong number of fields, missing required value, unknown event type, bad timestamp,
    bad price or value, duplicate ``item_id`` (the first row wins) or duplicate
    ``event_id`` (the first event wins). Extra columns are ignored. Blank lines are skipped.

    Each event's weight is the weight of its type (``event_weights``); its ``value``
    (quantity, rating, dwell seconds; NaN when absent) is kept in
    ``interactions.extra["value"]`` for models that want it. ``impression`` events are
    accepted too (weight 0 by default).

    Parameters
    ----------
    folder : folder with ``items.csv`` and ``events.csv``
    event_weights : overrides of :data:`DEFAULT_EVENT_WEIGHTS`
    unknown_items : what to do with an event whose ``item_id`` is not in items.csv:
        ``"placeholder"`` (the app's default) adds an item with an empty title and notes it;
        ``"strict"`` rejects the row as an error
    name : dataset name for reports (default: the folder name)
    """
    if unknown_items not in ("placeholder", "strict"):
        raise ValueError(f"unknown_items={unknown_items!r}; use 'placeholder' or 'strict'.")
    folder = Path(folder)
    for fname in ("items.csv", "events.csv"):
        if not (folder / fname).exists():
            raise FileNotFoundError(f"{folder / fname} does not exist; the interchange format needs items.csv and events.csv.")
    weights = _event_weights(event_weights)
    errors: list[RowError] = []
    notes: list[str] = []

    # ---- items
    item_index: dict[str, int] = {}
    titles: list[str] = []
    descs: list[str] = []
    cats: list[str] = []
    brands: list[str] = []
    prices: list[float] = []
    for line, row in _read_csv(folder / "items.csv", ITEM_REQUIRED, errors):
        item_id = row.get("item_id", "")
        title = row.get("title", "")
        if not item_id:
            errors.append(RowError("items.csv", line, "item_id is empty"))
            continue
        if not title:
            errors.append(RowError("items.csv", line, f"title is empty for item {item_id!r}"))
            continue
        if item_id in item_index:
            errors.append(
                RowError("items.csv", line, f"duplicate item_id {item_id!r} (the first row is kept)")
            )
            continue
        price_text = row.get("price", "")
        price = math.nan
        if price_text:
            try:
                price = float(price_text.replace(",", ""))
            except ValueError:
                errors.append(RowError("items.csv", line, f"price {price_text!r} is not a number"))
                continue
            if not math.isfinite(price) or price < 0:
                errors.append(RowError("items.csv", line, f"price {price_text!r} must be a number >= 0"))
                continue
        item_index[item_id] = len(titles)
        titles.append(title)
        descs.append(row.get("description", ""))
        cats.append(row.get("category", ""))
        brands.append(row.get("brand", ""))
        prices.append(price)
    n_catalog = len(titles)

    # ---- events
    user_index: dict[str, int] = {}
    seen_event_ids: set[str] = set()
    u_list: list[int] = []
    i_list: list[int] = []
    t_list: list[int] = []
    e_list: list[int] = []
    v_list: list[float] = []
    for line, row in _read_csv(folder / "events.csv", EVENT_REQUIRED, errors):
        missing = [c for c in EVENT_REQUIRED if not row.get(c, "")]
        if missing:
            errors.append(RowError("events.csv", line, f"missing value for {', '.join(missing)}"))
            continue
        etype = row["event_type"].lower()
        if etype not in EVENT_CODES:
            errors.append(
                RowError(
                    "events.csv",
                    line,
                    f"event_type {row['event_type']!r} is not one of {sorted(EVENT_CODES)}",
                )
            )
            continue
        try:
            ts = parse_timestamp(row["timestamp"])
        except ValueError as exc:
            errors.append(RowError("events.csv", line, str(exc)))
            continue
        value_text = row.get("value", "")
        value = math.nan
        if value_text:
            try:
                value = float(value_text)
            except ValueError:
                errors.append(RowError("events.csv", line, f"value {value_text!r} is not a number"))
                continue
            if not math.isfinite(value):
                errors.append(RowError("events.csv", line, f"value {value_text!r} is not finite"))
                continue
        event_id = row.get("event_id", "")
        if event_id:
            if event_id in seen_event_ids:
                errors.append(
                    RowError("events.csv", line, f"duplicate event_id {event_id!r} (the first is kept)")
                )
                continue
            seen_event_ids.add(event_id)
        item_id = row["item_id"]
        item = item_index.get(item_id)
        if item is None:
            if unknown_items == "strict":
                errors.append(RowError("events.csv", line, f"item_id {item_id!r} is not in items.csv"))
                continue
            item = item_index[item_id] = len(titles)
            titles.append("")
            descs.append("")
            cats.append("")
            brands.append("")
            prices.append(math.nan)
        user = user_index.setdefault(row["user_id"], len(user_index))
        u_list.append(user)
        i_list.append(item)
        t_list.append(ts)
        e_list.append(EVENT_CODES[etype])
        v_list.append(value)

    if len(titles) > n_catalog:
        notes.append(
            f"{len(titles) - n_catalog:,} item_id(s) in events.csv are not in items.csv: "
            "added as placeholder items with no title"
        )
    notes.append(f"{len(u_list):,} events kept, {len(errors):,} rows rejected")
    obj = lambda xs: np.asarray(xs, dtype=object)  # noqa: E731
    return _build(
        name=name or folder.name,
        user_codes=np.asarray(u_list, dtype=np.int64),
        item_codes=np.asarray(i_list, dtype=np.int64),
        timestamp=np.asarray(t_list, dtype=np.int64),
        event_type=np.asarray(e_list, dtype=np.int8),
        value=np.asarray(v_list, dtype=np.float64),
        user_ids=obj(list(user_index)),
        item_ids=obj(list(item_index)),
        titles=obj(titles),
        descriptions=obj(descs),
        categories=obj(cats),
        brands=obj(brands),
        prices=np.asarray(prices, dtype=np.float64),
        weights=weights,
        errors=errors,
        notes=notes,
    )


def load_dataset(path: str | Path, **kwargs) -> Dataset:
    """Load a folder in the interchange format, or the Online Retail parquet (file or folder)."""
    path = Path(path)
    if path.is_dir() and (path / "events.csv").exists():
        return load_interchange(path, **kwargs)
    if path.suffix == ".parquet" or (path.is_dir() and (path / "online_retail.parquet").exists()):
        return load_online_retail(path, **kwargs)
    raise ValueError(
        f"{path}: expected a folder with items.csv and events.csv, or online_retail.parquet."
    )
