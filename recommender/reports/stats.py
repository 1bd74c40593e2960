"""Statistics of A/B experiments: intervals, tests and plain-words verdicts. Pure Python, never imports Django.

Users are the unit: they are what is randomised (hashed into variants), so rates are shares of
exposed users who did something, and revenue is per exposed user. Impressions of one user are
not independent of each other, so a test over impressions would overstate its certainty.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


def z_value(confidence: float = 0.95) -> float:
    """The two-sided standard normal quantile of ``confidence`` (1.959964 for 0.95)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (got {confidence}); e.g. 0.95.")
    return _NORMAL.inv_cdf(0.5 + confidence / 2)


def two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``successes / n``; None when ``n`` is 0."""
    if successes < 0 or n < 0 or successes > n:
        raise ValueError(f"Need 0 <= successes <= n (got {successes} of {n}).")
    if n == 0:
        return None
    z = z_value(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Exact ends at 0 and n (the formula gives them up to rounding).
    return (0.0 if successes == 0 else max(0.0, centre - half)), (1.0 if successes == n else min(1.0, centre + half))


@dataclass(frozen=True)
class Comparison:
    """A treatment arm against the control: the difference, the relative lift and a two-sided test."""

    control: float  # the control's rate or mean
    treatment: float
    difference: float  # treatment - control
    difference_ci: tuple[float, float]
    lift: float | None  # treatment / control - 1; None when the control is 0
    lift_ci: tuple[float, float] | None
    z: float | None
    p_value: float | None  # None when the test is undefined (no variation at all)


def two_proportion_test(
    control_successes: int, control_n: int, successes: int, n: int, confidence: float = 0.95
) -> Comparison | None:
    """Two-proportion z-test (pooled standard error) of ``successes / n`` against the control's.

    The difference's interval uses the unpooled standard error; the relative lift's is the
    log risk-ratio (Katz) interval. None when either arm has no users.
    """
    for k, m in ((control_successes, control_n), (successes, n)):
        if k < 0 or m < 0 or k > m:
            raise ValueError(f"Need 0 <= successes <= n (got {k} of {m}).")
    if control_n == 0 or n == 0:
        return None
    z_crit = z_value(confidence)
    p_c, p_t = control_successes / control_n, successes / n
    diff = p_t - p_c
    pooled = (control_successes + successes) / (control_n + n)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / control_n + 1 / n))
    z = diff / se_pooled if se_pooled > 0 else None
    se = math.sqrt(p_c * (1 - p_c) / control_n + p_t * (1 - p_t) / n)
    lift = lift_ci = None
    if control_successes > 0:
        lift = p_t / p_c - 1
        if successes > 0:
            se_log = math.sqrt(1 / successes - 1 / n + 1 / control_successes - 1 / control_n)
            log_rr = math.log(p_t / p_c)
            lift_ci = (math.exp(log_rr - z_crit * se_log) - 1, math.exp(log_rr + z_crit * se_log) - 1)
    return Comparison(
        control=p_c, treatment=p_t, difference=diff, difference_ci=(diff - z_crit * se, diff + z_crit * se),
        lift=lift, lift_ci=lift_ci, z=z, p_value=None if z is None else two_sided_p(z),
    )


@dataclass(frozen=True)
class MeanSummary:
    """Mean of a per-user value (revenue) from its count, sum and sum of squares."""

    n: int
    mean: float | None
    variance: float | None  # sample variance (n - 1)
    ci: tuple[float, float] | None


def mean_summary(n: int, total: float, total_sq: float, confidence: float = 0.95) -> MeanSummary:
    """Mean, sample variance and normal-approximation interval of a per-user value."""
    if n <= 0:
        return MeanSummary(0, None, None, None)
    mean = total / n
    if n == 1:
        return MeanSummary(1, mean, None, None)
    variance = max(0.0, (total_sq - n * mean * mean) / (n - 1))
    half = z_value(confidence) * math.sqrt(variance / n)
    return MeanSummary(n, mean, variance, (mean - half, mean + half))


def mean_difference_test(control: MeanSummary, treatment: MeanSummary, confidence: float = 0.95) -> Comparison | None:
    """Welch's test of two means (normal approximation, fine for the hundreds of users an A/B test needs)."""
    if control.variance is None or treatment.variance is None or control.mean is None or treatment.mean is None:
        return None
    diff = treatment.mean - control.mean
    se = math.sqrt(control.variance / control.n + treatment.variance / treatment.n)
    z_crit = z_value(confidence)
    z = diff / se if se > 0 else None
    lift = lift_ci = None
    if control.mean:
        lift = diff / control.mean
        # The difference's interval scaled by the control mean (ignores the control mean's own noise).
        lift_ci = ((diff - z_crit * se) / control.mean, (diff + z_crit * se) / control.mean)
    return Comparison(
        control=control.mean, treatment=treatment.mean, difference=diff, difference_ci=(diff - z_crit * se, diff + z_crit * se),
        lift=lift, lift_ci=lift_ci, z=z, p_value=None if z is None else two_sided_p(z),
    )


@dataclass(frozen=True)
class Verdict:
    code: str  # "not-enough-data", "better", "worse", "no-difference", "control"
    text: str


MIN_USERS = 100
MIN_EVENTS = 5


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def proportion_verdict(
    control_successes: int, control_n: int, successes: int, n: int, comparison: Comparison | None,
    alpha: float = 0.05, min_users: int = MIN_USERS, min_events: int = MIN_EVENTS,
) -> Verdict:
    """Plain words for a variant against the control on one rate, or 'not enough data yet' and why."""
    if min(control_n, n) < min_users:
        return Verdict(
            "not-enough-data",
            f"Not enough data yet: each variant needs at least {min_users} exposed users "
            f"(control {control_n:,}, this one {n:,}).",
        )
    least = min(control_successes, successes, control_n - control_successes, n - successes)
    if least < min_events or comparison is None or comparison.p_value is None:
        return Verdict(
            "not-enough-data",
            f"Not enough data yet: each variant needs at least {min_events} users who did and {min_events} who did not "
            f"(control {control_successes:,} of {control_n:,}, this one {successes:,} of {n:,}).",
        )
    return _significance(comparison, alpha)


def mean_verdict(
    control: MeanSummary, treatment: MeanSummary, comparison: Comparison | None,
    alpha: float = 0.05, min_users: int = MIN_USERS,
) -> Verdict:
    """Plain words for a variant against the control on a per-user mean (revenue)."""
    if min(control.n, treatment.n) < min_users:
        return Verdict(
            "not-enough-data",
            f"Not enough data yet: each variant needs at least {min_users} exposed users "
            f"(control {control.n:,}, this one {treatment.n:,}).",
        )
    if comparison is None or comparison.p_value is None:
        return Verdict("not-enough-data", "Not enough data yet: no variation in the values to test.")
    return _significance(comparison, alpha)


def _significance(c: Comparison, alpha: float) -> Verdict:
    p = c.p_value
    assert p is not None
    lift = "" if c.lift is None else f" {_pct(c.lift)}"
    ci = "" if c.lift_ci is None else f" (95% CI {_pct(c.lift_ci[0])} to {_pct(c.lift_ci[1])})"
    if p < alpha:
        word = "Better" if c.difference > 0 else "Worse"
        return Verdict(word.lower(), f"{word} than control:{lift}{ci}, p = {p:.3g}.")
    return Verdict("no-difference", f"No clear difference from control yet:{lift}{ci}, p = {p:.3g}.")
