"""How many training seeds a paired comparison needs, and what it can see.

For paired differences with seed-to-seed standard deviation `sd` (of the
difference, not of each variant), a two-sided test at level `alpha` over
`n` seeds detects a true difference `delta` with probability `power` when

    |delta| >= (t(1 - alpha / 2, n - 1) + t(power, n - 1)) * sd / sqrt(n),

the usual t-based approximation (the quantiles of
`keras_mta.analysis.paired_differences.student_t_quantile`). The right-hand
side is the minimal detectable effect of `n` seeds: the size a study that
finds nothing can rule out. The seeds needed for an effect are the
smallest `n` for which it is below the effect. Standard library only.
"""

import math

from keras_mta.analysis.paired_differences import student_t_quantile

# The conventional design: a two-sided test at 5 %, 80 % power.
ALPHA = 0.05
POWER = 0.8


def _check(sd, alpha, power):
    if not sd >= 0.0:  # also refuses NaN
        raise ValueError(
            f"sd must be a standard deviation >= 0 (of the paired "
            f"differences over seeds), got {sd}"
        )
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.5 <= power < 1.0:
        raise ValueError(f"power must be in [0.5, 1), got {power}")


def minimal_detectable_effect(sd, n, alpha=ALPHA, power=POWER):
    """The smallest true paired difference that `n` seeds detect with
    probability `power` at two-sided level `alpha`.

    Args:
        sd: the standard deviation of the per-seed paired differences.
        n: number of seeds (pairs), at least 2.
        alpha: the test's two-sided level.
        power: the probability of detecting the effect.

    Returns:
        `(t(1 - alpha / 2, n - 1) + t(power, n - 1)) * sd / sqrt(n)`.

    Examples:

    >>> round(minimal_detectable_effect(1.0, 3), 3)
    3.097
    """
    _check(sd, alpha, power)
    if int(n) != n or n < 2:
        raise ValueError(
            f"n must be a whole number of seeds >= 2 (one seed has no "
            f"spread), got {n}"
        )
    df = int(n) - 1
    quantiles = student_t_quantile(1.0 - alpha / 2.0, df)
    quantiles += student_t_quantile(power, df)
    return quantiles * sd / math.sqrt(n)


def seeds_needed(sd, effect, alpha=ALPHA, power=POWER, max_seeds=1000):
    """The fewest seeds (>= 2) whose minimal detectable effect is at most
    `|effect|`, or `None` when more than `max_seeds` would be needed (or
    the effect is 0).

    Args:
        sd: the standard deviation of the per-seed paired differences.
        effect: the difference to detect (its sign does not matter).
        alpha: the test's two-sided level.
        power: the probability of detecting the effect.
        max_seeds: where the search stops.

    Examples:

    >>> seeds_needed(1.0, 1.0)
    10
    """
    _check(sd, alpha, power)
    effect = abs(float(effect))
    if effect == 0.0:
        return None
    n = 2
    while n <= max_seeds:
        if minimal_detectable_effect(sd, n, alpha, power) <= effect:
            return n
        n += 1
    return None
