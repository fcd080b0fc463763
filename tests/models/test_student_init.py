import keras
import keras_hub
import numpy as np
import pytest

from keras_mta.models import evenly_spaced_layers
from keras_mta.models import hidden_states_model
from keras_mta.models import init_student_from_teacher
from keras_mta.models.loading import load_causal_lm
from keras_mta.recipe import ModelSpec
from tests.models import fixtures as F


def _np(x):
    return keras.ops.convert_to_numpy(x)


def llama(num_layers, hidden_dim=16, tie=True, vocab=F.VOCAB):
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=vocab,
        num_layers=num_layers,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        tie_word_embeddings=tie,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone)


def _inputs():
    x, _, _ = F.make_batch()
    return {"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]}


@pytest.mark.parametrize(
    "teacher,student,expected",
    [
        (30, 10, [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]),
        (12, 6, [0, 2, 4, 7, 9, 11]),
        (4, 2, [0, 3]),
        (4, 4, [0, 1, 2, 3]),
        (5, 1, [4]),
    ],
)
def test_evenly_spaced_layers(teacher, student, expected):
    assert evenly_spaced_layers(teacher, student) == expected


def test_evenly_spaced_layers_rejects_deeper_students():
    with pytest.raises(ValueError, match="between 1 and as many blocks"):
        evenly_spaced_layers(4, 5)


def test_copies_embeddings_norm_and_chosen_blocks():
    teacher, student = llama(4), llama(2)
    F.set_numpy_weights(teacher, 1)
    F.set_numpy_weights(student, 2)
    teacher_before = F.weights_numpy(teacher)
    used = init_student_from_teacher(teacher, student, [1, 3])
    assert used == [1, 3]
    t_bb, s_bb = teacher.backbone, student.backbone
    for j, i in enumerate([1, 3]):
        for t, s in zip(
            t_bb.transformer_layers[i].weights,
            s_bb.transformer_layers[j].weights,
        ):
            np.testing.assert_array_equal(_np(s), _np(t))
    for name in ("token_embedding", "sequence_output_layernorm"):
        for t, s in zip(
            t_bb.get_layer(name).weights, s_bb.get_layer(name).weights
        ):
            np.testing.assert_array_equal(_np(s), _np(t))
    # Every student weight came from the teacher; the teacher is unchanged.
    teacher_values = [w.tobytes() for w in F.weights_numpy(teacher)]
    for w in F.weights_numpy(student):
        assert w.tobytes() in teacher_values
    for before, after in zip(teacher_before, F.weights_numpy(teacher)):
        np.testing.assert_array_equal(before, after)


def test_copied_states_match_the_teacher():
    """With blocks 0 and 1 copied, the student computes the teacher's first
    two hidden states exactly."""
    teacher, student = llama(4), llama(2)
    F.set_numpy_weights(teacher, 1, scale=0.1)
    init_student_from_teacher(teacher, student, [0, 1])
    x = _inputs()
    t = hidden_states_model(teacher, [0, 1, 2])(x)["hidden_states"]
    s = hidden_states_model(student, [0, 1])(x)["hidden_states"]
    for a, b in zip(s, t[:2]):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-6)


def test_all_blocks_copied_gives_the_same_model():
    teacher, student = llama(3, tie=False), llama(3, tie=False)
    F.set_numpy_weights(teacher, 1, scale=0.1)
    assert init_student_from_teacher(teacher, student) == [0, 1, 2]
    x = _inputs()
    np.testing.assert_allclose(
        _np(student(x)), _np(teacher(x)), rtol=1e-5, atol=1e-5
    )


def test_gpt2_blocks_and_position_embeddings_are_copied():
    teacher, student = F.gpt2(3, 16), F.gpt2(2, 16)
    F.set_numpy_weights(teacher, 1)
    init_student_from_teacher(teacher, student)
    pos = "position_embedding"
    np.testing.assert_array_equal(
        _np(student.backbone.get_layer(pos).weights[0]),
        _np(teacher.backbone.get_layer(pos).weights[0]),
    )


@pytest.mark.parametrize(
    "student,layers,message",
    [
        (lambda: llama(2, hidden_dim=8), None, "same widths"),
        (lambda: llama(2, tie=False), None, "tied or untied"),
        (lambda: F.gpt2(2, 16), None, "backbones of one class"),
        (lambda: llama(2), [0], "names 1 teacher blocks"),
        (lambda: llama(2), [0, 4], r"\[4\] out of range"),
    ],
)
def test_errors_name_the_problem(student, layers, message):
    with pytest.raises(ValueError, match=message):
        init_student_from_teacher(llama(4), student(), layers)


def test_load_causal_lm_applies_student_init():
    arch = {
        "class": "Llama3Backbone",
        "vocabulary_size": 64,
        "num_query_heads": 2,
        "num_key_value_heads": 1,
        "hidden_dim": 16,
        "intermediate_dim": 32,
        "tie_word_embeddings": True,
    }
    teacher = load_causal_lm(
        ModelSpec(architecture={**arch, "num_layers": 4}), "teacher"
    )
    spec = ModelSpec(
        architecture={**arch, "num_layers": 2},
        student_init="teacher_subset",
        student_init_layers=[2, 3],
    )
    student = load_causal_lm(spec, "student", teacher=teacher)
    t = teacher.backbone.transformer_layers[2].weights[0]
    s = student.backbone.transformer_layers[0].weights[0]
    np.testing.assert_array_equal(_np(s), _np(t))
    with pytest.raises(ValueError, match="pass the loaded teacher"):
        load_causal_lm(spec, "student")
    # Random initialisation leaves the student alone.
    spec.student_init, spec.student_init_layers = "random", []
    other = load_causal_lm(spec, "student", teacher=teacher)
    s = other.backbone.transformer_layers[0].weights[0]
    assert not np.array_equal(_np(s), _np(t))


def test_distilling_a_copied_student_trains():
    # Regression: under JAX the copied weights once shared the teacher's
    # device buffers, and the first jitted train step (which donates its
    # state) failed with "Attempt to donate the same buffer twice".
    from keras_mta import AlignmentPlan
    from keras_mta import DistillationModel

    teacher, student = llama(4), llama(2)
    F.set_numpy_weights(teacher, 1)
    init_student_from_teacher(teacher, student, [1, 3])
    model = DistillationModel(
        teacher, student, plan=AlignmentPlan([2, 4], [1, 2])
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y, sample_weight = F.make_batch()
    before = F.weights_numpy(teacher)
    for _ in range(2):
        logs = model.train_on_batch(x, y, sample_weight, return_dict=True)
    assert np.isfinite(logs["loss"])
    for t, b in zip(F.weights_numpy(teacher), before):
        np.testing.assert_array_equal(t, b)
    copied = _np(student.backbone.token_embedding.embeddings)
    original = _np(teacher.backbone.token_embedding.embeddings)
    assert not np.array_equal(copied, original)  # the student trained
