"""Test data of the admin report pages, made through the app's own services, with figures known by construction.

Used by the integration tests (a fixed clock) and the browser tests (the real clock: the
pages open on their default range, the last 30 days).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from recommender.ingestion import do_ingest_events, do_upsert_items
from recommender.models import ExposurePolicy, Item, Promotion
from recommender.reports.aggregation import do_aggregate_pending
from recommender.serving.impressions import ServedRecord, do_log_impressions

HEAD = "ab"
CATEGORY = {"a": "big", "b": "big", "f": "big", "c": "small", "d": "small", "e": "small", "g": "small"}
PRICES = {"a": 10, "b": 20, "c": 5.5, "d": 3, "e": 7.25, "f": 100, "g": 1}


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)


def ingest(now: datetime, *events: tuple) -> None:
    """(user, item, type, time, request_id or None, value or None) tuples, through the ingestion service."""
    do_ingest_events(
        [
            {
                "user_id": u, "item_id": i, "event_type": t, "timestamp": ts.isoformat(), "event_id": uuid.uuid4().hex,
                **({"request_id": str(r)} if r else {}), **({"value": v} if v is not None else {}),
            }
            for u, i, t, ts, r, v in events
        ],
        now=now,
    )


def serve(user: str, items: str, when: datetime, variant: str = "") -> str:
    """Log a served list and its impressions through the impression service; returns its request id."""
    by_id = dict(Item.objects.values_list("external_id", "pk"))
    request_id = str(uuid.uuid4())
    do_log_impressions([
        ServedRecord(
            request_id=request_id, served_at=when, endpoint="user", user_id=user, variant=variant,
            policy="fair", model_version="v1", fallback="", item_pks=tuple(by_id[i] for i in items),
            item_ids=tuple(items), segments="".join("h" if i in HEAD else "t" for i in items),
        )
    ])
    return request_id


@dataclass
class ExposureShop:
    """Three days of served lists; the figures each page must show, worked out by hand."""

    day1: date
    day2: date
    today: date
    # Lists served, per day: items in list order.
    served: dict[date, list[str]]

    @property
    def days(self) -> list[date]:
        return [self.day1, self.day2, self.today]

    def impressions_by_item(self) -> dict[str, int]:
        out = {i: 0 for i in CATEGORY}
        for lists in self.served.values():
            for items in lists:
                for i in items:
                    out[i] += 1
        return out

    def tail_share_of_impressions(self, day: date) -> float:
        shown = "".join(self.served[day])
        return sum(i not in HEAD for i in shown) / len(shown)


def make_exposure_shop(now: datetime) -> ExposureShop:
    """Seven items (a, b head; g and f never shown); lists over the two days before ``now``'s day and that day.

    Conversions: on day 1 the shopper of r1 clicks c twice (one click) and buys two c
    (revenue 11.00), attributed; on day 2 e is clicked and carted from r2; f is clicked
    without being in r3 and bought outside recommendations (revenue 100.00); today a is
    clicked from yesterday's r3. Promotions: item e on day 2 only; category "small" from
    day 2 on, without an end; and one long before, outside any range the tests use.
    """
    today = now.date()
    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    do_upsert_items([
        {"item_id": i, "title": f"Item {i}", "category": CATEGORY[i], "price": PRICES[i]} for i in CATEGORY
    ])
    policy = ExposurePolicy.objects.create(name="fair", is_default=True, head_share=0.34, head_window_days=30)
    # a and b are head: the most interactions over the window (2 of 7 items at 34%).
    ingest(now, *[(f"h{n}", i, "view", at(day1, 1) - timedelta(days=2), None, None) for n in range(5) for i in HEAD])
    served = {day1: ["acd"], day2: ["be", "ac"], today: ["bd"]}
    r1 = serve("u1", "acd", at(day1, 9), variant="B")
    r2 = serve("u2", "be", at(day2, 10))
    r3 = serve("u3", "ac", at(day2, 11), variant="B")
    ingest(
        now,
        ("u1", "c", "click", at(day1, 9, 1), r1, None),
        ("u1", "c", "click", at(day1, 9, 2), r1, None),
        ("u1", "c", "purchase", at(day1, 9, 5), r1, 2),
        ("u2", "e", "click", at(day2, 10, 1), r2, None),
        ("u2", "e", "add_to_cart", at(day2, 10, 2), r2, None),
        ("u3", "f", "click", at(day2, 11, 1), r3, None),
        ("u4", "f", "purchase", at(day2, 15), None, None),
    )
    # Today's events happen early in the day (the browser tests run at any hour).
    serve("u5", "bd", at(today, 0, 1) if now > at(today, 0, 3) else now - timedelta(seconds=30))
    ingest(now, ("u3", "a", "click", min(now - timedelta(seconds=20), at(today, 0, 2)), r3, None))
    by_id = dict(Item.objects.values_list("external_id", "pk"))
    Promotion.objects.create(policy=policy, item_id=by_id["e"], boost=1.0,
                             starts_at=at(day2, 0), ends_at=at(day2, 23))
    Promotion.objects.create(policy=policy, category="small", boost=0.5, starts_at=at(day2, 6))
    Promotion.objects.create(policy=policy, category="big", boost=2.0,
                             starts_at=at(day1, 0) - timedelta(days=200), ends_at=at(day1, 0) - timedelta(days=190))
    do_aggregate_pending(now, lag=timedelta(0))
    return ExposureShop(day1, day2, today, served)


BEHAVIOUR_ITEMS = [f"i{n}" for n in range(10)]


def behaviour_events(now: datetime) -> list[tuple[str, str, str, datetime]]:
    """(user, item, type, time): u1 buys i0 twice on different days (a repeat), u2 buys i1 twice on one day
    (not a repeat), u3 stops at a click, u4 at a view, u5 buys i3 with no view; u3 also saw an impression."""
    # Hours before noon of a past day (UTC): "the same day" holds at any time of day the suite runs
    # (counting back from ``now`` put u2's two purchases on two days when run just after midnight).
    noon = now.astimezone(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)
    ago = lambda days, hour=0: noon - timedelta(days=days, hours=hour)  # noqa: E731
    return [
        ("u1", "i0", "view", ago(20, 3)), ("u1", "i0", "add_to_cart", ago(20, 2)), ("u1", "i0", "purchase", ago(20, 1)),
        ("u1", "i0", "purchase", ago(5)),
        ("u2", "i0", "view", ago(10, 4)), ("u2", "i1", "view", ago(10, 3)),
        ("u2", "i1", "purchase", ago(10, 2)), ("u2", "i1", "purchase", ago(10, 1)),
        ("u3", "i0", "view", ago(3, 2)), ("u3", "i0", "click", ago(3, 1)), ("u3", "i4", "impression", ago(3)),
        ("u4", "i2", "view", ago(25)),
        ("u5", "i3", "purchase", ago(2)),
    ]


def make_behaviour_shop(now: datetime) -> tuple[list[tuple], object]:
    """Ten items and the events above, ingested; a model trained on them (popularity, forced active) and
    two interest segments written for it. Returns (events, model version)."""
    from recommender.models import InterestSegment
    from recommender.training.pipeline import do_queue_training, do_train

    do_upsert_items([
        {"item_id": i, "title": f"Thing {i}", "category": "toys" if i in ("i0", "i1") else "books", "price": 4}
        for i in BEHAVIOUR_ITEMS
    ])
    events = behaviour_events(now)
    ingest(now, *[(u, i, t, ts, None, None) for u, i, t, ts in events])
    run = do_train(do_queue_training("test", force=True, params={"kind": "most-popular"}).pk)
    assert run.status == "succeeded", run.log + run.error
    version = run.model_version
    InterestSegment.objects.bulk_create([
        InterestSegment(model_version=version, index=0, size=3, label="toys, thing",
                        top_items=[{"item_id": "i0", "title": "Thing i0", "count": 7}],
                        top_categories=[{"category": "toys", "count": 10}],
                        top_terms=[{"term": "toys"}, {"term": "thing"}]),
        InterestSegment(model_version=version, index=1, size=2, label="books",
                        top_items=[{"item_id": "i3", "title": "Thing i3", "count": 1}],
                        top_categories=[{"category": "books", "count": 2}],
                        top_terms=[{"term": "books"}]),
    ])
    return events, version
