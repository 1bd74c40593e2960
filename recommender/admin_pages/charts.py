"""Small server-side SVG charts for the admin pages: no JavaScript, no outside requests.

Every mark carries its figure three ways: a ``<title>`` (shown on hover), ``data-*`` attributes
(read by the browser tests), and the chart's table of numbers (shown beside it and exported
as CSV). Values may be ``None`` (no data that day): lines break there and bars are left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any, Callable, Sequence

from django.utils.safestring import SafeString, mark_safe

from .base import Table

PALETTE = ("#2f6db5", "#e07b39", "#3a9a5b", "#b5443b", "#7a5bb5", "#8c6d3f", "#d16ba5", "#6b7a8f")
WIDTH, HEIGHT = 720, 260
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 16, 44


def fmt_number(v: float | None) -> str:
    if v is None:
        return "–"
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def fmt_percent(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


FORMATS: dict[str, Callable[[float | None], str]] = {"number": fmt_number, "percent": fmt_percent}


@dataclass
class Series:
    name: str
    values: Sequence[float | None]
    color: str = ""


@dataclass
class Chart:
    """An SVG chart and the numbers it draws (``table``: the same figures, for CSV and for reading)."""

    name: str
    title: str
    svg: SafeString
    table: Table
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _attr(v: Any) -> str:
    return escape(str(v), quote=True)


def _raw(v: float | None) -> str:
    return "" if v is None else repr(round(float(v), 6))


def _nice_max(v: float, fmt: str) -> float:
    if fmt == "percent":
        return 1.0 if v > 0.5 or v <= 0 else min(1.0, _nice_max(v, "number"))
    if v <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(v))) - 1) if v >= 1 else 10 ** -len(str(int(1 / v)))
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def line_chart(
    name: str,
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    value_format: str = "number",
    y_max: float | None = None,
    x_label: str = "",
    y_label: str = "",
    note: str = "",
) -> Chart:
    """Lines over shared x positions (days, ranks); one circle per known value, hover shows it."""
    fmt = FORMATS[value_format]
    known = [v for s in series for v in s.values if v is not None]
    top = y_max if y_max is not None else _nice_max(max(known, default=0.0), value_format)
    if value_format == "number" and y_max is None and all(float(v).is_integer() for v in known):
        top = max(top, 4.0)  # whole counts get whole-number gridlines (0, 1, 2, 3, 4), never 0.25
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    n = len(x_labels)

    def x(i: int) -> float:
        return PAD_L + (plot_w * (i / (n - 1)) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return PAD_T + plot_h * (1 - (min(float(v), top) / top if top else 0))

    parts = [_frame(top, fmt, y_label)]
    step = max(1, n // 8)
    for i in range(0, n, step):
        # The last label ends at its point, so it stays inside the picture.
        anchor = "end" if i == n - 1 and n > 1 else "middle"
        parts.append(
            f'<text class="x-tick" x="{x(i):.1f}" y="{HEIGHT - PAD_B + 16}" text-anchor="{anchor}">{escape(x_labels[i])}</text>'
        )
    if x_label:
        parts.append(f'<text class="axis-label" x="{PAD_L + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>')
    for k, s in enumerate(series):
        color = s.color or PALETTE[k % len(PALETTE)]
        path, pen_up = [], True
        for i, v in enumerate(s.values):
            if v is None:
                pen_up = True
                continue
            path.append(f"{'M' if pen_up else 'L'}{x(i):.1f},{y(v):.1f}")
            pen_up = False
        if path:
            parts.append(f'<path class="line" d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="2"/>')
        for i, v in enumerate(s.values):
            if v is None:
                continue
            parts.append(
                f'<circle class="point" cx="{x(i):.1f}" cy="{y(v):.1f}" r="{3 if n <= 120 else 1.5}" fill="{color}" '
                f'data-series="{_attr(s.name)}" data-x="{_attr(x_labels[i])}" data-value="{_raw(v)}">'
                f"<title>{escape(x_labels[i])} · {escape(s.name)}: {escape(fmt(v))}</title></circle>"
            )
    legend = _legend([(s.name, s.color or PALETTE[k % len(PALETTE)]) for k, s in enumerate(series)])
    table = Table(
        name=name,
        title=title,
        columns=[("x", x_label or "x")] + [(f"s{k}", s.name) for k, s in enumerate(series)],
        rows=[{"x": lbl, **{f"s{k}": s.values[i] for k, s in enumerate(series)}} for i, lbl in enumerate(x_labels)],
    )
    table.formats = {f"s{k}": value_format for k in range(len(series))}
    return Chart(name, title, _svg(name, title, parts, legend), table, note)


def bar_chart(
    name: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    value_format: str = "number",
    value_label: str = "value",
    colors: Sequence[str] | None = None,
    note: str = "",
    max_value: float | None = None,
) -> Chart:
    """Horizontal bars with their values written at the end of each bar."""
    fmt = FORMATS[value_format]
    row_h, label_w = 24, 190
    height = PAD_T + row_h * max(1, len(labels)) + 8
    top = max_value if max_value is not None else max([v for v in values if v is not None], default=0.0) or 1.0
    plot_w = WIDTH - label_w - 90
    parts = []
    for i, (label, v) in enumerate(zip(labels, values)):
        y0 = PAD_T + i * row_h
        parts.append(
            f'<text class="bar-label" x="{label_w - 8}" y="{y0 + 16}" text-anchor="end">{escape(_clip(label, 28))}'
            f"<title>{escape(label)}</title></text>"
        )
        if v is None:
            parts.append(f'<text class="bar-value" x="{label_w + 4}" y="{y0 + 16}">–</text>')
            continue
        w = max(1.0, plot_w * min(float(v), top) / top) if v else 0.0
        color = (colors[i] if colors else PALETTE[0])
        parts.append(
            f'<rect class="bar" x="{label_w}" y="{y0 + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}" '
            f'data-label="{_attr(label)}" data-value="{_raw(v)}"><title>{escape(label)}: {escape(fmt(v))}</title></rect>'
        )
        parts.append(f'<text class="bar-value" x="{label_w + w + 6:.1f}" y="{y0 + 16}">{escape(fmt(v))}</text>')
    table = Table(name=name, title=title, columns=[("label", "label"), ("value", value_label)],
                  rows=[{"label": lbl, "value": v} for lbl, v in zip(labels, values)])
    table.formats = {"value": value_format}
    return Chart(name, title, _svg(name, title, parts, "", height=height), table, note)


def lorenz_chart(name: str, title: str, points: Sequence[tuple[float, float]], gini: float, note: str = "") -> Chart:
    """Lorenz curve of exposure: share of items (least shown first) against share of impressions."""
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def xy(a: float, b: float) -> tuple[float, float]:
        return PAD_L + plot_w * a, PAD_T + plot_h * (1 - b)

    parts = [_frame(1.0, fmt_percent, "share of impressions")]
    x0, y0 = xy(0, 0)
    x1, y1 = xy(1, 1)
    parts.append(f'<line class="equality" x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#999" stroke-dasharray="4 4"/>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{xy(a, b)[0]:.1f},{xy(a, b)[1]:.1f}" for i, (a, b) in enumerate(points))
    parts.append(f'<path class="line" d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    for a, b in points:
        cx, cy = xy(a, b)
        parts.append(
            f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{PALETTE[0]}" data-x="{_raw(a)}" '
            f'data-value="{_raw(b)}"><title>least-shown {fmt_percent(a)} of items: {fmt_percent(b)} of impressions</title></circle>'
        )
    for k in range(0, 11, 2):
        parts.append(f'<text class="x-tick" x="{xy(k / 10, 0)[0]:.1f}" y="{HEIGHT - PAD_B + 16}" text-anchor="middle">{k * 10}%</text>')
    parts.append(f'<text class="axis-label" x="{PAD_L + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">share of catalog items, least shown first</text>')
    parts.append(f'<text class="gini" x="{PAD_L + 12}" y="{PAD_T + 18}" data-value="{_raw(gini)}">Gini {gini:.3f}</text>')
    table = Table(name=name, title=title, columns=[("items_share", "share of items"), ("impressions_share", "share of impressions")],
                  rows=[{"items_share": a, "impressions_share": b} for a, b in points])
    table.formats = {"items_share": "percent", "impressions_share": "percent"}
    return Chart(name, title, _svg(name, title, parts, ""), table, note, {"gini": gini})


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _frame(top: float, fmt: Callable[[float | None], str] | float, y_label: str) -> str:
    fmt_fn = fmt if callable(fmt) else fmt_number
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    out = []
    for k in range(5):
        v = top * k / 4
        yy = PAD_T + plot_h * (1 - k / 4)
        out.append(f'<line class="grid" x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text class="y-tick" x="{PAD_L - 6}" y="{yy + 4:.1f}" text-anchor="end">{escape(fmt_fn(v))}</text>')
    if y_label:
        out.append(
            f'<text class="axis-label" transform="translate(12,{PAD_T + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>'
        )
    return "".join(out)


def _legend(entries: list[tuple[str, str]]) -> str:
    if len(entries) < 2:
        return ""
    return "".join(
        f'<span class="legend-entry"><span class="swatch" style="background:{c}"></span>{escape(n)}</span>' for n, c in entries
    )


def _svg(name: str, title: str, parts: list[str], legend: str, height: int = HEIGHT) -> SafeString:
    body = "".join(parts)
    svg = (
        f'<svg class="rec-chart-svg" data-chart="{_attr(name)}" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'role="img" aria-label="{_attr(title)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )
    if legend:
        svg = f'<div class="rec-legend">{legend}</div>' + svg
    return mark_safe(svg)


@dataclass
class Interval:
    """One estimate with its confidence interval, drawn as a dot with whiskers."""

    group: str  # rows are grouped under this heading (a metric)
    series: str  # coloured by this (a variant)
    value: float | None
    low: float | None
    high: float | None


def interval_chart(
    name: str,
    title: str,
    intervals: Sequence[Interval],
    value_format: str = "percent",
    value_label: str = "value",
    note: str = "",
    max_value: float | None = None,
) -> Chart:
    """Horizontal dot-and-whisker rows (estimate and interval), grouped, one colour per series."""
    fmt = FORMATS[value_format]
    row_h, group_h, label_w = 22, 20, 190
    groups: list[str] = []
    for iv in intervals:
        if iv.group not in groups:
            groups.append(iv.group)
    series_names: list[str] = []
    for iv in intervals:
        if iv.series not in series_names:
            series_names.append(iv.series)
    colors = {s: PALETTE[k % len(PALETTE)] for k, s in enumerate(series_names)}
    known = [v for iv in intervals for v in (iv.value, iv.high) if v is not None]
    top = max_value if max_value is not None else _nice_max(max(known, default=0.0), value_format)
    plot_w = WIDTH - label_w - PAD_R - 70
    height = PAD_T + group_h * len(groups) + row_h * max(1, len(intervals)) + 30

    def x(v: float) -> float:
        return label_w + plot_w * (min(max(float(v), 0.0), top) / top if top else 0)

    parts, y0 = [], PAD_T
    for k in range(5):
        gx = label_w + plot_w * k / 4
        parts.append(f'<line class="grid" x1="{gx:.1f}" x2="{gx:.1f}" y1="{PAD_T}" y2="{height - 26}" stroke="#ddd"/>')
        parts.append(f'<text class="x-tick" x="{gx:.1f}" y="{height - 10}" text-anchor="middle">{escape(fmt(top * k / 4))}</text>')
    for group in groups:
        parts.append(f'<text class="group-label" x="8" y="{y0 + 14}" font-weight="600">{escape(group)}</text>')
        y0 += group_h
        for iv in (i for i in intervals if i.group == group):
            cy = y0 + row_h / 2
            parts.append(f'<text class="bar-label" x="{label_w - 8}" y="{cy + 4:.1f}" text-anchor="end">{escape(_clip(iv.series, 28))}</text>')
            color = colors[iv.series]
            if iv.value is None:
                parts.append(f'<text class="bar-value" x="{label_w + 4}" y="{cy + 4:.1f}">– (no data)</text>')
                y0 += row_h
                continue
            ci = "" if iv.low is None or iv.high is None else f" (95% CI {fmt(iv.low)} – {fmt(iv.high)})"
            if iv.low is not None and iv.high is not None:
                parts.append(
                    f'<line class="whisker" x1="{x(iv.low):.1f}" x2="{x(iv.high):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                    f'stroke="{color}" stroke-width="2"/>'
                    f'<line x1="{x(iv.low):.1f}" x2="{x(iv.low):.1f}" y1="{cy - 5:.1f}" y2="{cy + 5:.1f}" stroke="{color}" stroke-width="2"/>'
                    f'<line x1="{x(iv.high):.1f}" x2="{x(iv.high):.1f}" y1="{cy - 5:.1f}" y2="{cy + 5:.1f}" stroke="{color}" stroke-width="2"/>'
                )
            parts.append(
                f'<circle class="point" cx="{x(iv.value):.1f}" cy="{cy:.1f}" r="5" fill="{color}" '
                f'data-label="{_attr(iv.group)}" data-series="{_attr(iv.series)}" data-value="{_raw(iv.value)}" '
                f'data-low="{_raw(iv.low)}" data-high="{_raw(iv.high)}">'
                f"<title>{escape(iv.group)} · {escape(iv.series)}: {escape(fmt(iv.value))}{escape(ci)}</title></circle>"
            )
            parts.append(
                f'<text class="bar-value" x="{x(iv.high if iv.high is not None else iv.value) + 8:.1f}" y="{cy + 4:.1f}">'
                f"{escape(fmt(iv.value))}</text>"
            )
            y0 += row_h
    legend = _legend([(s, colors[s]) for s in series_names])
    table = Table(
        name=name, title=title,
        columns=[("group", "metric"), ("series", "series"), ("value", value_label), ("low", "95% CI low"),
                 ("high", "95% CI high")],
        rows=[{"group": iv.group, "series": iv.series, "value": iv.value, "low": iv.low, "high": iv.high}
              for iv in intervals],
    )
    table.formats = {"value": value_format, "low": value_format, "high": value_format}
    return Chart(name, title, _svg(name, title, parts, legend, height=height), table, note)
