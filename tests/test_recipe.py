import re

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
    assert "tiny-cpu-cross-tokenizer" in SHIPPED
    assert "smollm2-135m-instruct-to-llama-tiny-cross-tokenizer" in SHIPPED


# The reference values of the paper's three runs (issue 19): the public
# MTA reference's distillm/scripts/*/spandistillm/*.sh. Shared by all three:
# kd ratio 1.0, skew reverse KL 0.1, cosine without warm-up, weight decay
# 0.01, clip 1.0, seed 42, projectors at 5e-4, word units at one pair.
PAPER_RECIPES = {
    "gpt2-1.5b-to-gpt2-120m": {
        "teacher.preset": "hf://MiniLLM/teacher-gpt2-1.5B",
        "student.preset": "hf://openai-community/gpt2",
        "training.learning_rate": 1e-4,
        "training.batch_size": 16,
        "training.gradient_accumulation_steps": 1,
        "distillation.mta_weight": 2.0,
        "student.lora_rank": 0,
        "plan.teacher_layers": [24, 36, 48],
        "plan.student_layers": [6, 9, 12],
    },
    "opt-6.7b-to-opt-1.3b": {
        # keras-hub 0.32 cannot convert OPT: the base preset, fine-tuned
        # with train-teacher (recipes/README.md).
        "teacher.preset": "opt_6.7b_en",
        "student.preset": "opt_1.3b_en",
        "training.learning_rate": 5e-4,
        "training.batch_size": 8,
        "training.gradient_accumulation_steps": 2,
        "distillation.mta_weight": 3.0,
        "student.lora_rank": 16,
        "student.lora_alpha": 64.0,
        "plan.teacher_layers": [20, 23, 26, 29, 32],
        "plan.student_layers": [16, 18, 20, 22, 24],
    },
    "qwen1.5-1.8b-to-qwen1.5-0.5b": {
        "teacher.preset": "hf://VoCuc/Qwen1.5_1.8B_SFT",
        "student.preset": "hf://Qwen/Qwen1.5-0.5B",
        "training.learning_rate": 1e-4,
        "training.batch_size": 8,
        "training.gradient_accumulation_steps": 2,
        "distillation.mta_weight": 2.0,
        "student.lora_rank": 0,
        "plan.teacher_layers": [14, 16, 18, 20, 22, 24],
        "plan.student_layers": [14, 16, 18, 20, 22, 24],
    },
}
SHARED_REFERENCE = {
    "data.train": (
        "hf://datasets/databricks/databricks-dolly-15k/"
        "databricks-dolly-15k.jsonl"
    ),
    "data.valid": "",
    "data.holdout_valid": 1000,
    "data.holdout_test": 500,
    "data.sequence_length": 256,
    "data.max_prompt_length": 128,
    "plan.word_pairs": 1,
    "distillation.divergence": "skew_reverse_kl",
    "distillation.skew": 0.1,
    "distillation.kd_ratio": 1.0,
    "training.alignment_learning_rate": 5e-4,
    "training.schedule": "cosine",
    "training.warmup_steps": 0,
    "training.weight_decay": 0.01,
    "training.clip_norm": 1.0,
    "training.epochs": 5,
    "training.seed": 42,
    # DistiLLM's adaptive student generation (issue 20).
    "training.student_generation.mode": "adaptive",
    "training.student_generation.init_threshold": 0.0,
    "training.student_generation.loss_eps": 0.1,
    "training.student_generation.capacity": 1000,
    "training.student_generation.replay_ratio": "decreasing",
    "training.student_generation.temperature": 1.0,
    "training.student_generation.top_k": 0,
    "training.student_generation.top_p": 1.0,
    "training.student_generation.eval_interval": 0,
}


def _value(recipe, path):
    for name in path.split("."):
        recipe = getattr(recipe, name)
    return recipe


@pytest.mark.parametrize("name", sorted(PAPER_RECIPES))
def test_paper_recipes_have_the_reference_settings(name):
    r = load_recipe(name)
    expected = {**SHARED_REFERENCE, **PAPER_RECIPES[name]}
    got = {path: _value(r, path) for path in expected}
    assert got == expected
    assert "test" in r.evaluation.datasets


@pytest.mark.parametrize("name", sorted(PAPER_RECIPES))
def test_every_field_of_a_paper_recipe_says_where_it_comes_from(name):
    """Each field line of a [table] has a comment right above it (the
    reference value, or why ours differs); `architecture` (the real
    shapes) follows its model's preset."""
    lines = (RECIPES_DIR / f"{name}.toml").read_text().splitlines()
    table, bare = None, []
    for number, line in enumerate(lines):
        if line.startswith("["):
            table = line
        elif table and "=" in line and not line.startswith("#"):
            key = line.split("=")[0].strip()
            above = lines[number - 1]
            if key != "architecture" and not above.startswith("#"):
                bare.append(f"{table} {key} (line {number + 1})")
    assert bare == []


def _paths_of(recipe):
    data = recipe.data
    values = [data.train, data.valid, data.span_cache]
    values += [recipe.teacher.preset, recipe.student.preset]
    values += [recipe.training.output_dir, *recipe.evaluation.datasets]
    return [v for v in values if v and "://" not in v]


@pytest.mark.parametrize("name", SHIPPED)
def test_no_shipped_recipe_points_outside_the_project(name):
    import os

    outside = [
        path
        for path in _paths_of(load_recipe(name))
        if os.path.isabs(path) or ".." in path.replace("\\", "/").split("/")
    ]
    assert outside == []


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
        ("training.epochs=two", "training.epochs must be an integer >= 1"),
        ("training.epochs=0", "training.epochs must be an integer >= 1"),
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
    assert r.data.train.startswith("hf://datasets/databricks/")
    assert (r.data.valid, r.data.holdout_valid) == ("", 500)
    assert r.evaluation.datasets == ["valid", "selfinst"]
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


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["teacher.lora_rank=8"], "are for students: the teacher is frozen"),
        (["student.lora_alpha=16"], "student.lora_rank is 0 (no LoRA)"),
        (
            ["student.lora_alpha=-1"],
            "student.lora_alpha must be a finite number >= 0",
        ),
        (
            ["training.alignment_learning_rate=-1e-4"],
            "training.alignment_learning_rate must be a finite number >= 0",
        ),
    ],
)
def test_bad_lora_and_optimizer_fields_name_the_problem(overrides, message):
    _refused(overrides, message)
    # Together, the settings of the paper's OPT run load.
    r = load_recipe(
        "tiny-cpu",
        overrides=[
            "student.lora_rank=16",
            "student.lora_alpha=64",
            "training.alignment_learning_rate=5e-4",
            "training.gradient_accumulation_steps=2",
        ],
    )
    assert (r.student.lora_rank, r.student.lora_alpha) == (16, 64.0)
    assert r.training.alignment_learning_rate == 5e-4
    assert r.training.gradient_accumulation_steps == 2


def test_student_init_layers_need_teacher_subset():
    with pytest.raises(RecipeError, match="only used with"):
        recipe_from_dict({"student": {"student_init_layers": [0]}})
    r = recipe_from_dict({})
    assert r.student.student_init == "random"
    assert r.student.student_init_layers == []


# Validation of every field, by class of field: each case is refused with
# the field, the bad value and what is allowed (issue 18, item 3).


def _refused(overrides, *needles, recipe="tiny-cpu"):
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, overrides=overrides)
    message = str(info.value)
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.mark.parametrize(
    "override,allowed",
    [
        ("distillation.temperature=0", "a finite number > 0"),
        ("distillation.temperature=-2", "a finite number > 0"),
        ("distillation.skew=1.5", "a finite number in (0, 1)"),
        ("distillation.skew=0", "a finite number in (0, 1)"),
        ("distillation.beta=0", "a finite number in (0, 1)"),
        ("distillation.beta=1", "a finite number in (0, 1)"),
        ("distillation.kd_ratio=1.5", "a finite number in [0, 1]"),
        ("distillation.mta_weight=-1", "a finite number >= 0"),
        ("training.clip_norm=-1", "a finite number >= 0"),
        ("training.learning_rate=0", "a finite number > 0"),
        ("training.teacher_learning_rate=-1e-4", "a finite number > 0"),
        ("evaluation.temperature=0", "a finite number > 0"),
        ("evaluation.top_p=1.5", "a finite number in (0, 1]"),
        ("plan.hra_scale=-0.1", "a finite number >= 0"),
    ],
)
def test_numbers_out_of_range_are_refused(override, allowed):
    path, value = override.split("=")
    _refused([override], f"{path} must be {allowed}", f"got {float(value)}")


@pytest.mark.parametrize(
    "field",
    [
        "distillation.mta_weight",
        "distillation.kd_ratio",
        "distillation.temperature",
        "training.weight_decay",
        "training.learning_rate",
        "plan.hra_scale",
    ],
)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_weights_and_ratios_must_be_finite(field, value):
    _refused([f"{field}={value}"], f"{field} must be a finite number")


@pytest.mark.parametrize(
    "override,allowed",
    [
        ("training.warmup_steps=-5", "an integer >= 0"),
        ("training.steps_per_epoch=-3", "an integer >= 0 (0: all)"),
        ("training.teacher_epochs=-1", "an integer >= 0 (0: no fine-tuning)"),
        ("training.epochs=0", "an integer >= 1"),
        ("training.batch_size=0", "an integer >= 1"),
        ("training.batch_size=2.5", "an integer >= 1"),
        ("training.seed=-1", "an integer in [0, 4294967295]"),
        ("evaluation.batch_size=0", "an integer >= 1"),
        ("evaluation.max_new_tokens=0", "an integer >= 1"),
        ("evaluation.max_examples=-1", "an integer >= 0 (0: all)"),
        ("data.max_examples=-1", "an integer >= 0 (0: all)"),
        ("data.sequence_length=1", "an integer >= 2"),
        ("data.max_word_units=0", "an integer >= 1"),
        ("data.max_phrase_units=-4", "an integer >= 1"),
        ("plan.num_pairs=0", "an integer >= 1"),
        ("plan.word_pairs=-1", "an integer >= 0"),
        ("distillation.top_k=0", "an integer >= 1"),
        ("training.epochs=true", "an integer >= 1"),
        ("student.lora_rank=-1", "an integer >= 0 (0: no LoRA)"),
        ("student.lora_rank=2.5", "an integer >= 0 (0: no LoRA)"),
        (
            "training.gradient_accumulation_steps=0",
            "an integer >= 1 (1: no accumulation)",
        ),
    ],
)
def test_integers_out_of_range_are_refused(override, allowed):
    path, _ = override.split("=")
    message = _refused([override], f"{path} must be {allowed}, got ")
    # The fix: where to set it and its default.
    assert f"--set {path}=VALUE (default " in message


@pytest.mark.parametrize(
    "override,needle",
    [
        ("evaluation.seeds=[]", "evaluation.seeds must be a list of at least"),
        ("evaluation.seeds=['a']", "each an integer >= 0, got ['a']"),
        ("evaluation.seeds=[1.5]", "each an integer >= 0, got [1.5]"),
        ("evaluation.seeds=10", "evaluation.seeds must be a list"),
        ("plan.teacher_layers=[2, 'x']", "plan.teacher_layers must be a list"),
        ("plan.student_layers=[-1, 2]", "each an integer >= 0, got [-1, 2]"),
        ("plan.student_layers=[1]", "one student index per teacher index"),
        ("plan.teacher_layers=[4, 2]", "strictly increasing"),
        ("plan.word_pairs=3", "`word_pairs` must lie in [0, 2]"),
        ("plan.teacher_layers=[2, 5]", "do not fit the teacher's 4 blocks"),
        ("evaluation.datasets=['']", "evaluation.datasets must be a list"),
        ("distillation.compare=[]", "distillation.compare must be a non-empty"),
    ],
)
def test_bad_lists_are_refused(override, needle):
    _refused([override], needle)


def test_default_plan_must_fit_the_architectures():
    # No layers given: plan.num_pairs of the default plan must fit the
    # 2-block student (3 hidden states), and word_pairs the pairs.
    overrides = ["plan.teacher_layers=[]", "plan.student_layers=[]"]
    assert load_recipe("tiny-cpu", overrides + ["plan.num_pairs=3"])
    _refused(overrides + ["plan.num_pairs=4"], "ask for at most 3 pairs")
    _refused(
        overrides + ["plan.num_pairs=2", "plan.word_pairs=3"],
        "`word_pairs` must lie in [0, 2]",
    )


@pytest.mark.parametrize(
    "field,value",
    [
        ("distillation.divergence", "kl"),
        ("distillation.ablation", "dsa"),
        ("training.optimizer", "sgd"),
        ("training.schedule", "linear"),
        ("training.precision", "float64"),
        ("training.distribution", "model_parallel"),
        ("data.schema", "sharegpt"),
        ("data.on_error", "ignore"),
        ("distillation.teacher_cache_dtype", "int8"),
        ("student.student_init", "copy"),
    ],
)
def test_unknown_names_are_refused_with_the_choices(field, value):
    from keras_mta.models.variants import ABLATIONS
    from keras_mta.models.variants import DIVERGENCES

    message = _refused([f"{field}={value}"], f"{field} must be one of ")
    assert f"got {value!r}" in message
    # Said once: checks of fields together skip a field that is bad alone.
    assert "The recipe has" not in message
    if field == "distillation.divergence":
        assert all(repr(name) in message for name in DIVERGENCES)
    if field == "distillation.ablation":
        assert all(repr(name) in message for name in ABLATIONS)


@pytest.mark.parametrize(
    "override,needle",
    [
        ("data.tokenizer=bpe", "data.tokenizer must be empty or"),
        ("data.tokenizer='sentencepiece:0'", "data.tokenizer must be empty"),
        ("training.output_dir=''", "training.output_dir must be a non-empty"),
        ("training.output_dir='runs/{nam}'", "training.output_dir must be"),
        ("name=''", "name must be a non-empty string"),
        ("data.train='builtin:nothing'", "data.train must be a JSONL path"),
        ("teacher.architecture={num_layers = 0}", "teacher.architecture"),
        ("plan.entropy_weighting=1", "must be true or false"),
        ("description=3", "description must be a string"),
        ("data=3", "data must be a table"),
    ],
)
def test_bad_strings_and_tables_are_refused(override, needle):
    _refused([override], needle)


def test_missing_files_are_refused_when_a_run_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "train.jsonl"
    good.write_text("")
    missing = "data/dolly/train.jsonl"
    # Loading does not read files: a shipped recipe whose data is not
    # downloaded yet still loads.
    recipe = load_recipe("tiny-cpu", overrides=[f"data.train={missing}"])
    with pytest.raises(RecipeError) as info:
        recipe.validate(check_files=True)
    message = str(info.value)
    assert f"data.train names {missing!r}, which is not a file" in message
    assert "--set data.train=" in message
    # builtin data, hub files and files that exist pass.
    for train in (str(good), "builtin:toy-world", "hf://datasets/a/b/c.jsonl"):
        recipe.data.train = train
        recipe.validate(check_files=True)
    recipe.data.valid = ""
    recipe.evaluation.datasets = ["valid", str(tmp_path / "gone.jsonl")]
    with pytest.raises(RecipeError) as info:
        recipe.validate(check_files=True)
    message = str(info.value)
    assert "The recipe has 2 problems" in message
    assert "The recipe has no data.valid" in message
    assert "evaluation.datasets: No evaluation data at" in message


def test_every_problem_is_reported_at_once():
    message = _refused(
        [
            "distillation.temperature=0",
            "training.warmup_steps=-5",
            "evaluation.seeds=[]",
            "training.learnin_rate=1",
        ],
        "The recipe has 4 problems",
        "distillation.temperature must be",
        "training.warmup_steps must be",
        "evaluation.seeds must be",
        "Did you mean 'training.learning_rate'",
    )
    assert message.startswith(str(RECIPES_DIR / "tiny-cpu.toml"))


def test_a_recipe_built_in_python_is_checked_by_validate_and_the_runner():
    recipe = Recipe()
    recipe.validate()  # the defaults are valid
    recipe.distillation.mta_weight = float("inf")
    with pytest.raises(RecipeError, match="distillation.mta_weight must be"):
        recipe.validate()
    from keras_mta.runner import run_distill
    from keras_mta.runner import run_teacher_cache
    from keras_mta.runner import run_train_teacher

    for run in (run_distill, run_teacher_cache, run_train_teacher):
        with pytest.raises(RecipeError, match="mta_weight must be"):
            run(recipe, output_dir="/nonexistent/never-created")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipe_loads_and_passes_its_own_rules(name):
    recipe = load_recipe(name)
    assert recipe.validate() is recipe


def test_help_states_the_rule_of_every_field():
    lines = [line for line in describe_fields() if line.startswith("  ")]
    assert lines and all(" Allowed: " in line for line in lines)
    text = "\n".join(lines)
    assert "distillation.temperature (float, default 1.0)" in text
    assert "Allowed: a finite number > 0." in text
    assert "distillation.skew (float, default 0.1)" in text


def test_cli_refuses_a_bad_override_before_any_stage(tmp_path, capsys):
    import time

    from keras_mta.cli.main import main

    out = tmp_path / "run"
    start = time.perf_counter()
    status = main(
        [
            "distill",
            "tiny-cpu",
            "--set",
            "distillation.temperature=0",
            "--output-dir",
            str(out),
        ]
    )
    seconds = time.perf_counter() - start
    assert status == 1
    assert seconds < 2.0
    assert "distillation.temperature must be a finite number > 0, got 0.0" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def test_evaluate_refuses_a_bad_protocol_before_loading_the_model(capsys):
    from keras_mta.cli.main import main

    args = ["evaluate", "no/such/preset", "--data", "valid"]
    assert main(args + ["--temperature", "0", "--seeds", "-1"]) == 1
    err = capsys.readouterr().err
    assert "The recipe has 2 problems" in err
    assert "evaluation.temperature must be a finite number > 0, got 0.0" in err
    assert "evaluation.seeds must be a list" in err
    assert "keras-mta evaluate's flag of that name" in err
    # A good protocol goes on to load the model (and names its problem).
    assert main(args) == 1
    assert "preset" in capsys.readouterr().err


def test_student_generation_is_off_by_default_and_read_from_its_table():
    assert recipe_from_dict({}).training.student_generation.mode == "off"
    recipe = recipe_from_dict(
        {"training": {"student_generation": {"mode": "on_policy"}}},
        overrides=["training.student_generation.on_policy_fraction=0.25"],
    )
    generation = recipe.training.student_generation
    assert (generation.mode, generation.on_policy_fraction) == (
        "on_policy",
        0.25,
    )


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("mode=sometimes", "one of 'off', 'adaptive', 'on_policy'"),
        ("init_threshold=1.5", "a finite number in [0, 1]"),
        ("capacity=0", "an integer >= 1"),
        ("replay_ratio=linear", "one of 'decreasing'"),
        ("on_policy_fraction=-0.5", "a finite number in [0, 1]"),
        ("top_p=0", "a finite number in (0, 1]"),
        ("eval_interval=-1", "an integer >= 0"),
        ("n_process=0", "an integer >= 1"),
        ("beams=2", "Unknown recipe field"),
    ],
)
def test_bad_student_generation_fields_are_refused(override, allowed):
    with pytest.raises(RecipeError, match=re.escape(allowed)):
        recipe_from_dict({}, [f"training.student_generation.{override}"])


def test_student_generation_with_a_teacher_cache_is_refused():
    with pytest.raises(RecipeError) as error:
        recipe_from_dict(
            {},
            [
                "training.student_generation.mode=adaptive",
                "distillation.teacher_cache=caches/",
            ],
        )
    message = str(error.value)
    assert "need a live teacher" in message
    assert "--set distillation.teacher_cache=" in message
    # Without generation, the cache is fine.
    recipe_from_dict({}, ["distillation.teacher_cache=caches/"])


# --- Student generation per variant (issue 20) ---


def test_generation_suffixes_with_a_teacher_cache_are_refused():
    with pytest.raises(RecipeError) as error:
        recipe_from_dict(
            {},
            [
                "distillation.compare=['kd', 'mta+on_policy']",
                "distillation.teacher_cache=caches/",
            ],
        )
    message = str(error.value)
    assert "distillation.compare has ['mta+on_policy']" in message
    assert "need a live teacher" in message
    recipe = recipe_from_dict({}, ["distillation.compare=['kd_only+adaptive']"])
    assert recipe.distillation.compare == ["kd+adaptive"]


# --- A student with its own tokenizer (issue 21) ---
CROSS_RECIPES = (
    "tiny-cpu-cross-tokenizer",
    "smollm2-135m-instruct-to-llama-tiny-cross-tokenizer",
)


@pytest.mark.parametrize("name", CROSS_RECIPES)
def test_cross_tokenizer_recipes_give_the_student_its_own_tokenizer(name):
    recipe = load_recipe(name)
    assert recipe.data.student_tokenizer.startswith("sentencepiece:")
    assert recipe.data.student_tokenizer != recipe.data.tokenizer
    assert recipe.distillation.divergence == "uld"
    assert "mta" in recipe.distillation.compare
    assert not recipe.distillation.teacher_cache


@pytest.mark.parametrize(
    "override,needle",
    [
        (
            "distillation.divergence=forward_kl",
            "Fix: set distillation.divergence = 'uld'",
        ),
        (
            "data.student_tokenizer='sentencepiece:256'",
            "the same as data.tokenizer",
        ),
        ("student.architecture={}", "student.architecture, which is empty"),
        ("student.preset=gpt2_base_en", "a preset brings its own tokenizer"),
        ("data.student_tokenizer=bpe", "data.student_tokenizer must be empty"),
    ],
)
def test_a_student_with_its_own_tokenizer_is_checked(override, needle):
    with pytest.raises(RecipeError) as error:
        load_recipe("tiny-cpu-cross-tokenizer", [override])
    assert needle in str(error.value)


def test_a_teacher_cache_across_tokenizers_is_accepted():
    # The teacher is cached on its own tokens (issue 21, item 6).
    recipe = load_recipe(
        "tiny-cpu-cross-tokenizer", ["distillation.teacher_cache=caches/"]
    )
    assert recipe.distillation.teacher_cache == "caches/"


def test_same_vocabulary_divergences_are_fine_without_kd_or_own_tokenizer():
    # Only SFT compared: no KD, any divergence.
    load_recipe(
        "tiny-cpu-cross-tokenizer",
        ["distillation.divergence=forward_kl", "distillation.compare=['sft']"],
    )
    # The teacher's tokens shared: uld is accepted as well.
    recipe = load_recipe("tiny-cpu", ["distillation.divergence=uld"])
    assert recipe.data.student_tokenizer == ""


def test_teacher_subset_is_refused_with_a_student_tokenizer():
    with pytest.raises(RecipeError, match="index another vocabulary"):
        load_recipe(
            "smollm2-135m-instruct-to-llama-small",
            [
                "data.student_tokenizer='sentencepiece:512'",
                "distillation.divergence=uld",
            ],
        )


def test_uld_truncation_is_read_checked_and_passed_to_the_divergence():
    # distillation.uld_truncation: 0 is exact ULD, m >= 1 the truncated
    # form (keras_mta.losses.UniversalLogitDistillation(truncation=m)).
    from keras_mta.runner.run_plan import _loss_lines
    from keras_mta.runner.training import divergence_of

    exact = load_recipe(
        "tiny-cpu-cross-tokenizer", ["distillation.uld_truncation=0"]
    )
    assert divergence_of(exact).truncation is None
    assert "truncated" not in _loss_lines(exact)[0]
    recipe = load_recipe(
        "tiny-cpu-cross-tokenizer", ["distillation.uld_truncation=16"]
    )
    uld = divergence_of(recipe)
    assert (uld.truncation, uld.temperature) == (16, 1.0)
    assert "truncated to the top 16" in _loss_lines(recipe)[0]
    # Ignored by the other divergences, as skew and beta are.
    other = load_recipe("tiny-cpu", ["distillation.uld_truncation=16"])
    assert not hasattr(divergence_of(other), "truncation")
    for bad in ("-1", "2.5", "true", "'64'"):
        with pytest.raises(RecipeError) as error:
            load_recipe(
                "tiny-cpu-cross-tokenizer",
                [f"distillation.uld_truncation={bad}"],
            )
        assert "distillation.uld_truncation" in str(error.value), bad
        assert "an integer >= 0" in str(error.value), bad


# --- end of issue 21's recipe tests ---
