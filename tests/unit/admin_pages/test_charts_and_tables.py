"""The admin pages' shared pieces: SVG charts carry their figures, tables export as CSV, date ranges validate."""
from __future__ import annotations

import csv
import io
import re
from datetime import date

from django.test import RequestFactory

from recommender.admin_pages.base import DateRange, Table, parse_range, render_page
from recommender.admin_pages.charts import Series, bar_chart, fmt_number, fmt_percent, line_chart, lorenz_chart


def _values(svg: str, cls: str) -> list[str]:
    return re.findall(rf'<\w+ class="{cls}"[^>]*data-value="([^"]*)"', svg)


def test_line_chart_draws_one_point_per_known_value_and_breaks_at_gaps():
    chart = line_chart(
        "tail", "Tail share", ["d1", "d2", "d3", "d4"],
        [Series("impressions", [0.25, None, 0.5, 0.125]), Series("conversions", [0.1, 0.2, 0.3, 0.4])], "percent",
    )
    assert _values(chart.svg, "point") == ["0.25", "0.5", "0.125", "0.1", "0.2", "0.3", "0.4"]
    paths = re.findall(r'<path class="line" d="([^"]*)"', chart.svg)
    assert paths[0].count("M") == 2  # the gap at d2 lifts the pen
    assert paths[1].count("M") == 1
    assert "<title>d3 · impressions: 50.0%</title>" in chart.svg
    assert chart.table.cells == [["d1", 0.25, 0.1], ["d2", None, 0.2], ["d3", 0.5, 0.3], ["d4", 0.125, 0.4]]


def test_line_chart_scales_points_to_the_axis():
    chart = line_chart("c", "Counts", ["a", "b"], [Series("n", [0, 100])])
    ys = [float(y) for y in re.findall(r'<circle class="point" cx="[^"]*" cy="([^"]*)"', chart.svg)]
    assert ys[0] > ys[1]  # larger values are drawn higher (smaller y)


def test_bar_chart_labels_every_bar_with_its_value_and_skips_missing():
    chart = bar_chart("cat", "By category", ["Mugs", "中文 标题", "Empty"], [1200, 30, None])
    assert re.findall(r'data-label="([^"]*)"', chart.svg) == ["Mugs", "中文 标题"]
    assert _values(chart.svg, "bar") == ["1200.0", "30.0"]
    assert ">1,200</text>" in chart.svg and ">–</text>" in chart.svg
    widths = [float(w) for w in re.findall(r'class="bar"[^>]*width="([^"]*)"', chart.svg)]
    assert widths[0] > 10 * widths[1] * 0.9


def test_lorenz_chart_shows_gini_and_every_point():
    points = [(0.0, 0.0), (0.5, 0.1), (1.0, 1.0)]
    chart = lorenz_chart("lorenz", "Lorenz", points, gini=0.625)
    assert _values(chart.svg, "gini") == ["0.625"]
    assert _values(chart.svg, "point") == ["0.0", "0.1", "1.0"]
    assert chart.table.cells == [[0.0, 0.0], [0.5, 0.1], [1.0, 1.0]]


def test_text_is_escaped_in_charts():
    chart = bar_chart("x", "<b>", ["<script>alert(1)</script>"], [1])
    assert "<script>" not in chart.svg and "&lt;script&gt;" in chart.svg


def test_formats():
    assert fmt_number(1234567) == "1,234,567" and fmt_number(0.12345) == "0.123" and fmt_number(None) == "–"
    assert fmt_percent(0.1234) == "12.3%" and fmt_percent(None) == "–"


def test_table_csv_keeps_raw_values_and_utf8():
    table = Table("items", [("id", "Item"), ("share", "Share")], [{"id": "中文", "share": 0.5}, {"id": "b", "share": None}])
    response = table.csv_response()
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="items.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows == [["id", "share"], ["中文", "0.5"], ["b", ""]]


def test_table_names_must_be_url_safe():
    try:
        Table("Bad Name", [], [])
    except ValueError as e:
        assert "lowercase" in str(e)
    else:
        raise AssertionError("a table name with spaces was accepted")


def test_unknown_csv_table_is_a_400_naming_the_tables():
    request = RequestFactory().get("/x", {"csv": "nope"})
    response = render_page(request, "unused.html", "T", [Table("a", [], []), Table("b", [], [])])
    assert response.status_code == 400
    assert b"tables: a, b" in response.content


def test_render_page_exports_the_named_table():
    request = RequestFactory().get("/x", {"csv": "b", "from": "2026-01-01"})
    response = render_page(request, "unused.html", "T", [Table("a", [("v", "v")], [{"v": 1}]), Table("b", [("v", "v")], [{"v": 2}])])
    assert response.content.decode("utf-8-sig").splitlines() == ["v", "2"]


def _range(**params) -> DateRange:
    return parse_range(RequestFactory().get("/x", params), default_days=30)


def test_parse_range_defaults_and_inclusive_end():
    default = _range()
    assert default.days == 30 and not default.errors
    r = _range(**{"from": "2026-01-01", "to": "2026-01-31"})
    assert (r.start, r.end, r.days, r.last_day) == (date(2026, 1, 1), date(2026, 2, 1), 31, date(2026, 1, 31))
    assert r.query() == "from=2026-01-01&to=2026-01-31"


def test_parse_range_explains_bad_input():
    assert "2026-01-31" in _range(**{"from": "31/01/2026"}).errors[0]
    assert "swap" in _range(**{"from": "2026-02-01", "to": "2026-01-01"}).errors[0]
    assert "limited" in _range(**{"from": "2000-01-01", "to": "2026-01-01"}).errors[0]
