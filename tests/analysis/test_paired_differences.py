import math

import numpy as np
import pytest

from keras_mta.analysis.paired_differences import DISTINGUISHABLE
from keras_mta.analysis.paired_differences import NOT_DISTINGUISHABLE
from keras_mta.analysis.paired_differences import paired_difference
from keras_mta.analysis.paired_differences import student_t_cdf
from keras_mta.analysis.paired_differences import student_t_quantile
from keras_mta.analysis.paired_differences import variant_differences

pytestmark = pytest.mark.once

# Two-sided critical values of Student's t, from published tables
# (e.g. NIST/SEMATECH e-Handbook, table 1.4.2.3.1), to 6 decimals.
PUBLISHED = [
    (0.975, 1, 12.706205),
    (0.975, 2, 4.302653),
    (0.975, 3, 3.182446),
    (0.975, 4, 2.776445),
    (0.975, 9, 2.262157),
    (0.975, 30, 2.042272),
    (0.95, 10, 1.812461),
    (0.995, 5, 4.032143),
]


@pytest.mark.parametrize("probability,df,expected", PUBLISHED)
def test_t_quantile_matches_published_values(probability, df, expected):
    assert student_t_quantile(probability, df) == pytest.approx(
        expected, abs=2e-6
    )
    assert student_t_quantile(1 - probability, df) == pytest.approx(
        -expected, abs=2e-6
    )


def test_t_cdf_of_one_degree_is_the_cauchy_cdf():
    for t in (-3.0, -0.5, 0.0, 0.7, 4.0):
        expected = 0.5 + math.atan(t) / math.pi
        assert student_t_cdf(t, 1) == pytest.approx(expected, abs=1e-12)


def test_paired_difference_matches_a_numpy_computation():
    a = np.array([0.61, 0.55, 0.58, 0.64, 0.57])
    b = np.array([0.66, 0.59, 0.60, 0.71, 0.58])
    d = a - b
    half = 2.776445 * d.std(ddof=1) / np.sqrt(len(d))  # t(0.975, 4)
    result = paired_difference(a, b)
    assert result.mean == pytest.approx(d.mean())
    assert result.low == pytest.approx(d.mean() - half, abs=1e-6)
    assert result.high == pytest.approx(d.mean() + half, abs=1e-6)
    assert result.n == 5
    assert result.differences == pytest.approx(tuple(d))
    assert result.verdict == DISTINGUISHABLE  # all five below zero


def test_verdict_in_words():
    assert paired_difference([1, 2, 3], [1, 3, 2]).verdict == (
        NOT_DISTINGUISHABLE
    )
    single = paired_difference([2.0], [1.0])
    assert single.low is None and single.high is None
    assert single.verdict.startswith(NOT_DISTINGUISHABLE)
    assert "one seed" in single.verdict
    assert single.to_dict()["verdict"] == single.verdict


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="same number"):
        paired_difference([1, 2], [1])
    with pytest.raises(ValueError, match="same number"):
        paired_difference([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_difference([1, 2], [1, 2], confidence=1.5)


def _entry(role, seeds, losses, sampled, greedy):
    return {
        "model": f"student ({role.upper()})",
        "role": role,
        "per_seed": [
            {
                "seed": s,
                "valid_loss": v,
                "rouge_l": {"valid": r},
                "rouge_l_greedy": {"valid": g},
            }
            for s, v, r, g in zip(seeds, losses, sampled, greedy)
        ],
    }


def test_variant_differences_pair_kd_with_sft_and_mta_with_kd():
    seeds = [1, 2, 3]
    entries = [
        {"model": "teacher", "role": "teacher"},
        _entry("sft", seeds, [0.5, 0.6, 0.7], [20, 22, 24], [30, 31, 35]),
        _entry("kd", seeds, [0.4, 0.5, 0.6], [21, 22, 26], [30, 32, 35]),
        _entry("mta", seeds, [0.4, 0.5, 0.6], [21, 23, 25], [31, 32, 36]),
    ]
    rows = variant_differences(entries)
    assert [(r["comparison"], r["metric"]) for r in rows] == [
        ("KD - SFT", "valid loss"),
        ("KD - SFT", "ROUGE-L valid (sampled)"),
        ("KD - SFT", "ROUGE-L valid (greedy)"),
        ("MTA - KD", "valid loss"),
        ("MTA - KD", "ROUGE-L valid (sampled)"),
        ("MTA - KD", "ROUGE-L valid (greedy)"),
    ]
    kd_sft_loss = rows[0]
    assert kd_sft_loss["mean"] == pytest.approx(-0.1)
    assert kd_sft_loss["differences"] == pytest.approx([-0.1, -0.1, -0.1])
    sampled = rows[1]
    expected = paired_difference([21, 22, 26], [20, 22, 24])
    assert sampled["low"] == pytest.approx(expected.low)
    assert sampled["verdict"] == expected.verdict
    # Without SFT only MTA - KD is reported.
    assert {r["comparison"] for r in variant_differences(entries[2:])} == {
        "MTA - KD"
    }


def test_variant_differences_refuse_unpaired_seeds():
    entries = [
        _entry("kd", [1, 2], [0.4, 0.5], [1, 2], [1, 2]),
        _entry("sft", [1, 3], [0.4, 0.5], [1, 2], [1, 2]),
    ]
    with pytest.raises(ValueError, match="not paired"):
        variant_differences(entries)
