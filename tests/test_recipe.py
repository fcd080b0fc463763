import pytest

from keras_mta.recipe import RECIPES_DIR
from keras_mta.recipe import Recipe
from keras_mta.recipe import RecipeError
from keras_mta.recipe import describe_fields
from keras_mta.recipe import load_recipe
from keras_mta.recipe import recipe_from_dict

# Backend-independent (TOML parsing only):
# scripts/test.sh runs it under one backend.
pytestmark = pytest.mark.once

SHIPPED = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def test_recipes_are_shipped():
    assert "gpt2-1.5b-to-gpt2-120m" in SHIPPED
    assert "opt-6.7b-to-opt-1.3b" in SHIPPED
    assert "qwen1.5-1.8b-to-qwen1.5-0.5b" in SHIPPED
    assert "smollm2-135m-instruct-to-llama-small" in SHIPPED


def test_gpt2_recipe_has_the_reference_settings():
    r = load_recipe("gpt2-1.5b-to-gpt2-120m")
    assert (r.data.sequence_length, r.data.max_prompt_length) == (256, 128)
    assert (r.training.batch_size, r.training.learning_rate) == (16, 1e-4)
    assert (r.training.epochs, r.training.schedule) == (5, "cosine")
    assert (r.training.weight_decay, r.training.clip_norm) == (0.01, 1.0)
    assert r.plan.teacher_layers == [24, 36, 48]
    assert r.plan.student_layers == [6, 9, 12]
    assert r.plan.word_pairs == 1
    assert r.distillation.mta_weight == 2.0
    assert r.distillation.divergence == "skew_reverse_kl"
    assert r.distillation.skew == 0.1
    assert r.distillation.kd_ratio == 1.0


def test_overrides_reach_the_recipe():
    r = load_recipe(
        "gpt2-1.5b-to-gpt2-120m",
        overrides=[
            "training.learning_rate=5e-5",
            "training.epochs=1",
            "plan.word_pairs=2",
            "distillation.divergence=forward_kl",
            "plan.teacher_layers=[12, 36, 48]",
            "name=my-run",
        ],
    )
    assert r.training.learning_rate == 5e-5
    assert r.training.epochs == 1
    assert r.plan.word_pairs == 2
    assert r.distillation.divergence == "forward_kl"
    assert r.plan.teacher_layers == [12, 36, 48]
    assert r.name == "my-run"


@pytest.mark.parametrize(
    "override,message",
    [
        ("training.learnin_rate=1", "Did you mean 'training.learning_rate'"),
        ("training.epochs=two", "training.epochs must be of type int"),
        ("training.epochs=0", "training.epochs must be > 0"),
        ("distillation.divergence=kl", "distillation.divergence must be one"),
        ("plan.student_layers=[6, 9]", "one student index per teacher index"),
        ("plan.teacher_layers=[24, 36, 49]", "do not fit the teacher's 48"),
        ("data.max_prompt_length=300", "max_prompt_length must be smaller"),
        ("training.epochs", "must look like key=value"),
        ("distillation.compare=['kd', 'mtaa']", "distillation.compare must"),
        ("distillation.compare=[]", "distillation.compare must"),
        ("distillation.ablation=dsa", "distillation.ablation must be one"),
    ],
)
def test_bad_recipes_name_the_problem(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe("gpt2-1.5b-to-gpt2-120m", overrides=[override])


def test_compare_reads_older_variant_names_as_todays():
    r = load_recipe(
        "gpt2-1.5b-to-gpt2-120m",
        overrides=[
            "distillation.compare=['sft', 'kd_only', 'dsa_only', 'hra_only',"
            " 'word_units_only', 'phrase_units_only', 'full_mta']"
        ],
    )
    assert r.distillation.compare == [
        "sft",
        "kd",
        "kd_dsa",
        "kd_hra",
        "mta_word_units",
        "mta_phrase_units",
        "mta",
    ]


def test_unknown_recipe_lists_the_shipped_ones(tmp_path):
    with pytest.raises(RecipeError, match="gpt2-1.5b-to-gpt2-120m"):
        load_recipe(tmp_path / "nothing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad)


def test_defaults_and_help_cover_every_field():
    r = recipe_from_dict({})
    assert isinstance(r, Recipe)
    lines = "\n".join(describe_fields())
    for field in (
        "training.learning_rate",
        "plan.word_pairs",
        "evaluation.seeds",
        "data.max_word_units",
    ):
        assert field in lines


def test_smollm2_recipe_distills_a_gguf_teacher_into_a_subset():
    r = load_recipe("smollm2-135m-instruct-to-llama-small")
    assert r.teacher.preset == "gguf:smollm2-135m-instruct"
    assert (r.teacher.num_layers, r.student.num_layers) == (30, 10)
    assert r.student.preset == ""
    assert r.student.student_init == "teacher_subset"
    layers = r.student.student_init_layers
    assert len(layers) == 10 and layers == sorted(set(layers))
    # Same widths and vocabulary, so the teacher's blocks can be copied.
    for key, value in r.teacher.architecture.items():
        if key != "num_layers":
            assert r.student.architecture[key] == value
    # Each aligned student state j + 1 is the output of the copy of teacher
    # block layers[j], i.e. teacher state layers[j] + 1; finals pair up.
    for t, s in zip(r.plan.teacher_layers, r.plan.student_layers):
        if s == r.student.num_layers:
            assert t == r.teacher.num_layers
        else:
            assert t == layers[s - 1] + 1
    assert r.data.schema == "dolly"
    assert r.data.train.endswith("t0_mix/train.jsonl")
    assert r.evaluation.seeds == [10, 20, 30, 40, 50]


@pytest.mark.parametrize(
    "override,message",
    [
        ("student.student_init=copy", "student.student_init must be one of"),
        ("student.student_init_layers=[0, 1]", "names 2 teacher blocks"),
        (
            "student.student_init_layers=[0, 3, 6, 10, 13, 16, 19, 23, 26, 30]",
            r"do not fit the teacher's 30 blocks.*\[30\]",
        ),
        ("teacher.student_init=teacher_subset", "apply to the student only"),
    ],
)
def test_bad_student_init_names_the_problem(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(
            "smollm2-135m-instruct-to-llama-small", overrides=[override]
        )


def test_student_init_layers_need_teacher_subset():
    with pytest.raises(RecipeError, match="only used with"):
        recipe_from_dict({"student": {"student_init_layers": [0]}})
    r = recipe_from_dict({})
    assert r.student.student_init == "random"
    assert r.student.student_init_layers == []
