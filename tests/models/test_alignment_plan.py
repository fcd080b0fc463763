import json

import keras
import numpy as np
import pytest

from keras_mta.models import AlignmentPlan
from keras_mta.models.alignment_plan import PAPER_PLANS

pytestmark = pytest.mark.once


def test_paper_plans():
    gpt2 = AlignmentPlan.gpt2_xl_to_gpt2()
    assert gpt2.teacher_layers == [24, 36, 48]
    assert gpt2.student_layers == [6, 9, 12]
    opt = AlignmentPlan.opt_6_7b_to_opt_1_3b()
    assert opt.teacher_layers == [20, 23, 26, 29, 32]
    assert opt.student_layers == [16, 18, 20, 22, 24]
    qwen = AlignmentPlan.qwen1_5_1_8b_to_qwen1_5_0_5b()
    assert qwen.teacher_layers == [14, 16, 18, 20, 22, 24]
    assert qwen.student_layers == [14, 16, 18, 20, 22, 24]
    for plan in (gpt2, opt, qwen):
        assert plan.word_pairs == 1
        assert plan.hra_scale == 0.1
        assert plan.entropy_weighting is False
    # They fit the real models' depths.
    gpt2.validate(48, 12)
    opt.validate(32, 24)
    qwen.validate(24, 24)


def test_from_name():
    for name in PAPER_PLANS:
        assert AlignmentPlan.from_name(name) == getattr(AlignmentPlan, name)()
    assert AlignmentPlan.from_name("opt-6.7b-to-opt-1.3b").num_pairs == 5
    with pytest.raises(ValueError, match="Unknown alignment plan"):
        AlignmentPlan.from_name("bert_to_tinybert")


def test_default_reproduces_gpt2_mapping():
    assert AlignmentPlan.default(48, 12) == AlignmentPlan.gpt2_xl_to_gpt2()


@pytest.mark.parametrize(
    "teacher,student,pairs",
    [
        (48, 12, 3),
        (32, 24, 5),
        (24, 24, 6),
        (36, 12, 3),
        (4, 2, 3),
        (2, 1, 2),
        (12, 6, 1),
        (80, 3, 4),
    ],
)
def test_default_is_increasing_in_range_and_upper_biased(
    teacher, student, pairs
):
    plan = AlignmentPlan.default(teacher, student, num_pairs=pairs)
    assert plan.num_pairs == pairs
    assert plan.word_pairs == 1
    for layers, num_layers in (
        (plan.teacher_layers, teacher),
        (plan.student_layers, student),
    ):
        assert layers[-1] == num_layers  # the final-norm output
        assert all(b > a for a, b in zip(layers, layers[1:]))
        assert 0 <= layers[0]
        if num_layers - num_layers // 2 + 1 >= pairs:
            assert layers[0] >= num_layers // 2  # upper half
    plan.validate(teacher, student)


def test_default_rejects_too_many_pairs():
    with pytest.raises(ValueError, match="at most 3 pairs"):
        AlignmentPlan.default(12, 2, num_pairs=4)
    with pytest.raises(ValueError, match=">= 1"):
        AlignmentPlan.default(12, 2, num_pairs=0)


def test_lists_of_different_lengths():
    with pytest.raises(ValueError, match="has 3 entries.*has 2"):
        AlignmentPlan([1, 2, 3], [1, 2])


@pytest.mark.parametrize(
    "teacher,student,kwargs,match",
    [
        ([], [], {}, "at least one layer pair"),
        ([2, 1], [1, 2], {}, "strictly increasing"),
        ([1, 1], [1, 2], {}, "strictly increasing"),
        ([-1, 2], [1, 2], {}, "negative index"),
        ([1, 2], [1, 2], {"word_pairs": 3}, r"\[0, 2\]"),
        ([1, 2], [1, 2], {"word_pairs": -1}, r"\[0, 2\]"),
        ([1, 2], [1, 2], {"hra_scale": -0.5}, "hra_scale"),
    ],
)
def test_invalid_plans(teacher, student, kwargs, match):
    with pytest.raises(ValueError, match=match):
        AlignmentPlan(teacher, student, **kwargs)


def test_index_types():
    plan = AlignmentPlan(np.array([1, 2]), (np.int64(1), 2))
    assert plan.teacher_layers == [1, 2]
    assert all(type(i) is int for i in plan.student_layers)
    with pytest.raises(TypeError, match="int layer indices"):
        AlignmentPlan([1.0, 2.0], [1, 2])
    with pytest.raises(TypeError, match="int layer indices"):
        AlignmentPlan([True, 2], [1, 2])
    with pytest.raises(TypeError, match="list of layer indices"):
        AlignmentPlan(3, [1])


def test_validate_out_of_range_names_the_fix():
    plan = AlignmentPlan.gpt2_xl_to_gpt2()
    with pytest.raises(ValueError) as info:
        plan.validate(teacher_num_layers=36, student_num_layers=12)
    message = str(info.value)
    assert "Layer index 48" in message
    assert "teacher" in message
    assert "valid indices 0 .. 36" in message
    assert "output_hidden_states" in message
    assert "AlignmentPlan.default(36, 12)" in message
    with pytest.raises(ValueError, match="out of range for the student"):
        plan.validate(48, 6)
    plan.validate(48, 12)


def test_config_round_trip():
    plan = AlignmentPlan(
        [2, 4, 6],
        [1, 2, 3],
        word_pairs=2,
        hra_scale=0.5,
        entropy_weighting=True,
    )
    config = plan.get_config()
    assert json.loads(json.dumps(config)) == config
    assert AlignmentPlan.from_config(config) == plan
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(plan)
    )
    assert restored == plan
    assert "word_pairs=2" in repr(plan)


def test_replace():
    plan = AlignmentPlan.gpt2_xl_to_gpt2()
    other = plan.replace(word_pairs=0, entropy_weighting=True)
    assert other.word_pairs == 0 and other.entropy_weighting
    assert plan.word_pairs == 1 and not plan.entropy_weighting
