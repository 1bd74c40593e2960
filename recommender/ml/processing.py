"""Cleaning and weighting of behaviour events before training. Pure numpy; never imports Django.

Three steps, each a function on :class:`~recommender.ml.base.Interactions`:

* :func:`clean_interactions` drops what is not a shopper's behaviour: impossible timestamps,
  exact and near duplicates (double clicks, retried sends), bot-like bursts and, by default,
  impressions. It returns new ``Interactions`` and a :class:`CleaningReport` with the count
  removed by each rule, so that the admin can show what training did not see and why.
* :func:`weight_interactions` sets ``weight`` from the event type, the purchased quantity
  and the age of the event.
* :func:`assign_sessions` numbers browsing sessions (a new one after 30 idle minutes).

Everything is vectorised. The two orders the rules need, (user, time) and
(user, item, type, time), are obtained by sorting one packed int64 key each (``np.sort``
of int64 is several times faster than ``np.argsort`` or ``np.lexsort``), so 10 million
events take a few seconds; see ``bench/processing_micro.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import numpy as np

from .base import EVENT_CODES, Interactions
from .base import DEFAULT_EVENT_WEIGHTS
from .protocol import subset

DAY = 86_400
#: Events before this are a unit mistake or a default value, never behaviour (as conf.MIN_EVENT_TIME).
DEFAULT_MIN_TIMESTAMP = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp())
#: (max events, window seconds): more than 100 events in any 60 s is not a person.
DEFAULT_BURST_LIMITS: tuple[tuple[int, float], ...] = ((100, 60.0),)
DEFAULT_SESSION_GAP_S = 30 * 60

_IMPRESSION = EVENT_CODES["impression"]
_PURCHASE = EVENT_CODES["purchase"]
# Event codes fit in 3 bits; packing (item, type) into one integer needs the bound.
_TYPE_SPAN = 8
assert max(EVENT_CODES.values()) < _TYPE_SPAN


@dataclass
class CleaningReport:
    """How many events each cleaning rule removed, for the admin and the training log.

    Every removed event is counted once, under the first rule that removed it, in the
    order the rules run: timestamps, duplicates, bots, impressions. So
    ``n_input == n_output + n_removed``.

    Attributes
    ----------
    n_input, n_output : events before and after cleaning
    n_too_early : events stamped before ``min_timestamp``
    n_in_future : events stamped after ``now``
    n_duplicates : exact or near duplicates of an earlier event (same user, item, type)
    n_bot_users : users whose event rate exceeded a burst limit
    n_bot_events : events of those users (after the rules above) that were dropped
    n_impressions : impressions removed from the training events (0 when kept)
    bot_users : (n_bot_users,) int32 user indices, ascending
    params : the rule settings used, so that the numbers can be read in context
    """

    n_input: int
    n_output: int
    n_too_early: int = 0
    n_in_future: int = 0
    n_duplicates: int = 0
    n_bot_users: int = 0
    n_bot_events: int = 0
    n_impressions: int = 0
    bot_users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_removed(self) -> int:
        """Events removed by all rules together."""
        return (
            self.n_too_early + self.n_in_future + self.n_duplicates + self.n_bot_events + self.n_impressions
        )

    def as_dict(self, max_bot_users: int = 100) -> dict[str, Any]:
        """Plain JSON-ready dict; ``bot_users`` is cut to the first ``max_bot_users`` indices."""
        return {
            "n_input": self.n_input,
            "n_output": self.n_output,
            "n_removed": self.n_removed,
            "removed": {
                "too_early": self.n_too_early,
                "in_future": self.n_in_future,
                "duplicates": self.n_duplicates,
                "bot_events": self.n_bot_events,
                "impressions": self.n_impressions,
            },
            "n_bot_users": self.n_bot_users,
            "bot_users": [int(u) for u in self.bot_users[:max_bot_users]],
            "params": self.params,
        }


# --------------------------------------------------------------------------- helpers


def to_unix(now: datetime | float | int) -> float:
    """Unix seconds of ``now``: a timezone-aware datetime, or a number taken as unix seconds."""
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC); got a naive datetime.")
        return now.timestamp()
    value = float(now)
    if not math.isfinite(value):
        raise ValueError(f"now must be a finite number of unix seconds, got {now!r}.")
    return value


def _time_order(timestamp: np.ndarray) -> np.ndarray | None:
    """(n,) int64 positions in time order, ties in input order; None when already in order."""
    if len(timestamp) < 2 or bool(np.all(timestamp[1:] >= timestamp[:-1])):
        return None
    return np.argsort(timestamp, kind="stable").astype(np.int64)


def _user_time_sort(user: np.ndarray, timestamp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, user[order])`` for the (user, time) order, ties in input order."""
    n = len(user)
    if n == 0:
        return np.zeros(0, dtype=np.int64), user[:0]
    if int(user.max()) >= (2**62) // n:
        order = np.lexsort((timestamp, user)).astype(np.int64)  # lexsort is stable
        return order, user[order]
    # Packing (user, rank in time order) into one unique int64 lets np.sort (SIMD, no
    # index array) do the work of a stable two-key argsort, and gives the sorted users
    # back by a division instead of a random gather.
    tord = _time_order(timestamp)
    key = (user if tord is None else user[tord]).astype(np.int64)
    key *= n
    key += np.arange(n, dtype=np.int64)
    key.sort()
    rank = key % n
    order = rank if tord is None else tord[rank]
    key //= n
    return order, key.astype(user.dtype, copy=False)


def user_time_order(user: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Positions that sort events by (user, time), ties in input order.

    Parameters
    ----------
    user : (n,) int, non-negative user index
    timestamp : (n,) int or float, unix seconds

    Returns
    -------
    order : (n,) int64, ``user[order]`` ascending and, within a user, ``timestamp[order]``
        ascending
    """
    return _user_time_sort(np.asarray(user), np.asarray(timestamp))[0]


def _duplicate_mask(
    user: np.ndarray, item: np.ndarray, event_type: np.ndarray, timestamp: np.ndarray, window_s: float
) -> np.ndarray:
    """(n,) bool, events whose previous event of the same (user, item, type) is <= window_s older.

    The arrays are already in (user, time) order, so a position encodes (user, time) and
    sorting ``(item, type) * n + position`` lists each (user, item, type) in time order.
    """
    n = len(user)
    dup = np.zeros(n, dtype=bool)
    if n < 2:
        return dup
    code = item.astype(np.int64)
    code *= _TYPE_SPAN
    code += event_type
    if int(code.max()) >= (2**62) // n:
        pos = np.lexsort((np.arange(n), code)).astype(np.int64)
        code = code[pos]
    else:
        code *= n
        code += np.arange(n, dtype=np.int64)
        code.sort()
        pos = code % n
        code //= n
    same = code[1:] == code[:-1]
    if (
        np.issubdtype(timestamp.dtype, np.integer)
        and int(timestamp.max() - timestamp.min()) < 2**31
        and int(user.max()) < 2**31
    ):
        # One gather instead of two: (user, time) packed so that a difference is the time
        # gap within a user and >= 2**31 across users (positions ascend within a code).
        ut = user.astype(np.int64) << 32
        ut += timestamp - timestamp.min()
        ut = ut[pos]
        same &= (ut[1:] - ut[:-1]) <= math.floor(window_s)
    else:
        u, t = user[pos], timestamp[pos]
        same &= u[1:] == u[:-1]
        same &= (t[1:] - t[:-1]) <= window_s
    dup[pos[1:][same]] = True
    return dup


def burst_users(
    user: np.ndarray, timestamp: np.ndarray, limits: Sequence[tuple[int, float]]
) -> np.ndarray:
    """Users with more than ``max_events`` events inside some window of ``window_s`` seconds.

    A user breaks a limit exactly when some event and the event ``max_events`` places
    later (the same user's events in time order) are less than ``window_s`` apart, so each
    limit is one shifted comparison instead of a sliding-window count.

    Parameters
    ----------
    user : (n,) int, sorted by (user, time) (see :func:`user_time_order`)
    timestamp : (n,) int or float unix seconds, in the same order
    limits : ``(max_events, window_s)`` pairs

    Returns
    -------
    users : (n_bots,) int user indices, ascending, unique
    """
    found = [np.zeros(0, dtype=np.asarray(user).dtype)]
    for max_events, window_s in limits:
        m = int(max_events)
        if m < 1 or window_s <= 0:
            raise ValueError(f"burst limit ({max_events}, {window_s}) needs max_events >= 1 and window_s > 0.")
        if len(user) <= m:
            continue
        # Integer seconds compare with an integer bound: no float copy of 10M gaps.
        bound = math.ceil(window_s) if np.issubdtype(timestamp.dtype, np.integer) else window_s
        hit = (user[m:] == user[:-m]) & (timestamp[m:] - timestamp[:-m] < bound)
        found.append(user[m:][hit])
    return np.unique(np.concatenate(found))


# --------------------------------------------------------------------------- cleaning


def clean_interactions(
    data: Interactions,
    *,
    now: datetime | float,
    min_timestamp: datetime | float = DEFAULT_MIN_TIMESTAMP,
    duplicate_window_s: float = 2.0,
    burst_limits: Sequence[tuple[int, float]] = DEFAULT_BURST_LIMITS,
    max_events_per_day: int | None = None,
    drop_impressions: bool = True,
) -> tuple[Interactions, CleaningReport]:
    """Drop impossible, duplicated and bot events (and impressions) before training.

    Rules, in order (each event is counted under the first rule that drops it):

    1. timestamps before ``min_timestamp`` or after ``now``;
    2. duplicates: an event whose previous event of the same user, item and type is at
       most ``duplicate_window_s`` older (so a run of rapid repeats keeps only its first
       event; ``0`` drops exact duplicates only);
    3. bots: every event of a user with more than ``max_events`` non-impression events
       in some window of ``window_s`` seconds, for any ``(max_events, window_s)`` of
       ``burst_limits`` (plus ``(max_events_per_day, 86400)`` when given, a rolling day).
       Impressions do not count towards the rate: a shop logs a whole list of them per page;
    4. impressions, when ``drop_impressions``: they say what was shown, not what
       interested the shopper (use :func:`split_impressions` to keep them for exposure).

    Parameters
    ----------
    data : events, any order; per-event arrays in ``data.extra`` are filtered alike
    now : end of the data (aware datetime or unix seconds); later events are impossible
    min_timestamp : earliest possible event (aware datetime or unix seconds)
    duplicate_window_s : seconds within which a repeat counts as the same event
    burst_limits : ``(max_events, window_s)`` pairs; an empty sequence disables the rule
    max_events_per_day : extra limit over any rolling 24 hours, or None
    drop_impressions : remove impression events from the result

    Returns
    -------
    cleaned : the kept events, in input order, same index spaces, ids and item_text
    report : counts per rule
    """
    now_s = to_unix(now)
    floor_s = to_unix(min_timestamp)
    if duplicate_window_s < 0:
        raise ValueError(f"duplicate_window_s must be >= 0, got {duplicate_window_s}.")
    limits = [(int(m), float(w)) for m, w in burst_limits]
    if max_events_per_day is not None:
        limits.append((int(max_events_per_day), float(DAY)))

    n = len(data.user)
    ts = np.asarray(data.timestamp)
    et = np.asarray(data.event_type)
    if np.issubdtype(ts.dtype, np.integer):
        too_early, in_future = ts < math.ceil(floor_s), ts > math.floor(now_s)
    else:
        too_early, in_future = ts < floor_s, ts > now_s
    valid = np.flatnonzero(~(too_early | in_future))

    # (user, time) order of the valid events; every later rule works on it.
    if len(valid) == n:
        rel, u = _user_time_sort(np.asarray(data.user), ts)
        order = rel
    else:
        rel, u = _user_time_sort(data.user[valid], ts[valid])
        order = valid[rel]
    t, e = ts[order], et[order]
    dup = _duplicate_mask(u, data.item[order], e, t, duplicate_window_s)

    live = ~dup
    rate = live & (e != _IMPRESSION)
    bots = burst_users(u[rate], t[rate], limits) if limits else np.zeros(0, dtype=u.dtype)
    is_bot_user = np.zeros(data.n_users, dtype=bool)
    is_bot_user[bots] = True
    bot_event = live & is_bot_user[u]
    live &= ~bot_event
    impression = live & (e == _IMPRESSION) if drop_impressions else np.zeros_like(live)
    live &= ~impression

    keep = np.zeros(n, dtype=bool)
    keep[order[live]] = True
    report = CleaningReport(
        n_input=n,
        n_output=int(keep.sum()),
        n_too_early=int(too_early.sum()),
        n_in_future=int((in_future & ~too_early).sum()),
        n_duplicates=int(dup.sum()),
        n_bot_users=len(bots),
        n_bot_events=int(bot_event.sum()),
        n_impressions=int(impression.sum()),
        bot_users=bots.astype(np.int32),
        params={
            "now": now_s,
            "min_timestamp": floor_s,
            "duplicate_window_s": float(duplicate_window_s),
            "burst_limits": [list(lim) for lim in limits],
            "drop_impressions": bool(drop_impressions),
        },
    )
    return subset(data, keep), report


def split_impressions(data: Interactions) -> tuple[Interactions, Interactions]:
    """``(interactions, impressions)``: the events that are not impressions, and those that are.

    Impressions measure exposure (what the shop showed), so the exposure reports use them
    while training must not read them as interest.
    """
    imp = np.asarray(data.event_type) == _IMPRESSION
    return subset(data, ~imp), subset(data, imp)


# --------------------------------------------------------------------------- weighting


def event_weight_table(event_weights: Mapping[str, float] | None = None) -> np.ndarray:
    """(max_code + 1,) float32 lookup from event code to weight.

    ``event_weights`` overrides :data:`~recommender.ml.base.DEFAULT_EVENT_WEIGHTS`
    type by type (as ``RECOMMENDER["EVENT_WEIGHTS"]`` does); an unknown name is an error.
    """
    weights = dict(DEFAULT_EVENT_WEIGHTS)
    if event_weights:
        unknown = sorted(set(event_weights) - set(EVENT_CODES))
        if unknown:
            raise ValueError(
                f"Unknown event type(s) in event_weights: {unknown}; valid types are {sorted(EVENT_CODES)}."
            )
        weights.update({k: float(v) for k, v in event_weights.items()})
    table = np.zeros(max(EVENT_CODES.values()) + 1, dtype=np.float32)
    for name, code in EVENT_CODES.items():
        table[code] = weights[name]
    return table


def weight_interactions(
    data: Interactions,
    *,
    now: datetime | float | None = None,
    event_weights: Mapping[str, float] | None = None,
    half_life_days: float | None = None,
    scale_purchase_value: bool = True,
    value_key: str = "value",
) -> Interactions:
    """New ``Interactions`` whose ``weight`` says how much each event tells about interest.

    ``weight = type_weight[event_type] * value_factor * 0.5 ** (age_days / half_life_days)``

    * ``type_weight`` from ``event_weights`` (name -> weight, over the defaults);
    * ``value_factor = log2(1 + quantity)`` for purchases when ``scale_purchase_value`` and
      ``data.extra[value_key]`` holds quantities, else 1. This is ``log1p(quantity)``
      rescaled so that buying one counts exactly the purchase weight, two count 1.58x,
      ten 3.46x: more units say more, with diminishing returns (bulk buys stay bounded).
      Missing, NaN or non-positive quantities count as one.
    * ``age_days = (now - timestamp) / 86400``, clipped at 0 so that no event counts more
      than its type weight; no decay when ``half_life_days`` is None.

    Parameters
    ----------
    data : events; ``data.extra[value_key]`` (n_events,) optional quantities
    now : reference time for ages (aware datetime or unix seconds); needed with a half-life
    event_weights : per-type weights, e.g. ``RECOMMENDER["EVENT_WEIGHTS"]``
    half_life_days : age at which an event counts half, > 0, or None
    scale_purchase_value : apply the quantity factor to purchases
    value_key : name of the quantity array in ``data.extra``

    Returns
    -------
    Interactions with ``weight`` (n_events,) float32; other arrays shared with ``data``
    """
    et = np.asarray(data.event_type)
    w = event_weight_table(event_weights)[et].astype(np.float64)
    value = data.extra.get(value_key)
    if scale_purchase_value and isinstance(value, np.ndarray) and len(value) == len(et):
        q = np.asarray(value, dtype=np.float64)
        q = np.where(np.isfinite(q) & (q > 0), q, 1.0)
        purchase = et == _PURCHASE
        w[purchase] *= np.log2(1.0 + q[purchase])
    if half_life_days is not None:
        if not half_life_days > 0:
            raise ValueError(f"half_life_days must be > 0 or None, got {half_life_days}.")
        if now is None:
            raise ValueError("weight_interactions needs now= when half_life_days is set.")
        age_days = np.maximum(to_unix(now) - np.asarray(data.timestamp, dtype=np.float64), 0.0) / DAY
        w *= np.exp2(-age_days / float(half_life_days))
    return replace(data, weight=w.astype(np.float32))


# --------------------------------------------------------------------------- sessions


def assign_sessions(
    user: np.ndarray, timestamp: np.ndarray, gap_s: float = DEFAULT_SESSION_GAP_S
) -> np.ndarray:
    """Session index of every event: a new session starts when the same user's previous
    event is more than ``gap_s`` seconds earlier (or the user has none).

    Parameters
    ----------
    user : (n,) int user index (e.g. ``data.user``)
    timestamp : (n,) int or float unix seconds, any order
    gap_s : idle seconds that end a session

    Returns
    -------
    session : (n,) int64 in input order; sessions are numbered ``0..n_sessions-1`` by
        (user, start time), so ``session.max() + 1`` is the number of sessions
    """
    if gap_s < 0:
        raise ValueError(f"gap_s must be >= 0, got {gap_s}.")
    user = np.asarray(user)
    timestamp = np.asarray(timestamp)
    n = len(user)
    session = np.zeros(n, dtype=np.int64)
    if n == 0:
        return session
    order = user_time_order(user, timestamp)
    u, t = user[order], timestamp[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = (u[1:] != u[:-1]) | (t[1:] - t[:-1] > gap_s)
    session[order] = np.cumsum(new) - 1
    return session
