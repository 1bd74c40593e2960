"""A/B assignment and the exposure report's arithmetic, without a database."""
from __future__ import annotations

import numpy as np
import pytest

from recommender.serving.policies import BUILT_IN, PolicyRow, PolicySnapshot, Variant
from recommender.serving.reports import gini


def snapshot(shares: list[float]) -> PolicySnapshot:
    rows = {i + 1: PolicyRow(**{**BUILT_IN.__dict__, "id": i + 1, "name": f"p{i + 1}"}) for i in range(len(shares))}
    variants = tuple(Variant(f"arm{i}", i + 1, None, s) for i, s in enumerate(shares))
    cuts = tuple(np.minimum(1.0, np.cumsum(shares)).tolist())
    return PolicySnapshot(key=(), policies=rows, default_id=None, variants=variants, _cuts=cuts)


def test_assignment_is_stable_and_follows_the_shares():
    snap = snapshot([0.2, 0.3])
    arms = [snap.assign(f"user-{i}")[1] for i in range(4000)]
    names = [a.name if a else None for a in arms]
    assert names == [(a.name if a else None) for a in (snap.assign(f"user-{i}")[1] for i in range(4000))]
    assert names.count("arm0") / 4000 == pytest.approx(0.2, abs=0.03)
    assert names.count("arm1") / 4000 == pytest.approx(0.3, abs=0.03)
    assert names.count(None) / 4000 == pytest.approx(0.5, abs=0.03)


def test_no_variants_or_anonymous_gets_the_default():
    assert snapshot([]).assign("x") == (BUILT_IN, None)
    assert snapshot([1.0]).assign(None) == (BUILT_IN, None)


def test_gini():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)
    assert gini(np.zeros(3)) == 0.0
