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


# --- Student generation (issue 20) ---


def _generation_terms(mode, precision="float32"):
    from keras_mta.recipe import StudentGenerationSpec

    spec = TrainingSpec(
        batch_size=2,
        precision=precision,
        student_generation=StudentGenerationSpec(capacity=10),
    )
    terms = estimate_memory(
        TEACHER,
        STUDENT,
        10,
        spec,
        8,
        2,
        32,
        generation=mode,
        word_units=3,
        phrase_units=2,
    )
    return {term.name: term for term in terms}


def test_generation_memory_by_hand():
    terms = _generation_terms("adaptive")
    # Keys and values of 3 blocks for 2 sequences of 8 + 1 tokens, 16
    # wide, float32.
    assert terms["sampling key/value cache (estimate)"].bytes == (
        2 * 3 * 2 * 9 * 16 * 4
    )
    # The prompt pass's float32 logits: 2 x 9 x 500.
    assert terms["sampling logits (estimate)"].bytes == 2 * 9 * 500 * 4
    # 10 batches of 2 examples: 8 tokens x (int32 ids, bool mask, int32
    # targets, float32 weights) and 5 units x 2 int32.
    buffer = terms["replay buffer (host memory)"]
    assert buffer.bytes == 10 * 2 * (8 * (4 + 1 + 4 + 4) + 5 * 2 * 4)
    assert buffer.host and buffer.exact
    assert not any(t.host for n, t in terms.items() if n != buffer.name)
    half = _generation_terms("adaptive", "mixed_bfloat16")
    name = "sampling key/value cache (estimate)"
    assert 2 * half[name].bytes == terms[name].bytes
    # On-policy keeps no buffer; off adds nothing.
    assert "replay buffer (host memory)" not in _generation_terms("on_policy")
    assert len(_generation_terms("off")) == len(terms) - 3


def test_replay_buffer_bytes_are_the_batches_bytes():
    from keras_mta.generation import ReplayBuffer
    from keras_mta.runner.memory_estimate import generation_memory
    from tests.generation import fake_responder

    batch, _ = fake_responder.examples(2)
    buffer = ReplayBuffer(capacity=3)
    for step in range(3):
        buffer.push(batch, step)
    state = buffer.get_state()
    held = sum(v.nbytes for k, v in state.items() if k != "steps")
    spec = TrainingSpec(batch_size=2)
    spec.student_generation.capacity = 3
    terms = generation_memory(
        STUDENT,
        spec,
        fake_responder.LENGTH,
        adaptive=True,
        word_units=fake_responder.WORDS,
        phrase_units=fake_responder.PHRASES,
    )
    assert terms[-1].bytes == held


# --- end of student generation ---
