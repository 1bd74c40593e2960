"""The admin's policies, promotions, rules and A/B variants as one immutable snapshot per process.

Which variants serve: those of the running experiment, if one runs (users hashed with a salt
of that experiment, so every experiment reshuffles them); otherwise the active variants that
belong to no experiment (hashed with ``AB_SALT`` alone, as before experiments existed).
Variants of draft and stopped experiments never serve.

Edits take effect without a restart: every ``SERVING_POLICY_CHECK_SECONDS`` one tiny query
reads a change key (the newest ``updated_at`` and the row count of each table; counts catch
deletions), and only when it moved are the rows read again (five queries). Queryset
``update()`` calls bypass ``auto_now``; edit through the admin or ``save()``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection

from ..conf import settings as rec_settings
from ..models import ABVariant, Experiment, ExposurePolicy, ItemRule, Promotion

_TABLES = (ExposurePolicy, Promotion, ItemRule, ABVariant, Experiment)


@dataclass(frozen=True)
class PolicyRow:
    """One ExposurePolicy with its promotions and rules, as plain values (item database ids)."""

    id: int
    name: str
    head_share: float
    head_window_days: int
    tail_boost: float
    min_tail_share: float
    diversity: float
    exploration_slots: int
    exclude_purchased: bool
    daily_impression_cap: int | None
    exposure_spreading: float = 0.0
    # (boost, item pk or None, category or "", starts_at, ends_at)
    promotions: tuple[tuple[float, int | None, str, datetime | None, datetime | None], ...] = ()
    pinned: tuple[int, ...] = ()
    buried: tuple[int, ...] = ()


#: What serves when no policy is marked default: the ExposurePolicy field defaults.
BUILT_IN = PolicyRow(
    id=0,
    name="built-in",
    **{
        f: ExposurePolicy._meta.get_field(f).default
        for f in (
            "head_share", "head_window_days", "tail_boost", "min_tail_share", "diversity",
            "exploration_slots", "exclude_purchased", "exposure_spreading",
        )
    },
    daily_impression_cap=None,
)


@dataclass(frozen=True)
class Variant:
    name: str
    policy_id: int
    model_version_id: int | None
    share: float


@dataclass(frozen=True, eq=False)
class PolicySnapshot:
    """Every policy and the experiment's arms at one moment; ``key`` changes with any edit."""

    key: tuple
    policies: dict[int, PolicyRow]
    default_id: int | None
    variants: tuple[Variant, ...] = ()
    _cuts: tuple[float, ...] = field(default=(), repr=False)
    # The running experiment's pk, or None: stand-alone variants (or none) serve.
    experiment_id: int | None = None

    @property
    def default(self) -> PolicyRow:
        return self.policies.get(self.default_id, BUILT_IN) if self.default_id else BUILT_IN

    def assign(self, user_id: str | None) -> tuple[PolicyRow, Variant | None]:
        """The policy and A/B arm of a user: a stable hash of the id against the arms' shares."""
        if user_id is None or not self.variants:
            return self.default, None
        digest = hashlib.sha256(f"{assignment_salt(self.experiment_id)}:{user_id}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        for cut, variant in zip(self._cuts, self.variants):
            if u < cut:
                return self.policies[variant.policy_id], variant
        return self.default, None


def assignment_salt(experiment_id: int | None) -> str:
    """The hash salt of an experiment's users: ``AB_SALT`` plus the experiment, so a new experiment reshuffles."""
    base = rec_settings.AB_SALT
    return base if experiment_id is None else f"{base}:experiment-{experiment_id}"


def change_key() -> tuple:
    """One query: the newest edit time and row count of every policy table."""
    parts = ", ".join(
        f"(SELECT MAX(updated_at) FROM {m._meta.db_table}), (SELECT COUNT(*) FROM {m._meta.db_table})"
        for m in _TABLES
    )
    with connection.cursor() as cur:
        cur.execute(f"SELECT {parts}")
        return tuple(str(v) for v in cur.fetchone())


def load_snapshot(key: tuple) -> PolicySnapshot:
    """Read every policy, promotion, rule and serving variant (five queries)."""
    promos: dict[int, list] = {}
    for row in Promotion.objects.values_list("policy_id", "boost", "item_id", "category", "starts_at", "ends_at"):
        promos.setdefault(row[0], []).append(tuple(row[1:]))
    pins: dict[int, list[int]] = {}
    buries: dict[int, list[int]] = {}
    for policy_id, item_id, action in ItemRule.objects.order_by("position", "pk").values_list(
        "policy_id", "item_id", "action"
    ):
        (pins if action == ItemRule.Action.PIN else buries).setdefault(policy_id, []).append(item_id)
    policies: dict[int, PolicyRow] = {}
    default_id = None
    for p in ExposurePolicy.objects.all():
        policies[p.pk] = PolicyRow(
            id=p.pk, name=p.name, head_share=p.head_share, head_window_days=p.head_window_days,
            tail_boost=p.tail_boost, min_tail_share=p.min_tail_share, diversity=p.diversity,
            exploration_slots=p.exploration_slots, exclude_purchased=p.exclude_purchased,
            daily_impression_cap=p.daily_impression_cap, exposure_spreading=p.exposure_spreading,
            promotions=tuple(promos.get(p.pk, ())), pinned=tuple(pins.get(p.pk, ())),
            buried=tuple(buries.get(p.pk, ())),
        )
        if p.is_default:
            default_id = p.pk
    running = Experiment.objects.filter(status=Experiment.Status.RUNNING).values_list("pk", flat=True).first()
    variants = tuple(
        Variant(v.name, v.policy_id, v.model_version_id, float(v.share))
        for v in ABVariant.objects.filter(is_active=True, share__gt=0, experiment_id=running).order_by("name")
    )
    # Cumulative shares, capped at 1: arms beyond a full house get nobody (the admin says so).
    cuts, total = [], 0.0
    for v in variants:
        total = min(1.0, total + v.share)
        cuts.append(total)
    return PolicySnapshot(
        key=key, policies=policies, default_id=default_id, variants=variants, _cuts=tuple(cuts), experiment_id=running
    )


def describe(row: PolicyRow) -> dict[str, Any]:
    """The policy's settings as shown in responses and reports."""
    return {"name": row.name, "tail_boost": row.tail_boost, "min_tail_share": row.min_tail_share}
