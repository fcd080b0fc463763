"""The runner's optimizer of a recipe: gradient accumulation with the
schedule counted in updates, the alignment weights' own learning rate."""

import keras
import pytest

from keras_mta import AlignmentPlan
from keras_mta import load_recipe
from keras_mta.models import OptimizerStepSchedule
from keras_mta.models import learning_rate_multiplier
from keras_mta.runner import make_optimizer
from keras_mta.runner.training import alignment_multiplier_of
from keras_mta.runner.training import build_variant_model
from keras_mta.runner.training import optimizer_steps
from tests.models import fixtures as F

pytestmark = pytest.mark.once


def test_accumulation_and_a_schedule_over_the_updates():
    recipe = load_recipe(
        "gpt2-1.5b-to-gpt2-120m",
        ["training.gradient_accumulation_steps=2", "training.warmup_steps=5"],
    )
    # 101 batches: 50 updates, the last batch is never applied.
    assert optimizer_steps(recipe.training, 101) == 50
    optimizer = make_optimizer(recipe.training, steps=101)
    assert optimizer.gradient_accumulation_steps == 2
    assert optimizer.global_clipnorm == pytest.approx(1.0)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, OptimizerStepSchedule)
    cosine = schedule.schedule
    assert cosine.warmup_steps == 5 and cosine.decay_steps == 45
    # The update ending at batch 2k + 1 (0-based) reads update k's rate.
    for update in (0, 3, 5, 20, 49):
        rate = float(schedule(2 * update + 1))
        assert rate == pytest.approx(float(cosine(update)))
    assert float(schedule(11)) == pytest.approx(1e-4)  # warm-up done
    assert float(schedule(99)) < 1e-6  # decayed at the last update

    with pytest.raises(ValueError, match="no update would ever be applied"):
        make_optimizer(recipe.training, steps=1)

    plain = make_optimizer(load_recipe("gpt2-1.5b-to-gpt2-120m").training, 100)
    assert plain.gradient_accumulation_steps is None
    assert isinstance(
        plain._learning_rate, keras.optimizers.schedules.CosineDecay
    )


def test_the_alignment_weights_take_the_recipe_rate():
    recipe = load_recipe(
        "tiny-cpu",
        [
            "training.learning_rate=1e-4",
            "training.alignment_learning_rate=5e-4",
        ],
    )
    assert alignment_multiplier_of(recipe.training) == pytest.approx(5.0)
    same = load_recipe("tiny-cpu", ["training.alignment_learning_rate=0"])
    assert alignment_multiplier_of(same.training) == 1.0

    teacher, student = F.shared_teacher_student()
    plan = AlignmentPlan([2, 3], [1, 2])
    model = build_variant_model(recipe, "mta", teacher, student, plan, 10)
    assert model.alignment_learning_rate_multiplier == pytest.approx(5.0)
    inner = model.optimizer.inner_optimizer
    for variable in model.alignment_variables:
        assert learning_rate_multiplier(inner, variable) == pytest.approx(5.0)
    for variable in model.student.trainable_variables:
        assert learning_rate_multiplier(inner, variable) == 1.0
