"""Teacher sources: a live teacher and its cache give the same outputs."""

import keras
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import CachedTeacher
from keras_mta import build_teacher_cache
from keras_mta.losses.divergences import get_divergence
from keras_mta.models import LiveTeacher
from keras_mta.models import TeacherSource
from keras_mta.models.live_teacher import as_teacher_source
from tests.models import fixtures as F

PLAN = AlignmentPlan([1, 3], [1, 2], word_pairs=1)
NEEDS = ("logits", "hidden_states", "importance", "entropy_weights")


def _np(value):
    return keras.ops.convert_to_numpy(value)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    teacher, _ = F.teacher_student()
    F.set_numpy_weights(teacher, 0)
    x, _, _ = F.make_batch()
    cache = build_teacher_cache(
        teacher,
        PLAN,
        x,
        str(tmp_path_factory.mktemp("cache")),
        top_k=F.VOCAB,
        dtype="float32",
        batch_size=2,
        chunk_size=2,
        verbose=False,
    )
    x = dict(x)
    x.update(cache.read())
    live = LiveTeacher(teacher)
    live.prepare(PLAN.teacher_layers)
    return live, CachedTeacher.from_cache(cache), x


def test_same_description(sources):
    live, cached, _ = sources
    for source in (live, cached):
        assert isinstance(source, TeacherSource)
        assert source.num_layers == F.TEACHER_LAYERS
        assert source.vocabulary_size == F.VOCAB
        assert source.layer_widths([1, 3]) == [F.TEACHER_DIM] * 2
    assert live.model is not None and cached.model is None
    assert live.input_keys([1, 3], NEEDS) == ()
    assert "teacher_hidden_1" in cached.input_keys([3], NEEDS)
    assert "teacher_hidden_0" not in cached.input_keys([3], NEEDS)


def test_same_outputs_and_kd(sources):
    live, cached, x = sources
    a = live.outputs(x, [1, 3], NEEDS)
    b = cached.outputs(x, [1, 3], NEEDS)
    for h_live, h_cached in zip(a["hidden_states"], b["hidden_states"]):
        np.testing.assert_allclose(_np(h_live), _np(h_cached), atol=1e-5)
    np.testing.assert_allclose(
        _np(a["entropy_weights"]), _np(b["entropy_weights"]), atol=1e-5
    )
    # A live teacher leaves the importance to the losses; a cache stores it.
    assert a["importance"] is None and len(b["importance"]) == 2
    assert b["logits"] is None
    student_logits = np.random.default_rng(0).normal(
        size=(F.BATCH, F.SEQ_LEN, F.VOCAB)
    )
    weights = np.asarray(x["padding_mask"], "float32")
    divergence = get_divergence("forward_kl")
    kd_live = live.kd(divergence, a, x, student_logits, weights)
    kd_cached = cached.kd(divergence, b, x, student_logits, weights)
    np.testing.assert_allclose(_np(kd_live), _np(kd_cached), rtol=1e-4)
    # Only the layers asked for, in their order.
    (one,) = cached.outputs(x, [3], ("hidden_states",))["hidden_states"]
    np.testing.assert_allclose(_np(one), _np(b["hidden_states"][1]))


def test_wrapping_and_errors(sources):
    live, cached, x = sources
    assert as_teacher_source(None) is None
    assert as_teacher_source(cached) is cached
    assert isinstance(as_teacher_source(live.model), LiveTeacher)
    with pytest.raises(ValueError, match="keras-hub CausalLM"):
        LiveTeacher(object())
    with pytest.raises(NotImplementedError, match="same tokenizer"):
        live.check_inputs({"teacher_token_ids": x["token_ids"]})
    with pytest.raises(ValueError, match="needs the plan"):
        cached.default_plan(F.STUDENT_LAYERS)
    assert live.default_plan(F.STUDENT_LAYERS).num_pairs > 0
    config = cached.serialize()
    assert keras.saving.deserialize_keras_object(config).layers == [1, 3]
