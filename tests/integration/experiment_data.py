"""A small shop with one A/B experiment, its served lists and outcomes, made through the real services.

Users are hashed into arms by the serving snapshot itself; inside each arm, the n-th user
(in id order) clicks, adds to cart and buys on fixed strides, so the rates are known whatever
the split: the boost arm converts about three times as often as the control.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from recommender.ingestion import do_ingest_events, do_upsert_items
from recommender.models import ABVariant, Experiment, ExposurePolicy, Item
from recommender.reports.aggregation import do_aggregate_pending
from recommender.serving import policies
from recommender.serving.experiments import do_start_experiment
from recommender.serving.impressions import ServedRecord, do_log_impressions

HEAD = ("h1", "h2")
TAIL = tuple(f"t{i}" for i in range(1, 9))
PRICES = {"h1": "10.00", "h2": "20.00", **{t: f"{4 + i}.50" for i, t in enumerate(TAIL)}}
#: Every n-th user of the arm does it (1 in n): click, add to cart, buy.
STRIDES = {"ctl": {"clicked": 5, "added_to_cart": 10, "purchased": 20}, "boost": {"clicked": 4, "added_to_cart": 5, "purchased": 6}}


def at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=timezone.utc)


@dataclass
class ExperimentData:
    experiment: Experiment
    control: ABVariant
    boost: ABVariant
    day: date  # the day the lists were served and acted on
    now: datetime  # the aggregation ran as of this instant (the next day, noon)
    arms: dict[str, list[str]] = field(default_factory=dict)  # variant name -> user ids
    did: dict[str, dict[str, int]] = field(default_factory=dict)  # variant name -> metric -> users who did
    revenue: dict[str, float] = field(default_factory=dict)
    impressions: dict[str, int] = field(default_factory=dict)
    tail_impressions: dict[str, int] = field(default_factory=dict)


def make_experiment_data(day: date, n_users: int = 400, prefix: str = "tb") -> ExperimentData:
    """Items, a running experiment started on ``day`` at 08:00, one list per user, outcomes; counts aggregated."""
    do_upsert_items([
        {"item_id": i, "title": f"Item {i}", "category": "head" if i in HEAD else "tail", "price": p}
        for i, p in PRICES.items()
    ])
    before = day - timedelta(days=1)
    # The head: many views the day before.
    do_ingest_events(
        [{"user_id": f"bg{j}", "item_id": h, "event_type": "view", "timestamp": at(before, 12).isoformat()}
         for j in range(30) for h in HEAD],
        now=at(day, 23),
    )
    current = ExposurePolicy.objects.create(name=f"{prefix}-current", is_default=True)
    boosted = ExposurePolicy.objects.create(name=f"{prefix}-tail-boost", tail_boost=1.5, min_tail_share=0.6)
    experiment = Experiment.objects.create(name=f"{prefix} tail boost", hypothesis="A stronger tail boost sells more.")
    control = ABVariant.objects.create(name=f"{prefix}-ctl", experiment=experiment, is_control=True, policy=current, share=0.5)
    boost = ABVariant.objects.create(name=f"{prefix}-boost", experiment=experiment, policy=boosted, share=0.5)
    experiment = do_start_experiment(experiment.pk, now=at(day, 8))

    snapshot = policies.load_snapshot(policies.change_key())
    data = ExperimentData(experiment, control, boost, day, at(day + timedelta(days=1), 12))
    pks = dict(Item.objects.values_list("external_id", "pk"))
    records, events = [], []
    for j in range(n_users):
        user = f"shopper-{j:04d}"
        _, variant = snapshot.assign(user)
        if variant is None:
            continue
        arm = "ctl" if variant.name == control.name else "boost"
        rank = len(data.arms.setdefault(variant.name, []))
        data.arms[variant.name].append(user)
        tail_item = TAIL[rank % len(TAIL)]
        items = ("h1", "h2", tail_item) if arm == "ctl" else (tail_item, "h1", TAIL[(rank + 3) % len(TAIL)])
        request_id = str(uuid.uuid4())
        records.append(ServedRecord(
            request_id=request_id, served_at=at(day, 9), endpoint="user", user_id=user, variant=variant.name,
            policy="p", model_version="v1", fallback="", item_pks=tuple(pks[i] for i in items), item_ids=items,
            segments="".join("h" if i in HEAD else "t" for i in items),
        ))
        data.impressions[variant.name] = data.impressions.get(variant.name, 0) + len(items)
        data.tail_impressions[variant.name] = data.tail_impressions.get(variant.name, 0) + sum(i in TAIL for i in items)
        did = data.did.setdefault(variant.name, {"clicked": 0, "added_to_cart": 0, "purchased": 0})
        data.revenue.setdefault(variant.name, 0.0)
        for metric, event_type in (("clicked", "click"), ("added_to_cart", "add_to_cart"), ("purchased", "purchase")):
            if rank % STRIDES[arm][metric] == 0:
                did[metric] += 1
                events.append({
                    "user_id": user, "item_id": tail_item, "event_type": event_type, "timestamp": at(day, 10).isoformat(),
                    "request_id": request_id, "event_id": f"{prefix}-{user}-{event_type}",
                })
                if metric == "purchased":
                    data.revenue[variant.name] += float(PRICES[tail_item])
    do_log_impressions(records)
    do_ingest_events(events, now=at(day, 23))
    do_aggregate_pending(data.now, lag=timedelta(0))
    return data
