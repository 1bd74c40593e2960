"""shop_recs/affinity.py: which gunicorn worker goes on which core."""
from __future__ import annotations

import pytest

from shop_recs.affinity import pick_core, should_pin


@pytest.mark.parametrize(
    ("setting", "workers", "cores", "expected"),
    [
        (None, 2, 2, True),  # auto: a core each
        ("auto", 1, 2, True),
        ("auto", 3, 2, False),  # more workers than cores: the scheduler shares them out
        ("auto", 1, 1, False),  # one core: nothing to choose
        ("1", 3, 2, True),
        ("on", 1, 1, True),
        ("0", 2, 2, False),
        (" Off ", 2, 2, False),
    ],
)
def test_pinning_follows_the_setting_and_otherwise_needs_a_core_per_worker(setting, workers, cores, expected):
    assert should_pin(setting, workers, cores) is expected


def test_a_setting_that_is_not_understood_says_what_is():
    with pytest.raises(ValueError, match="auto, 1 or 0; got 'sometimes'"):
        should_pin("sometimes", 2, 2)


def test_each_new_worker_takes_the_least_used_core_and_a_replacement_the_one_left():
    cores = [0, 1, 2, 3]
    taken: list[int | None] = []
    for _ in range(4):
        taken.append(pick_core(cores, taken))
    assert taken == [0, 1, 2, 3]
    assert pick_core(cores, taken) == 0  # a fifth worker doubles up on the lowest
    taken.remove(2)  # the worker on core 2 died
    assert pick_core(cores, taken + [None]) == 2  # unpinned workers count for nothing


def test_only_usable_cores_are_picked():
    assert pick_core([3, 5], [3]) == 5
