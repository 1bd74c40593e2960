"""Experiment statistics against known values and scipy (the module itself needs neither scipy nor Django)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from recommender.reports import stats

scipy_stats = pytest.importorskip("scipy.stats")


def test_z_value_and_p_value_are_the_normal_ones():
    assert stats.z_value(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert stats.z_value(0.99) == pytest.approx(2.575829, abs=1e-6)
    assert stats.two_sided_p(1.959964) == pytest.approx(0.05, abs=1e-6)
    assert stats.two_sided_p(-3.0) == pytest.approx(2 * scipy_stats.norm.sf(3.0), rel=1e-9)
    with pytest.raises(ValueError, match="between 0 and 1"):
        stats.z_value(95)


def test_wilson_interval_known_values():
    # 0 of 10: the upper end is z^2 / (n + z^2), the textbook zero-successes case.
    lo, hi = stats.wilson_interval(0, 10)
    z2 = 1.959964**2
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2), abs=1e-6)
    # symmetric around 1/2 for half successes
    lo, hi = stats.wilson_interval(50, 100)
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi - lo == pytest.approx(0.19234, abs=1e-4)
    assert stats.wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="successes <= n"):
        stats.wilson_interval(11, 10)


@pytest.mark.parametrize("k,n", [(1, 7), (81, 263), (5, 2000), (990, 1000), (123, 456)])
def test_wilson_interval_matches_scipy(k, n):
    expected = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = stats.wilson_interval(k, n)
    assert lo == pytest.approx(expected.low, abs=1e-9)
    assert hi == pytest.approx(expected.high, abs=1e-9)


def test_two_proportion_test_known_value():
    # 200/1000 vs 250/1000: pooled p 0.225, z = 0.05 / sqrt(0.225 * 0.775 * 0.002) = 2.6774, p = 0.0074
    c = stats.two_proportion_test(200, 1000, 250, 1000)
    assert c.z == pytest.approx(2.6774, abs=1e-4)
    assert c.p_value == pytest.approx(0.00742, abs=1e-5)
    assert c.difference == pytest.approx(0.05)
    assert c.lift == pytest.approx(0.25)
    se = math.sqrt(0.2 * 0.8 / 1000 + 0.25 * 0.75 / 1000)
    assert c.difference_ci == pytest.approx((0.05 - 1.959964 * se, 0.05 + 1.959964 * se), abs=1e-6)


@pytest.mark.parametrize("kc,nc,kt,nt", [(30, 400, 45, 410), (120, 1000, 100, 1000), (7, 150, 8, 140), (500, 5000, 560, 5100)])
def test_two_proportion_test_matches_scipy(kc, nc, kt, nt):
    c = stats.two_proportion_test(kc, nc, kt, nt)
    # The pooled z-test is the 2x2 chi-square test without continuity correction: z^2 = chi2.
    chi2, p, _, _ = scipy_stats.chi2_contingency([[kt, nt - kt], [kc, nc - kc]], correction=False)
    assert c.z**2 == pytest.approx(chi2, rel=1e-9)
    assert c.p_value == pytest.approx(p, rel=1e-9)
    # The lift interval is the log relative-risk (Katz) interval.
    rr = scipy_stats.contingency.relative_risk(kt, nt, kc, nc)
    ci = rr.confidence_interval(confidence_level=0.95)
    assert c.lift == pytest.approx(rr.relative_risk - 1, rel=1e-9)
    assert c.lift_ci == pytest.approx((ci.low - 1, ci.high - 1), rel=1e-9)


def test_two_proportion_test_edge_cases():
    assert stats.two_proportion_test(0, 0, 1, 10) is None
    none_at_all = stats.two_proportion_test(0, 100, 0, 100)
    assert none_at_all.p_value is None and none_at_all.lift is None
    zero_control = stats.two_proportion_test(0, 100, 5, 100)
    assert zero_control.lift is None and zero_control.p_value < 0.05
    with pytest.raises(ValueError, match="successes <= n"):
        stats.two_proportion_test(5, 4, 1, 10)


def test_mean_summary_and_welch_match_numpy_and_scipy():
    rng = np.random.default_rng(7)
    a = rng.exponential(10.0, size=800) * (rng.random(800) < 0.3)
    b = rng.exponential(12.0, size=900) * (rng.random(900) < 0.3)
    sa = stats.mean_summary(len(a), float(a.sum()), float((a * a).sum()))
    sb = stats.mean_summary(len(b), float(b.sum()), float((b * b).sum()))
    assert sa.mean == pytest.approx(a.mean()) and sa.variance == pytest.approx(a.var(ddof=1))
    c = stats.mean_difference_test(sa, sb)
    t = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert c.z == pytest.approx(t.statistic, rel=1e-9)  # the same statistic; normal vs t reference
    assert c.p_value == pytest.approx(t.pvalue, abs=2e-3)
    assert c.difference == pytest.approx(b.mean() - a.mean())
    assert c.lift == pytest.approx(b.mean() / a.mean() - 1)
    assert stats.mean_summary(0, 0, 0).mean is None
    assert stats.mean_difference_test(stats.mean_summary(1, 5.0, 25.0), sb) is None


def test_verdicts_say_not_enough_data_better_worse_or_no_difference():
    small = stats.two_proportion_test(10, 50, 20, 50)
    v = stats.proportion_verdict(10, 50, 20, 50, small)
    assert v.code == "not-enough-data" and "at least 100 exposed users" in v.text and "control 50" in v.text

    rare = stats.two_proportion_test(2, 500, 3, 500)
    v = stats.proportion_verdict(2, 500, 3, 500, rare)
    assert v.code == "not-enough-data" and "at least 5 users who did" in v.text

    up = stats.two_proportion_test(200, 1000, 250, 1000)
    v = stats.proportion_verdict(200, 1000, 250, 1000, up)
    assert v.code == "better" and v.text.startswith("Better than control: +25.0%") and "p = 0.00742" in v.text

    down = stats.two_proportion_test(250, 1000, 200, 1000)
    assert stats.proportion_verdict(250, 1000, 200, 1000, down).code == "worse"

    same = stats.two_proportion_test(200, 1000, 205, 1000)
    v = stats.proportion_verdict(200, 1000, 205, 1000, same)
    assert v.code == "no-difference" and v.text.startswith("No clear difference")


def test_mean_verdict():
    a = stats.mean_summary(500, 5000.0, 500 * (10.0**2 + 25.0))  # mean 10, variance ~25
    b = stats.mean_summary(500, 6000.0, 500 * (12.0**2 + 25.0))  # mean 12
    assert stats.mean_verdict(a, b, stats.mean_difference_test(a, b)).code == "better"
    few = stats.mean_summary(20, 200.0, 20 * 125.0)
    assert stats.mean_verdict(few, b, stats.mean_difference_test(few, b)).code == "not-enough-data"
