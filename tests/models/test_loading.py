import keras
import numpy as np
import pytest

from keras_mta.models import AlignmentPlan
from keras_mta.models import num_hidden_layers
from keras_mta.models.loading import build_causal_lm
from keras_mta.models.loading import load_causal_lm
from keras_mta.recipe import RECIPES_DIR
from keras_mta.recipe import ModelSpec
from keras_mta.recipe import load_recipe
from tests.tiny_models import tiny_gpt2_causal_lm


# Layer counts and plans do not depend on the backend (building the deep
# models costs seconds a recipe): one backend.
@pytest.mark.once
@pytest.mark.parametrize(
    "name", sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
)
def test_recipe_plan_fits_models_with_real_layer_counts(name):
    recipe = load_recipe(name)
    teacher = load_causal_lm(recipe.teacher, "teacher", tiny=True)
    # Tiny teacher and student share their widths, so a `teacher_subset`
    # student_init copies blocks here too.
    student = load_causal_lm(
        recipe.student, "student", tiny=True, teacher=teacher
    )
    assert num_hidden_layers(teacher) == recipe.teacher.num_layers
    assert num_hidden_layers(student) == recipe.student.num_layers
    plan = AlignmentPlan(
        recipe.plan.teacher_layers,
        recipe.plan.student_layers,
        word_pairs=recipe.plan.word_pairs,
    )
    plan.validate(num_hidden_layers(teacher), num_hidden_layers(student))


def test_local_preset_directory_loads_through_a_recipe_spec(tmp_path):
    keras.utils.set_random_seed(3)
    lm = tiny_gpt2_causal_lm()
    lm.save_to_preset(str(tmp_path / "student"))
    loaded = load_causal_lm(ModelSpec(preset=str(tmp_path / "student")))
    x = {
        "token_ids": np.array([[5, 6, 7, 8]], "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    }
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(lm(x)),
        rtol=1e-6,
    )
    assert loaded.preprocessor is not None


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_causal_lm(ModelSpec(preset=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="names no teacher"):
        load_causal_lm(ModelSpec(), "teacher")
    with pytest.raises(ValueError, match="Unknown keras-hub backbone"):
        build_causal_lm({"class": "NopeBackbone"})
    with pytest.raises(ValueError, match="needs a 'class' entry"):
        build_causal_lm({"num_layers": 2})
