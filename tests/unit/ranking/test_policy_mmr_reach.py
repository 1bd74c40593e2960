"""The MMR fill leaves out candidates no step can pick, and picks exactly what the full fill picks."""
from __future__ import annotations

import numpy as np
import pytest

from recommender.ranking import policy as pol
from recommender.ranking.policy import PolicyConfig

from ranking_factories import fill_world


@pytest.mark.parametrize("seed", range(6))
def test_pruned_fill_picks_exactly_what_the_full_fill_picks(seed):
    rng = np.random.default_rng(seed)
    pruned_some = 0
    for _ in range(150):
        m = int(rng.integers(5, 400))
        keep, adj, is_tail, items, catalog, pins = fill_world(rng, m, int(rng.integers(0, 3)))
        slots = int(rng.integers(1, 30))
        policy = PolicyConfig(
            diversity=float(rng.choice([0.05, 0.2, 0.5, 0.9])),
            min_tail_share=float(rng.choice([0.0, 0.3, 0.5, 1.0])),
            exploration_positions=tuple(int(p) for p in rng.choice(30, int(rng.integers(0, 3)), replace=False)),
        )
        args = (keep, adj, is_tail, items, catalog, policy, pins, slots)
        assert pol._fill(*args) == pol._fill(*args, prune=False)
        reach = pol._mmr_reach(adj[keep], is_tail[keep], ~catalog.ever_shown[items[keep]], min(slots, m),
                               policy.diversity)
        pruned_some += len(reach) < m
    assert pruned_some > 50  # the shortcut is exercised, not skipped


def test_reach_keeps_the_first_items_of_each_kind_and_drops_the_hopeless():
    adj = np.array([5.0, 4.0, 3.9, 3.0, 1.0, 0.5, 0.0, -3.0])
    tail = np.array([False, False, False, False, False, False, True, True])
    never = np.array([False] * 7 + [True])
    reach = pol._mmr_reach(adj, tail, never, slots=2, lam=0.2)  # gap 0.25 below the 2nd best (4.0)
    # 0, 1 (top two), 2 (within the gap); 6, 7 the first two tail items; 7 also the first never-shown.
    assert reach.tolist() == [0, 1, 2, 6, 7]
