import types

import pytest

from keras_mta import CachedTeacher
from keras_mta.generation import AdaptiveGenerationCallback
from keras_mta.generation import GenerationMetrics
from keras_mta.generation import GenerationSchedule
from keras_mta.generation import StudentGeneratedDataset
from keras_mta.generation import require_live_teacher
from tests.generation.fake_responder import FakeResponder
from tests.generation.fake_responder import examples

pytestmark = pytest.mark.once


def cached_teacher():
    return CachedTeacher(
        name="teacher",
        num_layers=2,
        vocabulary_size=32,
        layers=[2],
        hidden_dims=[8],
        top_k=4,
    )


def test_a_cached_teacher_is_refused_with_the_fix():
    with pytest.raises(ValueError) as error:
        require_live_teacher(cached_teacher())
    message = str(error.value)
    assert "needs a live teacher" in message
    assert "distillation.teacher_cache" in message
    assert 'training.student_generation.mode = "off"' in message


def test_a_model_without_teacher_is_refused():
    with pytest.raises(ValueError, match="has none"):
        require_live_teacher(types.SimpleNamespace(teacher_source=None))


def test_a_live_teacher_passes():
    require_live_teacher(types.SimpleNamespace(teacher_source=object()))


@pytest.mark.parametrize("callback", ["metrics", "adaptive"])
def test_fit_with_a_cached_teacher_stops_before_the_first_step(callback):
    arrays, prompts = examples(8)
    schedule = GenerationSchedule(total_steps=4)
    dataset = StudentGeneratedDataset(
        arrays, prompts, 4, FakeResponder(), schedule
    )
    if callback == "metrics":
        callback = GenerationMetrics(dataset)
    else:
        callback = AdaptiveGenerationCallback(dataset, loss_fn=lambda m: 1.0)
    callback.set_model(types.SimpleNamespace(teacher_source=cached_teacher()))
    with pytest.raises(ValueError, match="needs a live teacher"):
        callback.on_train_begin()
    assert dataset.responder.calls == []
