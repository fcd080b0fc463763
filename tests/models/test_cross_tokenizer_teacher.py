"""`CrossTokenizerTeacher`: a teacher with its own tokenizer and vocabulary
trains a student with KD, DSA and unit-level HRA; what cannot work across
tokenizers is refused with the fix."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from keras_mta.layers import AlignmentLoss
from keras_mta.layers import TrajectoryAlignmentLoss
from keras_mta.models import CrossTokenizerTeacher
from keras_mta.models import terms
from tests.models import fixtures as F

TEACHER_VOCAB = 80
TEACHER_LEN = 10


@keras.saving.register_keras_serializable(package="keras_mta_tests")
class SortedProbabilityL1(keras.losses.Loss):
    """A stand-in cross-vocabulary divergence: L1 between the sorted
    probabilities of both models (the shorter vocabulary's size kept)."""

    cross_vocabulary = True

    def __init__(
        self, name="sorted_l1", reduction="mean_with_sample_weight", **kwargs
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        k = min(y_true.shape[-1], y_pred.shape[-1])
        p_t = ops.sort(ops.softmax(ops.cast(y_true, "float32")), axis=-1)
        p_s = ops.sort(ops.softmax(ops.cast(y_pred, "float32")), axis=-1)
        return ops.sum(ops.abs(p_t[..., -k:] - p_s[..., -k:]), axis=-1)


class LastStateCosine(AlignmentLoss):
    """A custom loss on token states that declares no `teacher_signals`."""

    def call(
        self, student_hidden, teacher_hidden, word_units, phrase_units, mask
    ):
        return ops.mean(teacher_hidden[-1]) * 0.0


def cross_batch(seed=0):
    """`make_batch`'s student inputs, and the teacher's own tokens (10 per
    row, vocabulary 80), units (the same rows, on its tokens) and the
    teacher position of each student position (-1: none)."""
    x, y, sw = F.make_batch(seed)
    rng = np.random.default_rng(seed + 50)
    batch = x["token_ids"].shape[0]
    lengths = [10, 8, 9, 6]
    mask = np.zeros((batch, TEACHER_LEN), "int32")
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    x["teacher_token_ids"] = (
        rng.integers(1, TEACHER_VOCAB, (batch, TEACHER_LEN)) * mask
    ).astype("int32")
    x["teacher_padding_mask"] = mask
    # Map every student token range [s, e) to [s * 10 // 12, ...) on the
    # teacher's shorter sequence; a unit whose range is empty there, or
    # past the teacher's length, is dropped on both sides (paired rows).
    for kind in ("word_units", "phrase_units"):
        own = np.zeros_like(x[kind])
        for b in range(batch):
            for u, (s, e) in enumerate(x[kind][b]):
                ts, te = s * 10 // 12, min(e * 10 // 12, lengths[b])
                if e > s and te > ts:
                    own[b, u] = [ts, te]
                else:
                    x[kind][b, u] = [0, 0]
        x["teacher_" + kind] = own
    positions = np.minimum(np.arange(12) * 10 // 12, 9)[None].repeat(batch, 0)
    positions = np.where(positions < np.array(lengths)[:, None], positions, -1)
    positions[:, 5] = -1  # a student position without a teacher partner
    x["teacher_positions"] = positions.astype("int32")
    return x, y, sw


def cross_model(**kwargs):
    teacher = F.gpt2(F.TEACHER_LAYERS, F.TEACHER_DIM, vocab=TEACHER_VOCAB)
    student = F.gpt2(F.STUDENT_LAYERS, F.STUDENT_DIM)
    kwargs.setdefault("divergence", SortedProbabilityL1())
    return DistillationModel(CrossTokenizerTeacher(teacher), student, **kwargs)


def test_one_training_step_with_kd_dsa_and_hra():
    # Entropy weights too: computed on the teacher's own padding mask.
    model = cross_model(
        plan=AlignmentPlan.default(
            F.TEACHER_LAYERS, F.STUDENT_LAYERS, entropy_weighting=True
        )
    )
    x, y, sw = cross_batch()
    projector = model.alignment.hidden[0].projector.kernel
    before = ops.convert_to_numpy(projector).copy()
    student_before = F.weights_numpy(model.student)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    # The metrics of the step are the terms before the update.
    logs = model.train_on_batch(x, y, sample_weight=sw, return_dict=True)
    for name in ("loss", "kd", "dsa", "hra"):
        assert np.isfinite(logs[name]) and logs[name] > 0, name
    assert not np.allclose(ops.convert_to_numpy(projector), before)
    after = F.weights_numpy(model.student)
    assert any(not np.allclose(a, b) for a, b in zip(after, student_before))


@pytest.mark.once
def test_kd_gathers_the_teacher_at_the_paired_positions():
    source = CrossTokenizerTeacher(F.gpt2(1, 8, vocab=TEACHER_VOCAB))
    rng = np.random.default_rng(0)
    teacher_logits = rng.normal(size=(2, 5, TEACHER_VOCAB)).astype("float32")
    student_logits = rng.normal(size=(2, 4, 7)).astype("float32")
    positions = np.array([[0, 2, -1, 4], [1, -1, 3, 3]], "int32")
    weights = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], "float32")
    seen = {}

    def divergence(y_true, y_pred, sample_weight):
        seen["true"] = ops.convert_to_numpy(y_true)
        seen["weight"] = ops.convert_to_numpy(sample_weight)
        return ops.sum(sample_weight)

    value = source.kd(
        divergence,
        {"logits": teacher_logits},
        {"teacher_positions": positions},
        student_logits,
        weights,
    )
    for b in range(2):
        for s in range(4):
            if positions[b, s] >= 0:
                np.testing.assert_array_equal(
                    seen["true"][b, s], teacher_logits[b, positions[b, s]]
                )
    np.testing.assert_array_equal(seen["weight"], [[1, 1, 0, 0], [1, 0, 1, 1]])
    assert float(ops.convert_to_numpy(value)) == 5.0


@pytest.mark.once
def test_what_cannot_work_across_tokenizers_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="'uld'") as error:
        cross_model(divergence="forward_kl")
    assert "use_kd=False" in str(error.value)
    # A same-vocabulary divergence is fine where the token ids are shared.
    teacher = F.gpt2(F.TEACHER_LAYERS, F.TEACHER_DIM)
    student = F.gpt2(F.STUDENT_LAYERS, F.STUDENT_DIM)
    DistillationModel(
        CrossTokenizerTeacher(teacher, same_vocabulary=True), student
    )
    # Token-level HRA in an explicit objective.
    loss = TrajectoryAlignmentLoss(
        teacher_dims=[F.TEACHER_DIM] * 2,
        student_dims=[F.STUDENT_DIM] * 2,
        hra_level="token",
    )
    with pytest.raises(ValueError, match="hra_level='unit'"):
        cross_model(
            terms=[
                terms.CrossEntropyTerm(),
                terms.TrajectoryAlignmentTerm(loss),
            ]
        )
    # A custom alignment loss that cannot read the teacher's own units.
    with pytest.raises(ValueError, match="teacher_signals"):
        cross_model(alignment_losses=[LastStateCosine(name="last_cos")])
    # A different vocabulary with a teacher that reads the student's tokens
    # names the teacher source to use.
    with pytest.raises(ValueError, match="CrossTokenizerTeacher"):
        DistillationModel(
            F.gpt2(F.TEACHER_LAYERS, F.TEACHER_DIM, vocab=TEACHER_VOCAB),
            F.gpt2(F.STUDENT_LAYERS, F.STUDENT_DIM),
        )


@pytest.mark.once
def test_inputs_name_the_teacher_source_and_the_preprocessor():
    x, y, sw = cross_batch()
    teacher, student = F.shared_teacher_student()
    same = DistillationModel(teacher, student)
    with pytest.raises(NotImplementedError, match="CrossTokenizerTeacher"):
        same.compute_losses(x, y, sample_weight=sw)
    model = cross_model()
    student_only = {k: v for k, v in x.items() if not k.startswith("teacher_")}
    with pytest.raises(ValueError, match="tokenize alike") as error:
        model.compute_losses(student_only, y, sample_weight=sw)
    assert "teacher_token_ids" in str(error.value)


@pytest.mark.once
def test_config_round_trip():
    model = cross_model()
    config = model.get_config()
    assert config["teacher"]["class_name"] == "CrossTokenizerTeacher"
    again = DistillationModel.from_config(config)
    assert isinstance(again.teacher_source, CrossTokenizerTeacher)
    assert again.teacher_source.vocabulary_size == TEACHER_VOCAB
    assert again.alignment.hra_level == "auto"


# The preprocessor's real paired units through the model (about a minute);
# the everyday tier trains the same model path on hand-made units
# (test_one_training_step_with_kd_dsa_and_hra) and checks the pairing
# (tests/preprocessing/test_paired_units.py).
@pytest.mark.large
def test_preprocessor_units_train_a_student_of_another_tokenizer():
    import keras_hub

    from keras_mta import DistillationPreprocessor
    from tests.preprocessing.test_distillation_preprocessor import features
    from tests.tiny_models import tiny_gpt2_causal_lm

    student = tiny_gpt2_causal_lm(
        num_layers=2, hidden_dim=8, sequence_length=40
    )
    teacher_preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=F.tiny_gpt2_tokenizer(), sequence_length=24
    )
    teacher = F.gpt2(
        F.TEACHER_LAYERS, F.TEACHER_DIM, preprocessor=teacher_preprocessor
    )
    preprocessor = DistillationPreprocessor(
        student.preprocessor,
        teacher_preprocessor,
        max_word_units=8,
        max_phrase_units=4,
    )
    assert not preprocessor.shares_tokens
    pairs = [
        ("name a fruit ", "an apple and a ripe pear"),
        ("count to three ", "one two three"),
    ]
    x, y, sw = preprocessor(features(pairs))
    x = {k: ops.convert_to_numpy(v) for k, v in x.items()}
    assert (x["word_units"][..., 1] > x["word_units"][..., 0]).sum() > 0
    # Stand-in pairing of positions (the real one comes from the offsets).
    teacher_len = x["teacher_token_ids"].shape[1]
    positions = np.arange(x["token_ids"].shape[1])[None].repeat(2, 0)
    x["teacher_positions"] = np.where(
        positions < teacher_len, positions, -1
    ).astype("int32")
    model = DistillationModel(
        CrossTokenizerTeacher(teacher),
        student,
        plan=AlignmentPlan([2, 3], [1, 2], word_pairs=1),
        divergence=SortedProbabilityL1(),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    logs = model.train_on_batch(
        x,
        ops.convert_to_numpy(y),
        sample_weight=ops.convert_to_numpy(sw),
        return_dict=True,
    )
    for name in ("loss", "kd", "dsa", "hra"):
        assert np.isfinite(logs[name]) and logs[name] > 0, name
