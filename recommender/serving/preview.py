"""Preview an exposure-policy edit for one shopper: their list under the saved policy and under the edit.

Both lists come from the serving path itself (:func:`.services.recommend_for_user`, with the
policy given instead of the shopper's A/B arm), so the preview shows what the shopper would
be served, reasons included. Nothing is logged: no ServedList row, no impression event.

The saved policy is read fresh from the database (not the process's snapshot, which may be a
couple of seconds old), and both policies are given ids no saved policy has, derived from
their settings, because the serving space caches a policy's config per id.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from ..models import ExposurePolicy
from . import policies as pol
from .policies import PolicyRow
from .services import Recommendations, recommend_for_user

#: Settings of a policy an edit may change, each checked by the model field's own validators.
SCALAR_FIELDS = (
    "head_share", "head_window_days", "tail_boost", "min_tail_share", "diversity",
    "exploration_slots", "exclude_purchased", "daily_impression_cap", "exposure_spreading",
)
#: Rules an edit may replace: pinned / buried item database ids (pin order), promotions as
#: (boost, item pk or None, category or "", starts_at, ends_at).
RULE_FIELDS = ("pinned", "buried", "promotions")
MAX_K = 50


class PreviewError(ValueError):
    """Edited values the policy cannot take; ``errors`` maps each field to what to change."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass
class PreviewList:
    """One side of the preview: the policy's name and the list as the API would serve it."""

    policy: str
    items: list[dict[str, Any]]
    fallback: dict[str, str] | None
    model_version: str | None

    @property
    def tail_share(self) -> float | None:
        if not self.items:
            return None
        return sum(1 for i in self.items if i["segment"] == "tail") / len(self.items)


@dataclass
class PolicyPreview:
    """The shopper's list before and after the edit; ``after`` items carry ``before_rank`` and ``move``."""

    user_id: str
    before: PreviewList
    after: PreviewList
    dropped: list[dict[str, Any]] = field(default_factory=list)  # in "before", gone from "after"
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (saved, edited)

    def as_dict(self) -> dict[str, Any]:
        def side(s: PreviewList) -> dict[str, Any]:
            return {"policy": s.policy, "items": s.items, "fallback": s.fallback,
                    "model_version": s.model_version, "tail_share": s.tail_share}

        return {
            "user_id": self.user_id, "before": side(self.before), "after": side(self.after),
            "dropped": self.dropped, "changed": {k: list(v) for k, v in self.changed.items()},
        }


def clean_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check edited values with the model's own validators; raise PreviewError saying what to change."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name in RULE_FIELDS:
            # Tuples all the way down: a policy is hashed to key its cached config.
            out[name] = tuple(tuple(v) for v in value) if name == "promotions" else tuple(int(v) for v in value)
            continue
        if name not in SCALAR_FIELDS:
            errors[name] = f"'{name}' is not a policy setting; use one of {', '.join(SCALAR_FIELDS + RULE_FIELDS)}."
            continue
        model_field = ExposurePolicy._meta.get_field(name)
        label = model_field.verbose_name
        if value in ("", None) and model_field.null:
            out[name] = None
            continue
        try:
            cleaned = model_field.clean(value, None)
        except ValidationError as exc:
            errors[name] = f"{label} {value!r}: {' '.join(exc.messages)} Change it to see the preview."
            continue
        if isinstance(cleaned, float) and not math.isfinite(cleaned):
            errors[name] = f"{label} {value!r} must be a finite number, e.g. 0.5."
            continue
        out[name] = cleaned
    if errors:
        raise PreviewError(errors)
    return out


def saved_policy(policy_id: int | None) -> PolicyRow:
    """The policy as saved now (the default one, or the built-in, when ``policy_id`` is None)."""
    snapshot = pol.load_snapshot(pol.change_key())
    if policy_id is None:
        return snapshot.default
    row = snapshot.policies.get(policy_id)
    if row is None:
        raise PreviewError({"policy": f"No exposure policy with id {policy_id}; it may have been deleted."})
    return row


def _preview_id(row: PolicyRow) -> int:
    """A negative id that only this policy's settings map to (saved policies have positive ids)."""
    return -1 - (hash(dataclasses.replace(row, id=0, name="")) & ((1 << 62) - 1))


def _as_preview(row: PolicyRow, name: str) -> PolicyRow:
    return dataclasses.replace(row, id=_preview_id(row), name=name)


def _side(result: Recommendations, name: str) -> PreviewList:
    return PreviewList(policy=name, items=result.items, fallback=result.fallback, model_version=result.model_version)


def _moves(before: PreviewList, after: PreviewList) -> list[dict[str, Any]]:
    """Mark each ``after`` item with its rank before and how it moved; return the items that dropped out."""
    rank_before = {item["item_id"]: pos for pos, item in enumerate(before.items, start=1)}
    in_after = set()
    for pos, item in enumerate(after.items, start=1):
        in_after.add(item["item_id"])
        was = rank_before.get(item["item_id"])
        item["rank"] = pos
        item["before_rank"] = was
        item["move"] = "new" if was is None else ("same" if was == pos else (f"up {was - pos}" if was > pos else f"down {pos - was}"))
    for pos, item in enumerate(before.items, start=1):
        item["rank"] = pos
    return [item for item in before.items if item["item_id"] not in in_after]


def preview_policy(user_id: str, policy_id: int | None, changes: Mapping[str, Any], k: int = 10) -> PolicyPreview:
    """The shopper's top-``k`` under the saved policy and under it with ``changes`` applied.

    ``policy_id`` None previews a new policy against the one that serves by default now.
    Raises PreviewError for values the policy cannot take (nothing is served then).
    """
    if not user_id:
        raise PreviewError({"user": "Pick a shopper's user id to preview their list."})
    if not 1 <= k <= MAX_K:
        raise PreviewError({"k": f"k must be between 1 and {MAX_K}; got {k}."})
    cleaned = clean_changes(changes)
    saved = saved_policy(policy_id)
    edited = dataclasses.replace(saved, **cleaned)
    before_name = saved.name
    after_name = f"{saved.name} (unsaved edit)" if policy_id is not None else "new policy (unsaved)"
    before = _side(recommend_for_user(user_id, k, policy=_as_preview(saved, before_name), log_impressions=False), before_name)
    after = _side(recommend_for_user(user_id, k, policy=_as_preview(edited, after_name), log_impressions=False), after_name)
    dropped = _moves(before, after)
    changed = {
        name: (getattr(saved, name), getattr(edited, name))
        for name in SCALAR_FIELDS + RULE_FIELDS
        if getattr(saved, name) != getattr(edited, name)
    }
    return PolicyPreview(user_id=user_id, before=before, after=after, dropped=dropped, changed=changed)


def sample_users(n: int = 8) -> list[str]:
    """Ids of shoppers with the most recent behaviour, to offer in the preview's user picker."""
    from ..models import Event, EventType

    recent = (
        Event.objects.exclude(event_type=EventType.IMPRESSION).order_by("-timestamp")
        .values_list("user__external_id", flat=True)[:500]
    )
    return list(dict.fromkeys(recent))[:n]
