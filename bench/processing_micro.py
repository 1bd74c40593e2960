"""Cleaning, weighting and sessions of behaviour events (recommender.ml.processing) on
10 million synthetic events, next to a plain ``np.lexsort`` of the same arrays (the floor:
any per-user rule has to order events by user and time at least once).

    python bench/processing_micro.py [--events N] [--rounds 3] [--json PATH]

Prints the median over the rounds of wall time and of CPU time (the process's own, which
is what to read on a shared machine), and events per wall second.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import machine, median, print_table, write_json  # noqa: E402
from recommender.ml.base import EVENT_CODES, Interactions  # noqa: E402
from recommender.ml.processing import (  # noqa: E402
    assign_sessions,
    clean_interactions,
    weight_interactions,
)

DAY = 86_400
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z, a fixed clock
#: Event mix of a shop that logs impressions: a third of all events.
MIX = {"view": 0.40, "impression": 0.33, "click": 0.13, "search": 0.05, "add_to_cart": 0.05, "purchase": 0.04}


def synthetic_events(n: int, seed: int = 0, n_users: int = 1_000_000, n_items: int = 200_000) -> Interactions:
    """n events over 90 days, time-sorted: Zipf-like items, 5% double sends, 20 bots, a few bad clocks."""
    rng = np.random.default_rng(seed)
    n_dup = n // 20
    n_base = n - n_dup
    user = rng.integers(0, n_users, n_base).astype(np.int32)
    item = np.minimum(rng.zipf(1.3, n_base) - 1, n_items - 1).astype(np.int32)
    ts = rng.integers(NOW - 90 * DAY, NOW, n_base).astype(np.int64)
    codes = np.array([EVENT_CODES[k] for k in MIX], dtype=np.int8)
    et = rng.choice(codes, n_base, p=np.array(list(MIX.values())))
    # Retried sends and double clicks: a copy of a random event 0-2 s later.
    src = rng.integers(0, n_base, n_dup)
    user = np.concatenate([user, user[src]])
    item = np.concatenate([item, item[src]])
    ts = np.concatenate([ts, ts[src] + rng.integers(0, 3, n_dup)])
    et = np.concatenate([et, et[src]])
    # Bots: 20 users that send about 8 views a second (5,000 each at 10M events).
    bots = rng.choice(n_users, 20, replace=False)
    k = min(100_000, n // 100)
    where = rng.choice(n, k, replace=False)
    user[where] = bots[np.arange(k) % 20]
    ts[where] = NOW - 30 * DAY + rng.integers(0, max(60, k // 160), k)
    et[where] = EVENT_CODES["view"]
    # A few clocks in milliseconds or unset.
    bad = rng.choice(n, 1_000, replace=False)
    ts[bad[:500]] *= 1000
    ts[bad[500:]] = 0
    value = np.where(et == EVENT_CODES["purchase"], rng.integers(1, 6, n), 0).astype(np.float32)
    order = np.argsort(ts, kind="stable")
    return Interactions(
        user=user[order],
        item=item[order],
        timestamp=ts[order],
        event_type=et[order],
        n_users=n_users,
        n_items=n_items,
        extra={"value": value[order]},
    )


def timed(fn, rounds: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``fn()`` over ``rounds`` calls, and its last result."""
    walls, cpus, out = [], [], None
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return median(walls), median(cpus), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = synthetic_events(args.events)
    print(f"{args.events:,} synthetic events in {time.perf_counter() - t0:.1f} s; {machine()}")

    def clean():
        return clean_interactions(data, now=NOW, max_events_per_day=2_000)

    floor_w, floor_c, _ = timed(lambda: np.lexsort((data.timestamp, data.user)), args.rounds)
    clean_w, clean_c, (cleaned, report) = timed(clean, args.rounds)
    weight_w, weight_c, _ = timed(
        lambda: weight_interactions(cleaned, now=NOW, half_life_days=30), args.rounds
    )
    sess_w, sess_c, sessions = timed(lambda: assign_sessions(cleaned.user, cleaned.timestamp), args.rounds)

    def pipeline():
        out, _ = clean()
        out = weight_interactions(out, now=NOW, half_life_days=30)
        return assign_sessions(out.user, out.timestamp)

    total_w, total_c, _ = timed(pipeline, args.rounds)

    n = args.events
    rows = [
        ["np.lexsort (time, user): floor", n, floor_w, floor_c, int(n / floor_w), 1.0],
        ["clean_interactions", n, clean_w, clean_c, int(n / clean_w), clean_w / floor_w],
        ["weight_interactions", len(cleaned.user), weight_w, weight_c, int(len(cleaned.user) / weight_w), weight_w / floor_w],
        ["assign_sessions", len(cleaned.user), sess_w, sess_c, int(len(cleaned.user) / sess_w), sess_w / floor_w],
        ["clean + weight + sessions", n, total_w, total_c, int(n / total_w), total_w / floor_w],
    ]
    print_table(
        f"processing, median of {args.rounds} rounds",
        ["step", "events in", "wall s", "cpu s", "events/s (wall)", "x floor"],
        rows,
    )
    r = report.as_dict(max_bot_users=0)
    print(
        f"\nremoved {r['n_removed']:,} of {r['n_input']:,}: {r['removed']}; "
        f"{r['n_bot_users']} bot users; {int(sessions.max()) + 1:,} sessions"
    )
    write_json(
        args.json,
        {
            "machine": machine(),
            "events": n,
            "rounds": args.rounds,
            "rows": [dict(zip(["step", "events_in", "wall_s", "cpu_s", "events_per_s", "x_floor"], r)) for r in rows],
            "report": r,
        },
    )


if __name__ == "__main__":
    main()
