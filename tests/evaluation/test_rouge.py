import pytest

from keras_mta.evaluation import mean_rouge_l
from keras_mta.evaluation import rouge_l

# Backend-independent (rouge-score only):
# scripts/test.sh runs it under one backend.
pytestmark = pytest.mark.once


def test_known_values():
    # LCS "the cat sat" = 3 tokens; precision 3/3, recall 3/6: F1 = 2/3.
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(
        200 / 3
    )
    assert rouge_l("A b c.", "a b c") == pytest.approx(100.0)
    assert rouge_l("dogs", "cats") == 0.0
    assert rouge_l("", "cats") == 0.0


def test_stemmer_is_used():
    # "running" and "runs" both stem to "run".
    assert rouge_l("he runs", "he running") == pytest.approx(100.0)


def test_maximum_over_references():
    refs = ["completely different", "the cat sat on the mat"]
    assert rouge_l("the cat sat", refs) == pytest.approx(200 / 3)


def test_mean_and_errors():
    assert mean_rouge_l(["a b", "x"], [["a b"], ["y"]]) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="2 predictions for 1"):
        mean_rouge_l(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least one reference"):
        rouge_l("a", [])
