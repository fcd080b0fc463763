"""Paired differences between two variants trained from the same seeds.

When every variant of a training seed starts from the same student weights
and sees the same data order, the per-seed differences between two
variants are paired: their spread is the seed-to-seed spread of the
difference, not of each variant. This module gives the mean of such
differences with its Student-t confidence interval (n - 1 degrees of
freedom) and a verdict in words, with no dependency beyond the Python
standard library (the t quantile is computed here; checked against
published values in the tests).
"""

import dataclasses
import math

# What the table says about an interval.
DISTINGUISHABLE = "distinguishable from zero"
NOT_DISTINGUISHABLE = "not distinguishable from zero"


def _incomplete_beta_fraction(a, b, x):
    """The continued fraction of the regularized incomplete beta function
    (modified Lentz's method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _regularized_incomplete_beta(a, b, x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b)
        - math.lgamma(a)
        - math.lgamma(b)
        + a * math.log(x)
        + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _incomplete_beta_fraction(a, b, x) / a
    return (
        1.0 - math.exp(log_front) * _incomplete_beta_fraction(b, a, 1.0 - x) / b
    )


def student_t_cdf(t, df):
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * _regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(probability, df):
    """The `probability` quantile of Student's t with `df` degrees of
    freedom (bisection on `student_t_cdf`, to about 1e-10).

    Examples:

    >>> round(student_t_quantile(0.975, 2), 4)
    4.3027
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if probability < 0.5:
        return -student_t_quantile(1.0 - probability, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < probability:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if student_t_cdf(middle, df) < probability:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """The mean of paired differences `a - b` with its confidence interval.

    Attributes:
        mean: mean of the per-seed differences.
        low, high: the confidence interval (`None` with fewer than two
            pairs: no spread can be measured).
        n: number of pairs.
        confidence: the interval's confidence level.
        differences: the per-seed differences.
    """

    mean: float
    low: object
    high: object
    n: int
    confidence: float
    differences: tuple

    @property
    def verdict(self):
        """`"distinguishable from zero"` when the interval excludes 0,
        else `"not distinguishable from zero"` (also with one pair)."""
        if self.low is None or self.low <= 0.0 <= self.high:
            if self.low is None:
                return f"{NOT_DISTINGUISHABLE} (one seed: no interval)"
            return NOT_DISTINGUISHABLE
        return DISTINGUISHABLE

    def to_dict(self):
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "confidence": self.confidence,
            "differences": list(self.differences),
            "verdict": self.verdict,
        }


def paired_difference(a, b, confidence=0.95):
    """Mean paired difference `a - b` with a Student-t interval.

    The interval is `mean +- t(1 - (1 - confidence) / 2, n - 1) * s /
    sqrt(n)`, with `s` the sample standard deviation (ddof 1) of the
    differences.

    Args:
        a, b: sequences of per-seed values of two variants, in the same
            seed order (same length, at least one pair).
        confidence: the interval's level, in (0, 1).

    Returns:
        A `PairedDifference`.

    Examples:

    >>> d = paired_difference([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])
    >>> d.mean, round(d.low, 3), round(d.high, 3), d.verdict
    (3.0, 0.516, 5.484, 'distinguishable from zero')
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) != len(b) or not a:
        raise ValueError(
            "paired_difference needs the same number (>= 1) of values of "
            f"both variants, one per training seed; got {len(a)} and "
            f"{len(b)}."
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    differences = tuple(x - y for x, y in zip(a, b))
    n = len(differences)
    mean = sum(differences) / n
    if n < 2:
        return PairedDifference(mean, None, None, n, confidence, differences)
    variance = sum((d - mean) ** 2 for d in differences) / (n - 1)
    half = student_t_quantile(1.0 - (1.0 - confidence) / 2.0, n - 1)
    half *= math.sqrt(variance / n)
    return PairedDifference(
        mean, mean - half, mean + half, n, confidence, differences
    )


# The differences a run reports: (minuend, subtrahend) variants.
COMPARISONS = (("kd", "sft"), ("mta", "kd"))


def _metrics(entry):
    """`{metric: per-seed values}` of a student entry's `per_seed`."""
    runs = entry["per_seed"]
    metrics = {"valid loss": [run["valid_loss"] for run in runs]}
    for dataset in runs[0]["rouge_l"]:
        metrics[f"ROUGE-L {dataset} (sampled)"] = [
            run["rouge_l"][dataset] for run in runs
        ]
    for dataset in runs[0].get("rouge_l_greedy", {}):
        metrics[f"ROUGE-L {dataset} (greedy)"] = [
            run["rouge_l_greedy"][dataset] for run in runs
        ]
    return metrics


def variant_differences(entries, confidence=0.95):
    """KD minus SFT and MTA minus KD over a run's training seeds.

    Args:
        entries: the run's model entries; a student entry has `role` (its
            variant) and `per_seed` (one dict per training seed, in the
            same seed order for every variant, with `seed`, `valid_loss`,
            `rouge_l` and `rouge_l_greedy` as `{dataset: score}`).
        confidence: the intervals' level.

    Returns:
        A list of dicts (`comparison`, `metric`, and the fields of
        `PairedDifference.to_dict`), for each comparison whose two
        variants the run trained.
    """
    by_role = {e["role"]: e for e in entries if e.get("per_seed")}
    rows = []
    for a, b in COMPARISONS:
        if a not in by_role or b not in by_role:
            continue
        seeds_a = [run["seed"] for run in by_role[a]["per_seed"]]
        seeds_b = [run["seed"] for run in by_role[b]["per_seed"]]
        if seeds_a != seeds_b:
            raise ValueError(
                f"{a} and {b} were trained with different seeds ({seeds_a} "
                f"and {seeds_b}): their differences are not paired."
            )
        metrics_a, metrics_b = _metrics(by_role[a]), _metrics(by_role[b])
        for metric, values in metrics_a.items():
            difference = paired_difference(
                values, metrics_b[metric], confidence=confidence
            )
            rows.append(
                {
                    "comparison": f"{a.upper()} - {b.upper()}",
                    "metric": metric,
                    **difference.to_dict(),
                }
            )
    return rows
