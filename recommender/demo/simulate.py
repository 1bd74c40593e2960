"""SIMULATED traffic for the synthetic demo shop, through the real serving, logging and reporting path.

For each of the last ``days`` days (ending yesterday, UTC), ``lists_per_day`` demo shoppers
(drawn by their activity in the synthetic world) each get a list from the real
:func:`~recommender.serving.services.recommend_for_user` (so the real A/B assignment picks
their arm when an experiment runs), the list is logged exactly as serving logs it (a
:class:`~recommender.models.ServedList` and its impression events, stamped with the
simulated time), and the shopper's clicks, add-to-carts and purchases, sampled by
:mod:`recommender.demo.response`, are ingested with the list's ``request_id`` through the
ingestion service. Then the aggregation job fills the report tables.

**The shoppers are simulated**: the figures this produces describe a made-up world, not real
shoppers (see :mod:`recommender.demo.response`). They exercise the machinery end to end.

Deterministic ids make a re-run harmless: a list's ``request_id`` is derived from
(seed, day, shopper) and its events' ids from the ``request_id``; lists already stored are
skipped, so running the same simulation twice stores nothing twice. Each simulated day is
written in one transaction. The recommender itself runs on the real clock (its catalog,
head/tail cut and new-item flags are today's), only the logged times are simulated.
"""
from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from ..conf import settings as rec_settings
from ..ingestion import do_ingest_events
from ..models import ABVariant, Experiment, ExposurePolicy, Item, ServedList, ShopUser
from ..reports.aggregation import day_bounds, do_aggregate_pending, utc_day
from ..serving import state
from ..serving.experiments import ExperimentError, do_start_experiment
from ..serving.impressions import ServedRecord, do_log_impressions
from ..serving.services import recommend_for_user
from . import synthetic
from .response import ResponseModel, ShopWorld, build_world, item_index, user_index
from .synthetic import ITEM_ID_PREFIX, USER_ID_PREFIX

#: The demo experiment's name (``simulate_traffic --experiment`` without a name).
DEMO_EXPERIMENT = "Fair exposure vs no boost"
CONTROL_POLICY = "No boost (simulated demo control)"
TREATMENT_POLICY = "Fair exposure (simulated demo)"
SIMULATED = "SIMULATED traffic: synthetic shoppers following made-up rules, not real shoppers"
_NAMESPACE = uuid.UUID("5f0c2a8e-6b1d-4c3e-9a57-0d7f3b2e1a94")


class SimulationError(ValueError):
    """The simulation cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class ShopParams:
    """The parameters ``seed_demo`` was run with (its defaults here); the world is rebuilt from them."""

    items: int = 3_000
    users: int = 1_500
    weeks: int = 8
    seed: int = 0


@dataclass
class SimulationResult:
    """What one simulation run did."""

    days: list[date]
    lists_served: int = 0
    lists_already_there: int = 0
    impressions: int = 0
    events_stored: int = 0
    events_duplicate: int = 0
    fallback_lists: int = 0
    # variant name ("" outside any experiment) -> lists, impressions, tail, clicks, carts, purchases, revenue
    by_variant: dict[str, dict[str, float]] = field(default_factory=dict)
    experiment: str | None = None
    experiment_created: bool = False
    aggregated: bool = False
    aggregated_days: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary_lines(self) -> list[str]:
        first, last = (self.days[0], self.days[-1]) if self.days else ("-", "-")
        lines = [
            f"{SIMULATED}.",
            f"  days: {len(self.days)} ({first} to {last}); lists served {self.lists_served:,} "
            f"(already there from an earlier run: {self.lists_already_there:,}; "
            f"fallback lists: {self.fallback_lists:,})",
            f"  impressions {self.impressions:,}; response events stored {self.events_stored:,} "
            f"(already there: {self.events_duplicate:,})",
        ]
        if self.experiment:
            created = " (created and started)" if self.experiment_created else ""
            lines.append(f"  experiment: '{self.experiment}'{created}")
        for name, v in sorted(self.by_variant.items()):
            imp = v["impressions"]
            lines.append(
                f"  variant {name or '(none: default policy)'}: {int(v['lists']):,} lists, tail share "
                f"{(v['tail'] / imp if imp else 0):.1%}, clicks {int(v['clicks']):,}, "
                f"add-to-carts {int(v['carts']):,}, "
                f"purchases {int(v['purchases']):,}, revenue {v['revenue']:,.2f}"
            )
        lines.append(
            (f"  aggregated {self.aggregated_days} day(s)" if self.aggregated else
             "  not aggregated: run manage.py aggregate_reports for the report pages")
            + f"; {self.seconds:.1f} s"
        )
        lines.extend(f"  note: {n}" for n in self.notes)
        return lines


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:36] or "experiment"


def do_ensure_experiment(name: str, *, start_at: datetime) -> tuple[Experiment, bool]:
    """The running experiment ``name``: created with its two arms (and started at ``start_at``) when absent.

    Control: a policy without any long-tail help (``tail_boost`` 0, ``min_tail_share`` 0).
    Treatment: the default fair-exposure policy (the ``ExposurePolicy`` defaults). 50/50.
    All or nothing: when it cannot start (another experiment runs), nothing is created.
    """
    with transaction.atomic():
        experiment = Experiment.objects.filter(name=name).first()
        created = experiment is None
        if created:
            experiment = _create_experiment(name)
        if experiment.status == Experiment.Status.DRAFT:
            try:
                experiment = do_start_experiment(experiment.pk, now=start_at)
            except ExperimentError as exc:
                raise SimulationError(f"Cannot start '{name}': {exc}") from None
        elif experiment.status != Experiment.Status.RUNNING:
            raise SimulationError(
                f"Experiment '{name}' is {experiment.status}; simulated traffic needs it running. "
                "Pass another --experiment name to create a new one."
            )
    return experiment, created


def _create_experiment(name: str) -> Experiment:
    control, _ = ExposurePolicy.objects.get_or_create(
        name=CONTROL_POLICY, defaults={"tail_boost": 0.0, "min_tail_share": 0.0}
    )
    treatment, _ = ExposurePolicy.objects.get_or_create(name=TREATMENT_POLICY)  # the model's defaults
    experiment = Experiment.objects.create(
        name=name,
        hypothesis=(
            "SIMULATED demo experiment: does the fair-exposure policy (a long-tail boost and a minimum tail "
            "share) cost or earn anything against no boost at all, for synthetic shoppers?"
        ),
    )
    slug = _slug(name)
    for suffix, policy, is_control in (("control", control, True), ("treatment", treatment, False)):
        variant = f"{slug}-{suffix}"
        if ABVariant.objects.filter(name=variant).exists():
            raise SimulationError(
                f"An A/B variant named '{variant}' already exists in another experiment; "
                "pick another experiment name."
            )
        ABVariant.objects.create(name=variant, experiment=experiment, is_control=is_control, policy=policy, share=0.5)
    return experiment


def check_world(world: ShopWorld) -> dict[str, int]:
    """External id -> pk of the demo items, after checking that ``world`` is the shop in the database."""
    pks = dict(Item.objects.filter(external_id__startswith=ITEM_ID_PREFIX).values_list("external_id", "pk"))
    if not pks:
        raise SimulationError("There is no synthetic demo shop in the database; run manage.py seed_demo first.")
    p = world.params
    hint = (f"the shop was not seeded with --items {p['n_items']} --users {p['n_users']} --weeks {p['weeks']} "
            f"--seed {p['seed']}; pass the parameters seed_demo was run with (--shop-items/--shop-users/"
            "--shop-weeks/--shop-seed).")
    if len(pks) != world.n_items:
        raise SimulationError(f"The database holds {len(pks):,} demo items but {hint}")
    sample = sorted({0, world.n_items - 1, *range(0, world.n_items, max(1, world.n_items // 20))})
    stored = dict(Item.objects.filter(external_id__in=[synthetic.item_external_id(i) for i in sample])
                  .values_list("external_id", "title"))
    if any(stored.get(synthetic.item_external_id(i)) != world.item_titles[i] for i in sample):
        raise SimulationError(f"The demo items' titles differ from the regenerated ones: {hint}")
    return pks


def simulated_days(days: int, now: datetime) -> list[date]:
    """The ``days`` UTC days ending yesterday, oldest first."""
    today = utc_day(now)
    return [today - timedelta(days=n) for n in range(days, 0, -1)]


def do_simulate_traffic(
    days: int,
    lists_per_day: int,
    *,
    seed: int = 0,
    experiment: str | None = None,
    shop: ShopParams = ShopParams(),
    k: int = 10,
    now: datetime | None = None,
    aggregate: bool = True,
    progress: Callable[[date, int], None] | None = None,
) -> SimulationResult:
    """Serve, log and answer ``lists_per_day`` lists on each of the last ``days`` days; then aggregate."""
    if days < 1 or lists_per_day < 1:
        raise SimulationError(f"--days and --lists-per-day must each be at least 1 (got {days} and {lists_per_day}).")
    if not 1 <= k <= 100:
        raise SimulationError(f"k must be between 1 and 100 (got {k}).")
    started = time.perf_counter()
    now = now or timezone.now()
    world = build_world(n_items=shop.items, n_users=shop.users, weeks=shop.weeks, seed=shop.seed)
    pks = check_world(world)
    shoppers = sorted(
        i for i in (user_index(e) for e in ShopUser.objects.filter(external_id__startswith=USER_ID_PREFIX)
                    .values_list("external_id", flat=True))
        if i is not None and i < world.n_users
    )
    if not shoppers:
        raise SimulationError("The demo shop has no shoppers in the database; run manage.py seed_demo first.")
    result = SimulationResult(days=simulated_days(days, now))
    if experiment:
        exp, result.experiment_created = do_ensure_experiment(experiment, start_at=day_bounds(result.days[0])[0])
        result.experiment = exp.name
        if exp.started_at and utc_day(exp.started_at) > result.days[0]:
            result.notes.append(
                f"'{exp.name}' started on {utc_day(exp.started_at)}; lists simulated before that day are served "
                "under its variants but fall outside its report."
            )
    # A fresh serving state sees the experiment (and any policy edit) now, not after its check interval.
    state.reset_state()
    model = ResponseModel(world)
    weights = world.user_rate[shoppers]
    weights = weights / weights.sum()
    m = min(lists_per_day, len(shoppers))
    if m < lists_per_day:
        result.notes.append(f"only {len(shoppers):,} demo shoppers are stored: {m} lists a day, one each.")
    for day in result.days:
        rng = np.random.default_rng([seed, 1, day.toordinal()])
        who = rng.choice(len(shoppers), size=m, replace=False, p=weights)
        hours = rng.choice(24, size=m, p=synthetic._HOURS)
        seconds = rng.integers(0, 3600, size=m)
        day_start = day_bounds(day)[0]
        plan = sorted(
            (day_start + timedelta(seconds=int(h) * 3600 + int(s)), shoppers[int(w)])
            for w, h, s in zip(who, hours, seconds)
        )
        ids = {u: uuid.uuid5(_NAMESPACE, f"{seed}:{day.isoformat()}:{u}") for _, u in plan}
        existing = set(
            ServedList.objects.filter(request_id__in=list(ids.values())).values_list("request_id", flat=True)
        )
        records: list[ServedRecord] = []
        events: list[dict[str, Any]] = []
        for served_at, u in plan:
            rid = ids[u]
            if rid in existing:
                result.lists_already_there += 1
                continue
            user_id = synthetic.user_external_id(u)
            rec = recommend_for_user(user_id, k=k, log_impressions=False)
            item_ids = [i["item_id"] for i in rec.items]
            missing = [i for i in item_ids if i not in pks]
            if missing:  # not a demo item: look it up (it gets no response from the synthetic world)
                pks.update(Item.objects.filter(external_id__in=missing).values_list("external_id", "pk"))
            segments = "".join(i["segment"][0] for i in rec.items)
            fallback = (rec.fallback or {}).get("served", "") if rec.fallback else ""
            records.append(ServedRecord(
                request_id=str(rid), served_at=served_at, endpoint="user", user_id=user_id,
                variant=rec.variant or "", policy=rec.policy or "", model_version=rec.model_version or "",
                fallback=fallback, item_pks=tuple(pks[i] for i in item_ids), item_ids=tuple(item_ids),
                segments=segments,
            ))
            tally = result.by_variant.setdefault(
                rec.variant or "",
                {"lists": 0, "impressions": 0, "tail": 0, "clicks": 0, "carts": 0, "purchases": 0, "revenue": 0.0},
            )
            tally["lists"] += 1
            tally["impressions"] += len(item_ids)
            tally["tail"] += segments.count("t")
            result.fallback_lists += bool(fallback)
            rrng = np.random.default_rng([seed, 2, day.toordinal(), u])
            for r in model.respond(u, [item_index(i) for i in item_ids], rrng):
                ts = served_at + timedelta(seconds=r.offset_s)
                if ts > now:  # the shopper has not done it yet
                    continue
                ev: dict[str, Any] = {
                    "user_id": user_id, "item_id": item_ids[r.position], "event_type": r.event_type,
                    "timestamp": ts.isoformat(), "request_id": str(rid),
                    "event_id": f"sim:{rid}:{r.position}:{r.event_type}",
                }
                if r.value is not None:
                    ev["value"] = r.value
                events.append(ev)
                if r.event_type == "click":
                    tally["clicks"] += 1
                elif r.event_type == "add_to_cart":
                    tally["carts"] += 1
                elif r.event_type == "purchase":
                    tally["purchases"] += 1
                    tally["revenue"] += float(world.item_price[r.item]) * r.value
        # One transaction per day: a crash never leaves lists without their responses.
        with transaction.atomic():
            if records:
                do_log_impressions(records)
            batch = rec_settings.MAX_EVENT_BATCH
            for at in range(0, len(events), batch):
                stored = do_ingest_events(events[at : at + batch], now=now)
                result.events_stored += stored.stored
                result.events_duplicate += stored.duplicates
        result.lists_served += len(records)
        result.impressions += sum(len(r.item_ids) for r in records)
        if progress is not None:
            progress(day, len(records))
    if aggregate:
        result.aggregated_days = len(do_aggregate_pending(timezone.now()).filled)
        result.aggregated = True
    result.seconds = time.perf_counter() - started
    return result


__all__ = [
    "DEMO_EXPERIMENT",
    "SIMULATED",
    "ShopParams",
    "SimulationError",
    "SimulationResult",
    "check_world",
    "do_ensure_experiment",
    "do_simulate_traffic",
    "simulated_days",
]
