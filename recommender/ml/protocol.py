"""The offline evaluation split of EVALUATION.md: global temporal cut, test users, truth.

- Test period: the last ``test_days`` (30) days of the data; training is everything before.
- Validation: the same rules applied to the training period (its last 30 days).
- Test users: at least one training interaction and at least one test interaction on an
  item they did not have in training; their ground truth is that set of new-to-user items.
- Candidates: items seen in training plus items first seen in the test period (cold).
- Head: top 20% of training items by distinct training users; tail: every other candidate.

Index spaces (user and item indices) are those of the full data, so text embeddings and
ids stay aligned; training :class:`~recommender.ml.base.Interactions` simply hold fewer events.
Impressions are not interactions: they never make a user a test user, an item a training
item or a ground-truth pair, and they are not excluded from recommendations (but they stay
in ``train`` for models that learn from them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .base import EVENT_CODES, Interactions

DAY = 86_400


@dataclass
class Split:
    """One train/test split and everything metrics need.

    Attributes
    ----------
    train : events with ``timestamp < cut`` (same index spaces as the input)
    test : events with ``timestamp >= cut`` (and ``<= end``)
    cut, end : unix seconds; test period is ``[cut, end]``
    users : (n_test,) int32 test users, ascending
    truth : list of n_test (n_truth_u,) int32 arrays, new-to-user items, ascending
    exclude : list of n_test int32 arrays, items each test user had in training
    candidates : (m,) int32 candidate items, ascending
    cold : (n_items,) bool, candidate with no training interaction (first seen in test)
    head : (n_items,) bool, the top 20% of training items by distinct training users
    tail : (n_items,) bool, ``candidate & ~head`` (cold items included)
    popularity : (n_items,) int64 distinct training users per item
    """

    train: Interactions
    test: Interactions
    cut: int
    end: int
    users: np.ndarray
    truth: list[np.ndarray]
    exclude: list[np.ndarray]
    candidates: np.ndarray
    cold: np.ndarray
    head: np.ndarray
    tail: np.ndarray
    popularity: np.ndarray

    @property
    def candidate_mask(self) -> np.ndarray:
        """(n_items,) bool."""
        mask = np.zeros(self.train.n_items, dtype=bool)
        mask[self.candidates] = True
        return mask

    def describe(self) -> str:
        """One line of counts for logs and reports."""
        n_pairs = sum(len(t) for t in self.truth)
        n_cold_pairs = sum(int(self.cold[t].sum()) for t in self.truth)
        return (
            f"train {len(self.train.user):,} events, test {len(self.test.user):,} events; "
            f"{len(self.users):,} test users, {n_pairs:,} truth pairs ({n_cold_pairs:,} on cold items); "
            f"{len(self.candidates):,} candidates ({int(self.cold.sum()):,} cold, "
            f"{int(self.head.sum()):,} head)"
        )


def subset(data: Interactions, mask: np.ndarray) -> Interactions:
    """Events where ``mask`` is true, keeping index spaces, ids, text and per-event extras."""
    extra = {
        k: (v[mask] if isinstance(v, np.ndarray) and len(v) == len(data.user) else v)
        for k, v in data.extra.items()
    }
    return replace(
        data,
        user=data.user[mask],
        item=data.item[mask],
        timestamp=data.timestamp[mask],
        event_type=data.event_type[mask],
        weight=data.weight[mask],
        extra=extra,
    )


def _interaction_mask(data: Interactions) -> np.ndarray:
    return data.event_type != EVENT_CODES["impression"]


def distinct_user_counts(data: Interactions) -> np.ndarray:
    """(n_items,) int64 number of distinct users with an interaction (not impression) on each item."""
    m = _interaction_mask(data)
    keys = np.unique(data.user[m].astype(np.int64) * data.n_items + data.item[m])
    return np.bincount(keys % data.n_items, minlength=data.n_items).astype(np.int64)


def head_mask(popularity: np.ndarray, seen: np.ndarray, share: float = 0.2) -> np.ndarray:
    """Top ``ceil(share * n_seen)`` of the ``seen`` items by popularity (ties: lower index first).

    Parameters
    ----------
    popularity : (n_items,) distinct training users
    seen : (n_items,) bool, items with a training interaction

    Returns
    -------
    (n_items,) bool
    """
    idx = np.flatnonzero(seen)
    n_head = math.ceil(share * len(idx))
    order = idx[np.argsort(-popularity[idx], kind="stable")]
    mask = np.zeros(len(popularity), dtype=bool)
    mask[order[:n_head]] = True
    return mask


def temporal_split(
    data: Interactions,
    test_days: float = 30,
    *,
    end: int | None = None,
    head_share: float = 0.2,
) -> Split:
    """Global temporal split: test = ``[end - test_days, end]``, train = before.

    Parameters
    ----------
    data : events sorted or not by time
    test_days : length of the test period in days
    end : end of the data period (unix seconds); default the last event's timestamp.
        Events after ``end`` are ignored (used to split a training period again).
    head_share : share of training items that make the head
    """
    if len(data.timestamp) == 0:
        raise ValueError("cannot split an empty set of events")
    end = int(data.timestamp.max()) if end is None else int(end)
    cut = end - int(round(test_days * DAY))
    in_train = data.timestamp < cut
    in_test = (data.timestamp >= cut) & (data.timestamp <= end)
    if not in_train.any():
        raise ValueError(f"no events before the cut ({test_days} days before the end); the data is too short")
    train = subset(data, in_train)
    test = subset(data, in_test)
    n_items = data.n_items

    tr_m = _interaction_mask(train)
    te_m = _interaction_mask(test)
    tr_keys = np.unique(train.user[tr_m].astype(np.int64) * n_items + train.item[tr_m])
    te_keys = np.unique(test.user[te_m].astype(np.int64) * n_items + test.item[te_m])
    new_keys = te_keys[~np.isin(te_keys, tr_keys, assume_unique=True)]
    train_users = np.unique(tr_keys // n_items)
    new_keys = new_keys[np.isin(new_keys // n_items, train_users, assume_unique=False)]
    # new_keys is sorted, so grouping by user is a split at user boundaries.
    new_u = (new_keys // n_items).astype(np.int32)
    users, starts = np.unique(new_u, return_index=True)
    truth = [a.astype(np.int32) for a in np.split((new_keys % n_items), starts[1:])] if len(users) else []

    tr_u = tr_keys // n_items
    ex_starts = np.searchsorted(tr_u, users, side="left")
    ex_ends = np.searchsorted(tr_u, users, side="right")
    tr_items = (tr_keys % n_items).astype(np.int32)
    exclude = [tr_items[s:e] for s, e in zip(ex_starts, ex_ends)]

    seen = np.zeros(n_items, dtype=bool)
    seen[train.item[tr_m]] = True
    in_test_items = np.zeros(n_items, dtype=bool)
    in_test_items[test.item[te_m]] = True
    cold = in_test_items & ~seen
    candidates = np.flatnonzero(seen | cold).astype(np.int32)

    popularity = distinct_user_counts(train)
    head = head_mask(popularity, seen, head_share)
    tail = (seen | cold) & ~head
    return Split(
        train=train,
        test=test,
        cut=cut,
        end=end,
        users=users.astype(np.int32),
        truth=truth,
        exclude=exclude,
        candidates=candidates,
        cold=cold,
        head=head,
        tail=tail,
        popularity=popularity,
    )


def validation_split(split: Split, val_days: float = 30, **kwargs) -> Split:
    """The same rules applied to the training period: its last ``val_days`` days are validation.

    The training period ends at the test cut, so validation is ``[cut - val_days, cut)``.
    """
    return temporal_split(split.train, val_days, end=split.cut, **kwargs)
