"""The power of a paired comparison, against values computed by hand
from published t quantiles (t(0.975, 2) = 4.302653, t(0.80, 2) =
1.060660, t(0.975, 8) = 2.306004, t(0.80, 8) = 0.888889, t(0.975, 9) =
2.262157, t(0.80, 9) = 0.883408)."""

import math

import pytest

from keras_mta.analysis.power import minimal_detectable_effect
from keras_mta.analysis.power import seeds_needed

pytestmark = pytest.mark.once


def test_minimal_detectable_effect_by_hand():
    # (4.302653 + 1.060660) * 1 / sqrt(3)
    assert minimal_detectable_effect(1.0, 3) == pytest.approx(
        5.363313 / math.sqrt(3), abs=1e-5
    )
    # Proportional to the spread.
    assert minimal_detectable_effect(0.5, 3) == pytest.approx(
        0.5 * 5.363313 / math.sqrt(3), abs=1e-5
    )
    # (2.262157 + 0.883408) / sqrt(10) = 0.994715
    assert minimal_detectable_effect(1.0, 10) == pytest.approx(
        0.994715, abs=1e-5
    )


def test_seeds_needed_by_hand():
    # 9 seeds: (2.306004 + 0.888889) / 3 = 1.0650 > 1; 10 seeds: 0.9947.
    assert seeds_needed(1.0, 1.0) == 10
    assert seeds_needed(1.0, -1.0) == 10  # the sign does not matter
    assert seeds_needed(2.0, 2.0) == 10  # only the ratio matters
    # A large effect: the minimum, 2 seeds.
    assert seeds_needed(0.01, 5.0) == 2
    assert seeds_needed(0.0, 0.1) == 2
    # Out of reach, or nothing to detect.
    assert seeds_needed(1.0, 0.01, max_seeds=50) is None
    assert seeds_needed(1.0, 0.0) is None


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="n must be a whole number"):
        minimal_detectable_effect(1.0, 1)
    with pytest.raises(ValueError, match="sd must be"):
        seeds_needed(float("nan"), 1.0)
    with pytest.raises(ValueError, match="power must be"):
        minimal_detectable_effect(1.0, 3, power=0.2)
