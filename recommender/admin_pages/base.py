"""What every admin report page shares: staff-only access, the admin's chrome, date ranges, CSV tables."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import wraps
from typing import Any, Callable, Iterable, Sequence

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone

@dataclass
class Table:
    """A named table a page shows and exports as CSV: ``columns`` are (key, label) pairs."""

    name: str
    columns: Sequence[tuple[str, str]]
    rows: Iterable[dict[str, Any]]
    title: str = ""
    caption: str = ""
    # Display format per column key: "percent", "number", or absent (shown as is). CSV keeps raw values.
    formats: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = list(self.rows)
        if not re.fullmatch(r"[a-z0-9_-]+", self.name):
            raise ValueError(f"Table name {self.name!r} must be lowercase letters, digits, '-' or '_'.")

    @property
    def cells(self) -> list[list[Any]]:
        return [[row.get(key) for key, _ in self.columns] for row in self.rows]

    @property
    def display_rows(self) -> list[list[tuple[str, Any]]]:
        """Per row, (format, value) per column, for the template's ``cell`` filter."""
        return [[(self.formats.get(key, ""), row.get(key)) for key, _ in self.columns] for row in self.rows]

    def csv_response(self, filename_stem: str = "") -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        stem = filename_stem or self.name
        response["Content-Disposition"] = f'attachment; filename="{stem}.csv"'
        response.write("\ufeff")  # so spreadsheet programs read UTF-8 (Chinese titles) correctly
        writer = csv.writer(response)
        writer.writerow([key for key, _ in self.columns])
        for row in self.cells:
            writer.writerow(["" if v is None else _csv_value(v) for v in row])
        return response


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return repr(round(v, 6))
    return v


@dataclass
class DateRange:
    """A report range [start, end) of UTC days, read from ``?from=YYYY-MM-DD&to=YYYY-MM-DD`` (``to`` inclusive)."""

    start: date
    end: date  # exclusive
    errors: list[str] = field(default_factory=list)

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def query(self) -> str:
        return f"from={self.start.isoformat()}&to={self.last_day.isoformat()}"


MAX_RANGE_DAYS = 3 * 366


def parse_range(request: HttpRequest, default_days: int = 30) -> DateRange:
    """The page's date range; bad input falls back to the default range with a message saying what to change."""
    today = timezone.now().date()
    default = DateRange(today - timedelta(days=default_days - 1), today + timedelta(days=1))
    raw_from, raw_to = request.GET.get("from", ""), request.GET.get("to", "")
    if not raw_from and not raw_to:
        return default
    try:
        start = date.fromisoformat(raw_from) if raw_from else default.start
        last = date.fromisoformat(raw_to) if raw_to else today
    except ValueError:
        default.errors.append(
            f"Dates must look like 2026-01-31 (got from={raw_from!r}, to={raw_to!r}); showing the last {default_days} days."
        )
        return default
    if last < start:
        default.errors.append(f"'to' ({last}) is before 'from' ({start}); swap them. Showing the last {default_days} days.")
        return default
    if (last - start).days + 1 > MAX_RANGE_DAYS:
        default.errors.append(f"Ranges are limited to {MAX_RANGE_DAYS} days; narrow 'from'/'to'.")
        return default
    return DateRange(start, last + timedelta(days=1))


def staff_page(view: Callable) -> Callable:
    """Staff only (anyone else is sent to the admin login), like the admin's own pages."""
    return staff_member_required(wraps(view)(view))


def render_page(
    request: HttpRequest,
    template: str,
    title: str,
    tables: Sequence[Table] = (),
    **context: Any,
) -> HttpResponse:
    """Render a page in the admin's chrome, or, with ``?csv=<name>``, one of its tables as CSV."""
    wanted = request.GET.get("csv")
    by_name = {t.name: t for t in tables}
    if wanted is not None:
        if wanted not in by_name:
            names = ", ".join(sorted(by_name)) or "none"
            return HttpResponseBadRequest(f"No table named {wanted!r} on this page; tables: {names}.")
        return by_name[wanted].csv_response()
    return render(
        request,
        template,
        {
            **admin.site.each_context(request),
            # Charts and wide tables need the page's full width; the model list is one click away.
            "is_nav_sidebar_enabled": False,
            "title": title,
            "tables": {t.name: t for t in tables},
            **context,
        },
    )


def percent(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"
