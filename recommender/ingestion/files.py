"""Import catalog and event files in chunks: interchange CSV and the Online Retail (UCI) parquet.

A *reader* (``open_items`` / ``open_events``) checks the file up front (it exists, it is
the format asked for, it has the required columns) and returns a :class:`Source` whose
chunks are plain record dicts in the API format, each with the line (CSV) or row
(parquet) it came from. An *importer* (``do_import_items`` / ``do_import_events``)
validates every chunk with the API's validators and writes the good records with the
API's write functions, one transaction per chunk. Bad rows never vanish: each one is
counted by reason in the :class:`ImportReport`, and the first ones are listed with their
line numbers. Re-importing a file stores nothing twice (events get a deterministic
``event_id`` when the file has none).
"""
from __future__ import annotations

import csv
import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..conf import settings as rec_settings
from ..ml.datasets import NON_PRODUCT_CODES, NON_PRODUCT_PREFIXES, fix_mojibake
from ..models import Item
from .errors import FieldError
from .events import do_write_events
from .items import do_write_items
from .validation import validate_events, validate_items

FORMATS = ("csv", "online-retail")
ITEM_COLUMNS = ("item_id", "title", "description", "category", "brand", "price")
ITEM_REQUIRED = ("item_id", "title")
# ``query`` is not in the interchange table but is part of the API record, so a shop's
# export of search events keeps its query text; any other column is ignored.
EVENT_COLUMNS = ("user_id", "item_id", "event_type", "timestamp", "value", "event_id", "query")
EVENT_REQUIRED = ("user_id", "item_id", "event_type", "timestamp")
DEFAULT_ITEM_CHUNK = 5_000
DEFAULT_EVENT_CHUNK = 10_000
MAX_LISTED = 20


class FileProblem(ValueError):
    """The file cannot be imported at all (missing, wrong format, missing columns)."""


@dataclass(frozen=True)
class RowProblem:
    """One row that was not imported: where it is, a short reason to count by, and the detail."""

    line: int
    reason: str
    message: str


@dataclass
class Chunk:
    """Records made from one stretch of the file, with the line/row each came from."""

    records: list[dict[str, Any]]
    lines: list[int]
    problems: list[RowProblem] = field(default_factory=list)
    rows: int = 0  # source rows this chunk covers, good and bad (for progress and counts)


@dataclass
class Source:
    """An opened, checked input file: its chunks plus what its format's rules filtered out."""

    path: Path
    fmt: str
    # Where a problem is: "line" (CSV, 1-based, the header is line 1), "row" (parquet,
    # 1-based) or "item" (the n-th item of a catalog derived from an event log).
    unit: str
    total: int | None
    chunks: Iterator[Chunk]
    rows_read: int = 0  # known up front for parquet; CSV counts as it goes
    dropped: Counter = field(default_factory=Counter)
    catalog: list[dict[str, Any]] | None = None  # items a format derives from its event file


@dataclass
class ImportReport:
    """What an import did, for the command's summary (and the tests)."""

    kind: str  # "items" or "events"
    path: str
    fmt: str
    unit: str = "line"
    rows_read: int = 0
    imported: int = 0  # events stored, or items created + updated
    created: int = 0
    updated: int = 0
    duplicates: int = 0
    created_users: int = 0
    created_items: int = 0  # placeholders made for events naming unknown items
    catalog_items_written: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    problems: list[RowProblem] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    chunks_committed: int = 0

    def add_problem(self, problem: RowProblem) -> None:
        """Count a skipped row by reason; keep the first few for listing."""
        self.skipped += 1
        self.reasons[problem.reason] += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(problem)

    def summary_lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        out = [f"Imported {self.kind} from {self.path} (format {self.fmt})."]
        out.append(f"  rows read:{'':>15}{self.rows_read:>12,}")
        for reason, n in self.dropped.most_common():
            out.append(f"  not used, {reason}: {n:,}")
        if self.catalog_items_written:
            out.append(
                "  catalog items written first (titles and prices from the file): "
                f"{self.catalog_items_written:,}"
            )
        if self.kind == "items":
            out.append(
                f"  items imported:{'':>10}{self.imported:>12,}"
                f"  ({self.created:,} created, {self.updated:,} updated)"
            )
            if self.duplicates:
                out.append(f"  repeated item_ids (the last row wins): {self.duplicates:,}")
        else:
            out.append(f"  events imported:{'':>9}{self.imported:>12,}")
            out.append(
                f"  duplicates skipped:{'':>6}{self.duplicates:>12,}"
                "  (event_id already stored or repeated in the file)"
            )
            out.append(f"  users created: {self.created_users:,}; placeholder items created: {self.created_items:,}")
        out.append(f"  rows skipped:{'':>12}{self.skipped:>12,}")
        for reason, n in self.reasons.most_common():
            out.append(f"    {reason}: {n:,}")
        if self.problems:
            shown = len(self.problems)
            out.append(f"  first {shown} skipped row(s):" if shown < self.skipped else "  skipped rows:")
            out.extend(f"    {self.unit} {p.line}: {p.message}" for p in self.problems)
        out.append(f"  chunks committed: {self.chunks_committed:,} (each chunk is one transaction)")
        return out


class ImportFailed(Exception):
    """A chunk could not be written; earlier chunks stay committed, this one was rolled back."""

    def __init__(self, report: ImportReport, chunk_number: int, first: int, last: int, cause: BaseException):
        self.report = report
        self.chunk_number = chunk_number
        self.cause = cause
        super().__init__(
            f"Chunk {chunk_number} ({report.unit}s {first}-{last}) failed and was rolled back: {cause}. "
            f"{report.chunks_committed} earlier chunk(s) were committed. Fix the cause and run the "
            "same command again: rows already imported are not stored twice."
        )


# --------------------------------------------------------------------------- CSV


def _check_path(path: Path) -> None:
    if not path.exists():
        raise FileProblem(f"{path} does not exist.")
    if path.is_dir():
        raise FileProblem(f"{path} is a folder; pass the file itself.")


def _count_lines(path: Path) -> int:
    """Physical lines in the file (for the progress bar; quoted newlines make it an overestimate)."""
    n = 0
    last = b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def _open_csv(path: Path, required: tuple[str, ...], columns: tuple[str, ...]) -> tuple[Any, Any, list[str]]:
    """Open a UTF-8 CSV, check its header; returns (file, reader, header)."""
    _check_path(path)
    with path.open("rb") as fh:
        head = fh.read(4)
    if head == b"PAR1":
        raise FileProblem(
            f"{path} is a Parquet file, not CSV. For the UCI Online Retail file use --format online-retail."
        )
    # surrogateescape keeps reading past a bad byte so that the row is reported, not the file refused.
    fh = path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        fh.close()
        raise FileProblem(f"{path} is empty; it needs a header row with the columns {', '.join(required)}.") from None
    except csv.Error as exc:
        fh.close()
        raise FileProblem(f"{path}: the header row is not valid CSV ({exc}).") from None
    header = [h.strip().lower() for h in header]
    if any(_bad_text(h) for h in header):
        fh.close()
        raise FileProblem(f"{path} is not UTF-8 text; save it as UTF-8 CSV.")
    missing = [c for c in required if c not in header]
    if missing:
        fh.close()
        raise FileProblem(
            f"{path} is missing required column(s): {', '.join(missing)}. Its header is "
            f"{', '.join(header) or '(empty)'}; required: {', '.join(required)}; optional: "
            f"{', '.join(c for c in columns if c not in required)}."
        )
    return fh, reader, header


def _bad_text(text: str) -> bool:
    """True when the text holds bytes that were not valid UTF-8 (kept as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _csv_rows(
    fh, reader, header: list[str], columns: tuple[str, ...], limit_rows: int | None
) -> Iterator[tuple[int, dict[str, str] | RowProblem]]:
    """Yield (line, {column: stripped text}) per data row, or (line, RowProblem) for a broken row."""
    wanted = [(i, name) for i, name in enumerate(header) if name in columns]
    n_cols = len(header)
    start = reader.line_num + 1
    n = 0
    try:
        while limit_rows is None or n < limit_rows:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, RowProblem(start, "unreadable CSV", f"not valid CSV: {exc}")
                start = reader.line_num + 1
                n += 1
                continue
            line, start = start, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line is not a row
            n += 1
            if len(row) != n_cols:
                yield line, RowProblem(
                    line, "wrong number of fields", f"has {len(row)} fields; the header has {n_cols}."
                )
                continue
            if _bad_text("".join(row)):
                yield line, RowProblem(
                    line, "not UTF-8", "holds bytes that are not valid UTF-8; save the file as UTF-8."
                )
                continue
            yield line, {name: row[i].strip() for i, name in wanted}
    finally:
        fh.close()


def _number(text: str) -> float | str:
    """A number from a CSV cell; unparseable text is passed on for the validator to report."""
    try:
        return float(text)
    except ValueError:
        return text


def _chunked(rows: Iterable[tuple[int, dict | RowProblem]], make: Callable[[dict], dict], size: int) -> Iterator[Chunk]:
    chunk = Chunk([], [])
    for line, row in rows:
        chunk.rows += 1
        if isinstance(row, RowProblem):
            chunk.problems.append(row)
        else:
            chunk.records.append(make(row))
            chunk.lines.append(line)
        if chunk.rows >= size:
            yield chunk
            chunk = Chunk([], [])
    if chunk.rows:
        yield chunk


def _item_record(row: dict[str, str]) -> dict[str, Any]:
    rec: dict[str, Any] = {"item_id": row["item_id"], "title": row["title"]}
    for name in ("description", "category", "brand"):
        if row.get(name):  # an empty optional cell means absent
            rec[name] = row[name]
    if row.get("price"):
        rec["price"] = row["price"]  # the validator parses decimal strings exactly
    return rec


class _EventIds:
    """Deterministic event ids for rows without one: the same file always gets the same ids."""

    def __init__(self) -> None:
        self.seen: Counter = Counter()

    def __call__(self, row: dict[str, str]) -> str:
        key = "|".join(row.get(c, "") for c in ("user_id", "item_id", "event_type", "timestamp", "value", "query"))
        digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()
        # Identical rows are separate events (two units bought in two clicks): number them.
        self.seen[digest] += 1
        return f"csv-{digest}-{self.seen[digest]}"


def _event_maker() -> Callable[[dict[str, str]], dict[str, Any]]:
    ids = _EventIds()

    def make(row: dict[str, str]) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "user_id": row["user_id"],
            "item_id": row["item_id"],
            "event_type": row["event_type"].lower(),
            "timestamp": row["timestamp"],
        }
        if row.get("value"):
            rec["value"] = _number(row["value"])
        if row.get("query"):
            rec["query"] = row["query"]
        rec["event_id"] = row.get("event_id") or ids(row)
        return rec

    return make


# --------------------------------------------------------------------------- Online Retail


@dataclass
class OnlineRetail:
    """The purchases of the UCI Online Retail file after the EVALUATION.md rules."""

    rows_read: int
    dropped: Counter
    purchases: Any  # pandas.DataFrame: row, invoice, code, user, qty, price, ts, title
    items: list[dict[str, Any]]


def read_online_retail(path: Path, limit_rows: int | None = None) -> OnlineRetail:
    """Read the parquet and apply the purchase rules; dropped rows are counted by reason."""
    _check_path(path)
    try:
        import pandas as pd
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - the [ml] extra is missing
        raise FileProblem(f"Reading Parquet needs pandas and pyarrow ({exc}); install the [ml] extra.") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for "not a parquet file"
        raise FileProblem(
            f"{path} is not a readable Parquet file ({exc}). For interchange CSV use --format csv."
        ) from None
    needed = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise FileProblem(f"{path} is missing column(s) {', '.join(missing)} of the Online Retail format.")
    if limit_rows is not None:
        table = table.slice(0, limit_rows)
    df = table.select(needed).to_pandas()
    n_rows = len(df)
    invoice = df["InvoiceNo"].astype(str)
    code = df["StockCode"].astype(str).str.strip()
    no_customer = df["CustomerID"].isna().to_numpy()
    cancelled = invoice.str.startswith("C").to_numpy()
    not_positive = (df["Quantity"] <= 0).to_numpy()
    non_product = (code.isin(NON_PRODUCT_CODES) | code.str.startswith(NON_PRODUCT_PREFIXES)).to_numpy()
    dropped: Counter = Counter()
    # Each dropped row is counted once, under the first rule it breaks.
    for label, mask in (
        ("no CustomerID", no_customer),
        ("cancellation (InvoiceNo starts with C)", cancelled & ~no_customer),
        ("Quantity <= 0", not_positive & ~no_customer & ~cancelled),
        ("not a product (postage, fees, vouchers...)", non_product & ~no_customer & ~cancelled & ~not_positive),
    ):
        if mask.any():
            dropped[label] = int(mask.sum())
    keep = ~(no_customer | cancelled | not_positive | non_product)
    pur = pd.DataFrame(
        {
            "row": df.index.to_numpy()[keep] + 1,
            "invoice": invoice.to_numpy()[keep],
            "code": code.to_numpy()[keep],
            "user": df["CustomerID"].to_numpy()[keep].astype("int64").astype(str),
            "qty": df["Quantity"].to_numpy()[keep].astype(float),
            "price": df["UnitPrice"].to_numpy()[keep].astype(float),
            "ts": pd.to_datetime(df["InvoiceDate"].to_numpy()[keep], utc=True),  # no zone: read as UTC
            "desc": df["Description"].to_numpy()[keep],
        }
    )
    epoch = pd.Timestamp(0, tz="UTC")
    pur["ts"] = ((pur["ts"] - epoch) // pd.Timedelta(seconds=1)).astype("int64")
    # "Most recent" title and price: latest InvoiceDate, file order breaking ties.
    ordered = pur.sort_values(["ts", "row"], kind="stable")
    titles = ordered["desc"].where(ordered["desc"].notna(), "").astype(str).map(lambda s: fix_mojibake(s).strip())
    with_title = ordered.assign(title=titles)[titles.str.len() > 0]
    last_title = with_title.groupby("code", sort=True)["title"].last()
    last_price = ordered.groupby("code", sort=True)["price"].last()
    items = []
    for item_code, price in last_price.items():
        rec: dict[str, Any] = {"item_id": item_code, "title": last_title.get(item_code, "")}
        if math.isfinite(price):
            rec["price"] = round(float(price), 2)
        items.append(rec)
    return OnlineRetail(rows_read=n_rows, dropped=dropped, purchases=pur, items=items)


def _online_retail_item_chunks(items: list[dict[str, Any]], size: int) -> Iterator[Chunk]:
    for start in range(0, len(items), size):
        part = items[start : start + size]
        # An item's "line" is its position in the derived catalog (sorted by StockCode).
        yield Chunk(part, list(range(start + 1, start + len(part) + 1)), rows=len(part))


def _online_retail_event_chunks(pur, size: int) -> Iterator[Chunk]:
    cols = [pur[c].to_numpy() for c in ("row", "invoice", "code", "user", "qty", "ts")]
    for start in range(0, len(pur), size):
        rows, invoices, codes, users, qtys, tss = (c[start : start + size] for c in cols)
        records = [
            {
                "user_id": u,
                "item_id": c,
                "event_type": "purchase",
                "timestamp": int(t),
                "value": float(q),
                "event_id": f"or-{inv}-{c}-{r}",
            }
            for r, inv, c, u, q, t in zip(rows.tolist(), invoices, codes, users, qtys.tolist(), tss.tolist())
        ]
        yield Chunk(records, rows.tolist(), rows=len(records))


# --------------------------------------------------------------------------- openers


def open_items(
    path: str | Path, fmt: str = "csv", *, chunk_size: int = DEFAULT_ITEM_CHUNK, limit_rows: int | None = None
) -> Source:
    """Check an items file and return its chunks of item records."""
    path = Path(path)
    _check_format(fmt, chunk_size, limit_rows)
    if fmt == "online-retail":
        data = read_online_retail(path, limit_rows)
        return Source(path, fmt, "item", len(data.items), _online_retail_item_chunks(data.items, chunk_size),
                      rows_read=data.rows_read, dropped=data.dropped)
    fh, reader, header = _open_csv(path, ITEM_REQUIRED, ITEM_COLUMNS)
    total = _count_lines(path) - 1
    rows = _csv_rows(fh, reader, header, ITEM_COLUMNS, limit_rows)
    if limit_rows is not None:
        total = min(total, limit_rows)
    return Source(path, fmt, "line", total, _chunked(rows, _item_record, chunk_size))


def open_events(
    path: str | Path, fmt: str = "csv", *, chunk_size: int = DEFAULT_EVENT_CHUNK, limit_rows: int | None = None
) -> Source:
    """Check an events file and return its chunks of event records."""
    path = Path(path)
    _check_format(fmt, chunk_size, limit_rows)
    if fmt == "online-retail":
        data = read_online_retail(path, limit_rows)
        pur = data.purchases
        return Source(path, fmt, "row", len(pur), _online_retail_event_chunks(pur, chunk_size),
                      rows_read=data.rows_read, dropped=data.dropped, catalog=data.items)
    fh, reader, header = _open_csv(path, EVENT_REQUIRED, EVENT_COLUMNS)
    total = _count_lines(path) - 1
    rows = _csv_rows(fh, reader, header, EVENT_COLUMNS, limit_rows)
    if limit_rows is not None:
        total = min(total, limit_rows)
    return Source(path, fmt, "line", total, _chunked(rows, _event_maker(), chunk_size))


def records_source(records: list[dict[str, Any]], label: str, *, chunk_size: int) -> Source:
    """Wrap in-memory records (a generator's output) as a Source; a problem's "line" is the record number."""
    if chunk_size < 1:
        raise FileProblem(f"The chunk size must be at least 1, got {chunk_size}.")

    def chunks() -> Iterator[Chunk]:
        for start in range(0, len(records), chunk_size):
            part = records[start : start + chunk_size]
            yield Chunk(part, list(range(start + 1, start + len(part) + 1)), rows=len(part))

    return Source(Path(label), "records", "record", len(records), chunks(), rows_read=len(records))


def _check_format(fmt: str, chunk_size: int, limit_rows: int | None) -> None:
    if fmt not in FORMATS:
        raise FileProblem(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if chunk_size < 1:
        raise FileProblem(f"The chunk size must be at least 1, got {chunk_size}.")
    if limit_rows is not None and limit_rows < 1:
        raise FileProblem(f"--limit-rows must be at least 1, got {limit_rows}.")


# --------------------------------------------------------------------------- importers


def _row_problems(errors: list[FieldError], lines: list[int]) -> dict[int, RowProblem]:
    """Map the validator's record indexes back to source lines; one problem per bad row."""
    by_index: dict[int, list[FieldError]] = {}
    for err in errors:
        by_index.setdefault(err.index, []).append(err)
    return {
        index: RowProblem(lines[index], f"invalid {errs[0].field or 'row'}", " ".join(e.message for e in errs))
        for index, errs in by_index.items()
    }


def _new_report(kind: str, source: Source) -> ImportReport:
    return ImportReport(kind=kind, path=str(source.path), fmt=source.fmt, unit=source.unit,
                        rows_read=source.rows_read, dropped=Counter(source.dropped))


def _span(chunk: Chunk) -> tuple[int, int]:
    lines = chunk.lines + [p.line for p in chunk.problems]
    return (min(lines), max(lines)) if lines else (0, 0)


def do_import_items(source: Source, *, progress: Callable[[int], None] | None = None) -> ImportReport:
    """Validate and upsert every chunk of item records; bad rows are reported, not written."""
    report = _new_report("items", source)
    for number, chunk in enumerate(source.chunks, start=1):
        _write_item_chunk(chunk, report, number)
        if progress:
            progress(chunk.rows)
    return report


def _write_item_chunk(chunk: Chunk, report: ImportReport, number: int) -> None:
    if report.unit == "line":  # CSV counts rows as it reads; parquet knows them up front
        report.rows_read += chunk.rows
    for p in chunk.problems:
        report.add_problem(p)
    clean, errors = validate_items(chunk.records)
    bad = _row_problems(errors, chunk.lines)
    good = []
    for index, item in enumerate(clean):
        if index in bad:
            report.add_problem(bad[index])
        elif item is not None:
            good.append(item)
    if not good:
        return
    try:
        result = do_write_items(good)
    except Exception as exc:
        raise ImportFailed(report, number, *_span(chunk), exc) from exc
    report.chunks_committed += 1
    report.created += result.created
    report.updated += result.updated
    report.imported += result.created + result.updated
    report.duplicates += len(good) - (result.created + result.updated)


def do_import_events(
    source: Source,
    *,
    strict_items: bool = False,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Validate and store every chunk of event records; bad rows are reported, not written.

    With ``strict_items`` (or the "strict" UNKNOWN_ITEM_POLICY) an event naming an item
    the catalog does not have is a skipped row; otherwise a placeholder item is created.
    A format that carries its own catalog (Online Retail) writes its missing items first,
    with their titles and prices, so that no placeholder is needed.
    """
    report = _new_report("events", source)
    strict = strict_items or rec_settings.UNKNOWN_ITEM_POLICY == "strict"
    if source.catalog:
        report.catalog_items_written = _write_missing_catalog(source.catalog)
    for number, chunk in enumerate(source.chunks, start=1):
        _write_event_chunk(chunk, report, number, strict, now)
        if progress:
            progress(chunk.rows)
    return report


def _write_missing_catalog(items: list[dict[str, Any]]) -> int:
    """Upsert the derived items that are absent or placeholders; returns how many were written."""
    ids = [rec["item_id"] for rec in items]
    complete: set[str] = set()
    for start in range(0, len(ids), 500):
        complete.update(
            Item.objects.filter(external_id__in=ids[start : start + 500], is_placeholder=False)
            .values_list("external_id", flat=True)
        )
    todo = [rec for rec in items if rec["item_id"] not in complete]
    clean, errors = validate_items(todo)
    good = [c for c in clean if c is not None]
    for start in range(0, len(good), DEFAULT_ITEM_CHUNK):
        do_write_items(good[start : start + DEFAULT_ITEM_CHUNK])
    return len(good)


def _known_items(ids: set[str]) -> set[str]:
    wanted = sorted(ids)
    known: set[str] = set()
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        known.update(Item.objects.filter(external_id__in=part).values_list("external_id", flat=True))
    return known


def _write_event_chunk(chunk: Chunk, report: ImportReport, number: int, strict: bool, now: datetime | None) -> None:
    if report.unit == "line":  # CSV counts rows as it reads; parquet knows them up front
        report.rows_read += chunk.rows
    for p in chunk.problems:
        report.add_problem(p)
    clean, errors = validate_events(chunk.records, now=now)
    bad = _row_problems(errors, chunk.lines)
    good = []
    good_lines = []
    for index, ev in enumerate(clean):
        if index in bad:
            report.add_problem(bad[index])
        elif ev is not None:
            good.append(ev)
            good_lines.append(chunk.lines[index])
    if strict and good:
        known = _known_items({ev.item_id for ev in good})
        kept = []
        for ev, line in zip(good, good_lines):
            if ev.item_id in known:
                kept.append(ev)
            else:
                report.add_problem(RowProblem(
                    line, "unknown item",
                    f"Unknown item {ev.item_id!r}; import it with import_items first, "
                    "or drop --strict-items to create a placeholder.",
                ))
        good = kept
    if not good:
        return
    try:
        result = do_write_events(good, unknown_items="strict" if strict else "placeholder")
    except Exception as exc:
        raise ImportFailed(report, number, *_span(chunk), exc) from exc
    report.chunks_committed += 1
    report.imported += result.stored
    report.duplicates += result.duplicates
    report.created_users += result.created_users
    report.created_items += result.created_items


__all__ = [
    "FORMATS",
    "Chunk",
    "FileProblem",
    "ImportFailed",
    "ImportReport",
    "RowProblem",
    "Source",
    "do_import_events",
    "do_import_items",
    "open_events",
    "open_items",
    "read_online_retail",
    "records_source",
]
