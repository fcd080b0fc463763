"""The memory estimate's counted terms are counts times dtype sizes."""

import pytest

from keras_mta.recipe import TrainingSpec
from keras_mta.runner.memory_estimate import dtype_bytes
from keras_mta.runner.memory_estimate import estimate_memory
from keras_mta.runner.parameter_counts import ParameterCount

pytestmark = pytest.mark.once

TEACHER = ParameterCount(1000, 1000, 0, 32, 4, 6, 500)
# A LoRA student: 40 of its 600 weights train.
STUDENT = ParameterCount(600, 40, 36, 16, 2, 3, 500)


def _terms(**training):
    spec = TrainingSpec(**{"batch_size": 2, **training})
    terms = estimate_memory(TEACHER, STUDENT, 10, spec, 8, 2, 32)
    return {term.name: term for term in terms}


def test_counted_terms():
    terms = _terms(precision="mixed_bfloat16")
    # Mixed policies keep float32 variables.
    assert terms["teacher weights"].bytes == 1000 * 4
    assert terms["student weights"].bytes == 600 * 4
    # Gradient and AdamW's two moments, for the trainable weights only.
    assert terms["student training state"].bytes == 40 * 3 * 4
    assert terms["alignment projectors"].bytes == 10 * 4 * 4
    assert all(
        term.exact == ("estimate" not in name) for name, term in terms.items()
    )
    # The activations scale with the batch.
    double = _terms(precision="mixed_bfloat16", batch_size=4)
    name = "student activations (estimate)"
    assert double[name].bytes == 2 * terms[name].bytes


def test_precision_and_accumulation():
    terms = _terms(precision="bfloat16", gradient_accumulation_steps=2)
    assert terms["teacher weights"].bytes == 1000 * 2
    # Keras' gradient accumulators: one more copy of each trainable weight.
    assert terms["student training state"].bytes == 40 * 4 * 2
    assert "accumulator" in terms["student training state"].how
    assert [dtype_bytes(d) for d in ("float32", "bfloat16", "float16")] == [
        4,
        2,
        2,
    ]
