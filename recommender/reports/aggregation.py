"""Checkpointed aggregation of raw events into :class:`~recommender.models.DailyItemCount`, one UTC day at a time.

A day is always recomputed whole, in one transaction: its old rows are deleted and the new
counts inserted (on PostgreSQL by one ``INSERT ... SELECT ... GROUP BY``), summed into the
per-segment rollup (:class:`~recommender.models.DailySegmentCount`), and its
:class:`~recommender.models.ReportDay` row is updated in the same transaction. So a crash
leaves the previous counts of that day intact, and running a day twice never counts twice.

What a row counts (all events of the day whose type is impression, click, add to cart or purchase):

* ``attributed`` rows: events whose ``request_id`` names a served list that showed the item;
  their variant is that list's A/B variant (``NULL`` when the list was served outside the
  experiment). Clicks, add-to-carts and purchases count once per (list, item), as in the raw
  report, so a double click is one click; revenue sums every purchase event.
* the other rows (``attributed`` false, variant ``NULL``): the same events outside
  recommendations (search, browsing), so conversion shares can be read both ways.
* ``segment``: head or tail as of the start of the day, by
  :func:`recommender.ranking.segments.head_mask` over the default policy's window.

The same transaction rebuilds the day's week in
:class:`~recommender.models.reports.WeeklyItemCount` (per-item sums of the week's rows, which the
exposure report reads for whole weeks) and stores the day's distinct items shown on its
:class:`~recommender.models.ReportDay`.

The same transaction writes :class:`~recommender.models.DailyVariantUser`: the attributed events
of lists served under an A/B variant, per (variant, user the list was served to), counted the
same way, so experiment reports get distinct users and revenue per user from count tables.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, Max, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from ..models import (
    DailyItemCount, DailySegmentCount, DailyVariantUser, Event, EventType, ExposurePolicy, Item, ReportDay, Segment,
    ServedList,
)
from ..models.reports import WeeklyItemCount
from ..ranking.segments import head_mask

log = logging.getLogger(__name__)

IMPRESSION, CLICK = int(EventType.IMPRESSION), int(EventType.CLICK)
ADD_TO_CART, PURCHASE = int(EventType.ADD_TO_CART), int(EventType.PURCHASE)
COUNTED_TYPES = (IMPRESSION, CLICK, ADD_TO_CART, PURCHASE)
# ingested_at is set before the ingesting transaction commits: an event stamped a little
# before a fill may become visible after it. Anything ingested within this margin of a fill
# is treated as not yet covered, so the next run looks at that day again.
INGEST_LAG = timedelta(minutes=5)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class DayResult:
    """What one fill of one day did."""

    day: date
    status: str
    events: int
    rows: int


@dataclass
class PendingResult:
    """What one run of the aggregation job did."""

    filled: list[DayResult] = field(default_factory=list)
    reopened: list[date] = field(default_factory=list)
    remaining: int = 0


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day as aware datetimes."""
    start = datetime.combine(day, time.min, tzinfo=dt_timezone.utc)
    return start, start + timedelta(days=1)


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC); got a naive datetime.")
    return moment.astimezone(dt_timezone.utc).date()


def _head_definition() -> tuple[float, int]:
    """(head_share, window_days) of the default policy, or the model defaults when there is none."""
    row = ExposurePolicy.objects.filter(is_default=True).values_list("head_share", "head_window_days").first()
    if row is not None:
        return float(row[0]), int(row[1])
    fields = ExposurePolicy._meta
    return float(fields.get_field("head_share").default), int(fields.get_field("head_window_days").default)


def head_item_ids(day: date) -> list[int]:
    """Pks of the items that were head at the start of ``day`` (interactions over the window before it)."""
    head_share, window_days = _head_definition()
    start, _ = day_bounds(day)
    # The catalog of that day: items not deleted before it (created_at is the import time,
    # not the launch date, so it cannot exclude items from history).
    space = np.array(
        Item.objects.filter(Q(deleted_at__isnull=True) | Q(deleted_at__gte=start)).order_by("pk")
        .values_list("pk", flat=True),
        dtype=np.int64,
    )
    with connection.cursor() as cur:
        cur.execute(
            "SELECT item_id, COUNT(*) FROM recommender_event "
            "WHERE timestamp >= %s AND timestamp < %s AND event_type <> %s GROUP BY item_id",
            [start - timedelta(days=window_days), start, IMPRESSION],
        )
        rows = cur.fetchall()
    counts = np.zeros(len(space), dtype=np.float64)
    if rows and len(space):
        arr = np.asarray(rows, dtype=np.int64)
        at = np.clip(np.searchsorted(space, arr[:, 0]), 0, len(space) - 1)
        hit = space[at] == arr[:, 0]
        counts[at[hit]] = arr[hit, 1]
    return space[head_mask(counts, head_share)].tolist()


# One statement per day. The inner query labels each event (segment, attribution, variant,
# amount); the outer one groups. COUNT(DISTINCT request_id) per item and group is "once per
# (list, item)" because an attributed event's request_id names exactly one list.
_ATTRIBUTED = "(sl.request_id IS NOT NULL AND sl.items @> to_jsonb(e.item_id))"
_INSERT_PG = f"""
INSERT INTO recommender_dailyitemcount
    (day, item_id, segment, variant, attributed, impressions, clicks, add_to_carts, purchases, revenue)
SELECT %(day)s, s.item_id, s.segment, s.variant, s.attributed,
    COUNT(*) FILTER (WHERE s.event_type = %(imp)s),
    CASE WHEN s.attributed THEN COUNT(DISTINCT s.request_id) FILTER (WHERE s.event_type = %(click)s)
         ELSE COUNT(*) FILTER (WHERE s.event_type = %(click)s) END,
    CASE WHEN s.attributed THEN COUNT(DISTINCT s.request_id) FILTER (WHERE s.event_type = %(cart)s)
         ELSE COUNT(*) FILTER (WHERE s.event_type = %(cart)s) END,
    CASE WHEN s.attributed THEN COUNT(DISTINCT s.request_id) FILTER (WHERE s.event_type = %(purchase)s)
         ELSE COUNT(*) FILTER (WHERE s.event_type = %(purchase)s) END,
    COALESCE(SUM(s.amount) FILTER (WHERE s.event_type = %(purchase)s), 0)
FROM (
    SELECT e.item_id, e.event_type, e.request_id,
        CASE WHEN e.item_id = ANY(%(head)s::bigint[]) THEN 'head' ELSE 'tail' END AS segment,
        {_ATTRIBUTED} AS attributed,
        CASE WHEN {_ATTRIBUTED} THEN NULLIF(sl.variant, '') END AS variant,
        ROUND(COALESCE(e.value, 1)::numeric * i.price, 2) AS amount
    FROM recommender_event e
    JOIN recommender_item i ON i.id = e.item_id
    LEFT JOIN recommender_servedlist sl ON sl.request_id = e.request_id
    WHERE e.timestamp >= %(start)s AND e.timestamp < %(end)s AND e.event_type IN ({", ".join(map(str, COUNTED_TYPES))})
) s
GROUP BY s.item_id, s.segment, s.variant, s.attributed
"""


def _insert_counts(day: date, start: datetime, end: datetime, head: list[int]) -> int:
    """Insert the day's count rows (its old rows are already deleted); returns the rows written."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                _INSERT_PG,
                {
                    "day": day, "start": start, "end": end,
                    # One array literal: Django binds a list element by element in Python.
                    "head": "{" + ",".join(map(str, head)) + "}",
                    "imp": IMPRESSION, "click": CLICK, "cart": ADD_TO_CART, "purchase": PURCHASE,
                },
            )
            return cur.rowcount
    rows = _counts_in_python(day, start, end, set(head))
    DailyItemCount.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def _counts_in_python(day: date, start: datetime, end: datetime, head: set[int]) -> list[DailyItemCount]:
    """The same counts as ``_INSERT_PG``, computed in Python (SQLite and other databases)."""
    events = list(
        Event.objects.filter(timestamp__gte=start, timestamp__lt=end, event_type__in=COUNTED_TYPES)
        .values_list("item_id", "event_type", "request_id", "value", "item__price")
    )
    request_ids = sorted({e[2] for e in events if e[2] is not None})
    lists: dict = {}
    for at in range(0, len(request_ids), 500):
        for rid, variant, items in ServedList.objects.filter(request_id__in=request_ids[at : at + 500]).values_list(
            "request_id", "variant", "items"
        ):
            lists[rid] = (variant or None, set(items or ()))
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    column = {IMPRESSION: 0, CLICK: 1, ADD_TO_CART: 2, PURCHASE: 3}
    seen: set[tuple] = set()
    for item_id, event_type, rid, value, price in events:
        served = lists.get(rid)
        attributed = served is not None and item_id in served[1]
        row = acc[(item_id, served[0] if attributed else None, attributed)]
        if event_type == PURCHASE and price is not None:
            quantity = Decimal(repr(value)) if value is not None else Decimal(1)
            row[4] += (quantity * price).quantize(CENT, rounding=ROUND_HALF_UP)
        if attributed and event_type != IMPRESSION:
            if (rid, item_id, event_type) in seen:
                continue
            seen.add((rid, item_id, event_type))
        row[column[event_type]] += 1
    return [
        DailyItemCount(
            day=day, item_id=item_id, segment=Segment.HEAD if item_id in head else Segment.TAIL, variant=variant,
            attributed=attributed, impressions=c[0], clicks=c[1], add_to_carts=c[2], purchases=c[3], revenue=c[4],
        )
        for (item_id, variant, attributed), c in acc.items()
    ]


# Per (variant, user): only lists served under a variant to a known user; the rest matches _INSERT_PG.
_INSERT_USERS_PG = f"""
INSERT INTO recommender_dailyvariantuser
    (day, variant, user_external_id, impressions, clicks, add_to_carts, purchases, revenue)
SELECT %(day)s, sl.variant, sl.user_external_id,
    COUNT(*) FILTER (WHERE e.event_type = %(imp)s),
    COUNT(DISTINCT e.request_id::text || ':' || e.item_id::text) FILTER (WHERE e.event_type = %(click)s),
    COUNT(DISTINCT e.request_id::text || ':' || e.item_id::text) FILTER (WHERE e.event_type = %(cart)s),
    COUNT(DISTINCT e.request_id::text || ':' || e.item_id::text) FILTER (WHERE e.event_type = %(purchase)s),
    COALESCE(SUM(ROUND(COALESCE(e.value, 1)::numeric * i.price, 2)) FILTER (WHERE e.event_type = %(purchase)s), 0)
FROM recommender_event e
JOIN recommender_servedlist sl ON sl.request_id = e.request_id
JOIN recommender_item i ON i.id = e.item_id
WHERE e.timestamp >= %(start)s AND e.timestamp < %(end)s AND e.event_type IN ({", ".join(map(str, COUNTED_TYPES))})
    AND sl.variant <> '' AND sl.user_external_id <> '' AND sl.items @> to_jsonb(e.item_id)
GROUP BY sl.variant, sl.user_external_id
"""


def _insert_variant_users(day: date, start: datetime, end: datetime) -> int:
    """Insert the day's per-(variant, user) rows (its old rows are already deleted); returns the rows written."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                _INSERT_USERS_PG,
                {"day": day, "start": start, "end": end,
                 "imp": IMPRESSION, "click": CLICK, "cart": ADD_TO_CART, "purchase": PURCHASE},
            )
            return cur.rowcount
    rows = _variant_users_in_python(day, start, end)
    DailyVariantUser.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def _variant_users_in_python(day: date, start: datetime, end: datetime) -> list[DailyVariantUser]:
    """The same rows as ``_INSERT_USERS_PG``, computed in Python (SQLite and other databases)."""
    events = list(
        Event.objects.filter(
            timestamp__gte=start, timestamp__lt=end, event_type__in=COUNTED_TYPES, request_id__isnull=False
        ).values_list("item_id", "event_type", "request_id", "value", "item__price")
    )
    request_ids = sorted({e[2] for e in events})
    lists: dict = {}
    for at in range(0, len(request_ids), 500):
        for rid, variant, user, items in (
            ServedList.objects.filter(request_id__in=request_ids[at : at + 500])
            .exclude(variant="").exclude(user_external_id="")
            .values_list("request_id", "variant", "user_external_id", "items")
        ):
            lists[rid] = (variant, user, set(items or ()))
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    column = {IMPRESSION: 0, CLICK: 1, ADD_TO_CART: 2, PURCHASE: 3}
    seen: set[tuple] = set()
    for item_id, event_type, rid, value, price in events:
        served = lists.get(rid)
        if served is None or item_id not in served[2]:
            continue
        row = acc[(served[0], served[1])]
        if event_type == PURCHASE and price is not None:
            quantity = Decimal(repr(value)) if value is not None else Decimal(1)
            row[4] += (quantity * price).quantize(CENT, rounding=ROUND_HALF_UP)
        if event_type != IMPRESSION:
            if (rid, item_id, event_type) in seen:
                continue
            seen.add((rid, item_id, event_type))
        row[column[event_type]] += 1
    return [
        DailyVariantUser(
            day=day, variant=variant, user_external_id=user, impressions=c[0], clicks=c[1], add_to_carts=c[2],
            purchases=c[3], revenue=c[4],
        )
        for (variant, user), c in acc.items()
    ]


def _insert_rollup(day: date) -> None:
    """Sum the day's item rows per (segment, variant, attributed) into the rollup table."""
    sums = ("impressions", "clicks", "add_to_carts", "purchases", "revenue")
    cells = (
        DailyItemCount.objects.filter(day=day).values("segment", "variant", "attributed")
        .annotate(**{f"s_{k}": Sum(k) for k in sums})  # prefixed: an annotation may not shadow a field
    )
    DailySegmentCount.objects.bulk_create([
        DailySegmentCount(
            day=day, segment=c["segment"], variant=c["variant"], attributed=c["attributed"],
            **{k: c[f"s_{k}"] or 0 for k in sums},
        )
        for c in cells
    ])


def week_of(day: date) -> date:
    """Monday of the (UTC) week of ``day``: the key of :class:`~recommender.models.reports.WeeklyItemCount`."""
    return day - timedelta(days=day.weekday())


_WEEK_LOCK = 0x52455057  # first key of the advisory lock that serialises rebuilds of one week
_WEEK_PG = """
INSERT INTO recommender_weeklyitemcount
    (week, item_id, impressions, tail_impressions, clicks, add_to_carts, purchases, revenue)
SELECT %(week)s, item_id, SUM(impressions),
    COALESCE(SUM(impressions) FILTER (WHERE segment = 'tail'), 0),
    COALESCE(SUM(clicks) FILTER (WHERE attributed), 0),
    COALESCE(SUM(add_to_carts) FILTER (WHERE attributed), 0),
    COALESCE(SUM(purchases) FILTER (WHERE attributed), 0),
    SUM(revenue)
FROM recommender_dailyitemcount
WHERE day >= %(week)s AND day < %(next)s
GROUP BY item_id
"""


def _rebuild_week(day: date) -> None:
    """Replace the per-item sums of ``day``'s week by the sums of its item rows (inside the day's transaction)."""
    week = week_of(day)
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            # Fills of two days of one week lock different ReportDay rows: without this the later
            # one could sum the week before the other commits and overwrite it with stale sums.
            # Held to the commit; taken after the day's rows are written, so it is the last wait.
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_WEEK_LOCK, week.toordinal()])
            cur.execute("DELETE FROM recommender_weeklyitemcount WHERE week = %s", [week])
            cur.execute(_WEEK_PG, {"week": week, "next": week + timedelta(days=7)})
        return
    WeeklyItemCount.objects.filter(week=week).delete()
    attributed = Q(attributed=True)
    rows = DailyItemCount.objects.filter(day__gte=week, day__lt=week + timedelta(days=7)).values("item").annotate(
        n_imp=Sum("impressions"), n_tail=Coalesce(Sum("impressions", filter=Q(segment=Segment.TAIL)), 0),
        n_clicks=Coalesce(Sum("clicks", filter=attributed), 0),
        n_carts=Coalesce(Sum("add_to_carts", filter=attributed), 0),
        n_purchases=Coalesce(Sum("purchases", filter=attributed), 0), n_revenue=Sum("revenue"),
    )
    WeeklyItemCount.objects.bulk_create([
        WeeklyItemCount(week=week, item_id=r["item"], impressions=r["n_imp"], tail_impressions=r["n_tail"],
                        clicks=r["n_clicks"], add_to_carts=r["n_carts"], purchases=r["n_purchases"],
                        revenue=r["n_revenue"])
        for r in rows
    ], batch_size=1000)


def _items_shown_of_day() -> Coalesce:
    """Distinct items with an impression on the outer row's ``day`` (0 when none), as a subquery."""
    shown = (
        DailyItemCount.objects.filter(day=OuterRef("day"), impressions__gt=0).order_by()
        .values("day").annotate(n=Count("item", distinct=True)).values("n")
    )
    return Coalesce(Subquery(shown), 0)


def _items_shown(day: date) -> int:
    """Distinct items with an impression on ``day``, from the day's item rows."""
    return DailyItemCount.objects.filter(day=day, impressions__gt=0).values("item").distinct().count()


def do_backfill_items_shown(max_days: int = 400) -> int:
    """Set ``items_shown`` of days filled before the column existed, from their item rows; returns the days set.

    One UPDATE that only touches rows still NULL: a fill of the same day running at the same
    time holds the day's row lock and sets the figure itself, and this statement then skips it.
    """
    days = list(
        ReportDay.objects.filter(items_shown__isnull=True).order_by("day").values_list("day", flat=True)[:max_days]
    )
    if not days:
        return 0
    return ReportDay.objects.filter(day__in=days, items_shown__isnull=True).update(items_shown=_items_shown_of_day())


def do_aggregate_day(day: date, *, now: datetime | None = None, lag: timedelta = INGEST_LAG) -> DayResult:
    """Recompute one UTC day of counts from raw events, all or nothing; safe to run any number of times."""
    now = now or timezone.now()
    start, end = day_bounds(day)
    head = head_item_ids(day)  # read-only and slow-ish: kept out of the write transaction
    with transaction.atomic():
        # The row lock makes two concurrent fills of one day take turns instead of interleaving.
        state, _ = ReportDay.objects.select_for_update().get_or_create(day=day)
        # Ingestion's clock, not the caller's: covered_until is compared with ingested_at.
        fill_started = timezone.now()
        seen = Event.objects.filter(timestamp__gte=start, timestamp__lt=end, event_type__in=COUNTED_TYPES).aggregate(
            n=Count("pk"), last=Max("ingested_at")
        )
        lists = ServedList.objects.filter(served_at__gte=start, served_at__lt=end).aggregate(
            n=Count("pk"), fallback=Count("pk", filter=~Q(fallback=""))
        )
        DailyItemCount.objects.filter(day=day).delete()
        DailySegmentCount.objects.filter(day=day).delete()
        DailyVariantUser.objects.filter(day=day).delete()
        rows = _insert_counts(day, start, end, head)
        _insert_rollup(day)
        _rebuild_week(day)
        state.items_shown = _items_shown(day)
        _insert_variant_users(day, start, end)
        state.status = ReportDay.Status.FILLED if now >= end else ReportDay.Status.PARTIAL
        state.filled_at = fill_started
        state.covered_until = fill_started - lag
        state.last_ingested_at = seen["last"]
        state.events = seen["n"]
        state.rows = rows
        state.lists_served = lists["n"]
        state.fallback_lists = lists["fallback"]
        state.save()
    return DayResult(day=day, status=state.status, events=seen["n"], rows=rows)


def _find_late_days(today_start: datetime) -> list[date]:
    """Filled days before today that received events after their fill (one query on ingested_at)."""
    states = dict(ReportDay.objects.filter(status=ReportDay.Status.FILLED).values_list("day", "covered_until"))
    if not states:
        return []
    late = (
        Event.objects.filter(
            ingested_at__gt=min(states.values()), timestamp__lt=today_start, event_type__in=COUNTED_TYPES
        )
        .annotate(day=TruncDate("timestamp", tzinfo=dt_timezone.utc))
        .values("day")
        .annotate(last=Max("ingested_at"))
        .values_list("day", "last")
    )
    # Days with no filled row need no re-opening: every run fills them anyway.
    return sorted(day for day, last in late if day in states and last > states[day])


def do_aggregate_pending(now: datetime, *, max_days: int = 400, lag: timedelta = INGEST_LAG) -> PendingResult:
    """The beat job: re-open days with late events, fill every unfilled day up to yesterday, then today.

    Each day commits on its own, oldest first, so a crash loses at most the day in progress
    and the next run starts at the first day that is not filled. ``max_days`` bounds one run
    (a first run over years of history); the rest is left for the next run.
    """
    today = utc_day(now)
    today_start, _ = day_bounds(today)
    wall = timezone.now()  # before the scan: what it cannot see was ingested after this
    result = PendingResult()

    reopen = _find_late_days(today_start)
    if reopen:
        # Committed on its own: a crash before the refill still leaves the day marked.
        ReportDay.objects.filter(day__in=reopen).update(status=ReportDay.Status.PENDING)
        log.info("aggregation: %d day(s) re-opened by late events: %s", len(reopen), reopen)
    result.reopened = reopen
    # The scan saw every event ingested up to wall - lag; filled days it did not re-open are
    # therefore covered that far, which keeps the next scan short.
    ReportDay.objects.filter(status=ReportDay.Status.FILLED, covered_until__lt=wall - lag).exclude(
        day__in=reopen
    ).update(covered_until=wall - lag)

    first = Event.objects.filter(event_type__in=COUNTED_TYPES).aggregate(t=Min("timestamp"))["t"]
    known_first = ReportDay.objects.aggregate(d=Min("day"))["d"]
    candidates = [d for d in (first and utc_day(first), known_first) if d is not None]
    if not candidates:
        return result
    start = min(min(candidates), today)
    filled = set(ReportDay.objects.filter(status=ReportDay.Status.FILLED, day__lt=today).values_list("day", flat=True))
    todo = [start + timedelta(days=n) for n in range((today - start).days)]
    todo = [d for d in todo if d not in filled] + [today]
    for day in todo[:max_days]:
        result.filled.append(do_aggregate_day(day, now=now, lag=lag))
    result.remaining = max(0, len(todo) - max_days)
    # Days filled before ReportDay.items_shown existed (cheap: reads count rows, not events).
    do_backfill_items_shown(max_days)
    return result
