"""Template helpers of the admin report pages."""
from __future__ import annotations

from django import template

from ..admin_pages.charts import FORMATS

register = template.Library()


@register.filter
def cell(pair: tuple[str, object]) -> str:
    """Format one (format, value) table cell: percentages, thousands separators, '–' for missing."""
    fmt, value = pair
    if value is None:
        return "–"
    if fmt in FORMATS and isinstance(value, (int, float)):
        return FORMATS[fmt](value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


@register.simple_tag(takes_context=True)
def csv_url(context, table_name: str) -> str:
    """This page's URL with ``csv=<table>`` added, keeping the other query parameters (the date range)."""
    query = context["request"].GET.copy()
    query["csv"] = table_name
    return "?" + query.urlencode()


@register.simple_tag
def rec_admin_pages() -> list[tuple[str, str, str]]:
    """The report pages to link from the admin index, as (namespaced url name, title, description)."""
    from ..admin_pages.urls import PAGES, app_name

    return [(f"{app_name}:{name}", title, description) for name, title, description in PAGES]
