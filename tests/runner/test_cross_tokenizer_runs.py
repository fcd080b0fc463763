"""The shipped cross-tokenizer recipes end to end (issue 21), the full
tier: `keras-mta distill` through the CLI's `main` in this process, under
every backend (a smaller size than shipped: the path, not the figures).
The wiring they drive is checked in the everyday tier by
`tests/runner/test_cross_tokenizer.py` and `tests/test_recipe.py`.
"""

import json

import pytest

from keras_mta.cli.main import main
from tests.shared_data import shared_file

# The toy run across tokenizers, smaller: the teacher's fine-tuning, the
# three variants, evaluation, results and the saved student.
TOY_SIZE = [
    "data.max_examples=64",
    "training.epochs=1",
    "training.teacher_epochs=1",
    "training.steps_per_epoch=2",
    "evaluation.max_examples=2",
    "evaluation.max_new_tokens=4",
]


def _distill(recipe, out, sets):
    overrides = [arg for item in sets for arg in ("--set", item)]
    assert main(["distill", recipe, *overrides, "--output-dir", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


def _check_cross_tokenizer_run(results, variants):
    models = [m["model"] for m in results["models"]]
    assert models == ["teacher", *(f"student ({v.upper()})" for v in variants)]
    data = results["data"]["train"]
    # The teacher's own tokens and units were made and paired.
    assert "teacher_word_units" in json.dumps(data)
    mta = results["histories"]["student (MTA)"]
    for term in ("kd", "dsa", "hra"):
        assert mta[term][-1] > 0, term
    for entry in results["models"]:
        assert entry["valid_loss"] > 0


@pytest.mark.large
def test_the_toy_run_across_two_tokenizers(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_MTA_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    results = _distill("tiny-cpu-cross-tokenizer", out, TOY_SIZE)
    _check_cross_tokenizer_run(results, ["sft", "kd", "mta"])
    assert "teacher (SFT)" in results["histories"]
    assert (out / "tokenizer.spm").exists()
    assert (out / "student_tokenizer.spm").exists()
    assert (out / "mta_student" / "config.json").exists()


@pytest.mark.large
def test_the_toy_run_across_two_tokenizers_from_a_teacher_cache(
    tmp_path, monkeypatch
):
    # The teacher cached on its own tokens (CachedCrossTokenizerTeacher):
    # KD (ULD from the cached top-k), DSA and unit-level HRA train from it.
    monkeypatch.setenv("KERAS_MTA_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    sets = [
        *TOY_SIZE,
        "training.teacher_epochs=0",
        "distillation.compare=['kd', 'mta']",
        "distillation.teacher_cache=teacher_cache",
    ]
    results = _distill("tiny-cpu-cross-tokenizer", out, sets)
    _check_cross_tokenizer_run(results, ["kd", "mta"])
    assert any((out / "teacher_cache").iterdir())


@pytest.mark.large
@pytest.mark.once(backend="jax")
def test_student_generation_across_two_tokenizers(tmp_path, monkeypatch):
    # Generated responses are tokenized again by both tokenizers (the
    # run's two-tokenizer preprocessor), so generation runs across them.
    monkeypatch.setenv("KERAS_MTA_CACHE_DIR", str(tmp_path / "cache"))
    sets = [
        *TOY_SIZE,
        "training.teacher_epochs=0",
        "training.student_generation.mode=on_policy",
        "training.steps_per_epoch=3",
        "distillation.compare=['kd']",
    ]
    results = _distill("tiny-cpu-cross-tokenizer", tmp_path / "run", sets)
    history = results["histories"]["student (KD)"]
    assert history["generated_fraction"][-1] > 0
    assert history["kd"][-1] > 0


@pytest.mark.large
def test_smollm2_into_a_student_with_its_own_tokenizer(tmp_path):
    from keras_mta.models import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(f"SmolLM2 GGUF file absent: {e}")
    train = shared_file("t0_mix", "train.jsonl")
    valid = shared_file("t0_mix", "valid.jsonl")
    # The user's cache: the GGUF file is converted once, not per test.
    sets = [
        f"data.train={train}",
        f"data.valid={valid}",
        "data.max_examples=32",
        "data.student_tokenizer='sentencepiece:512'",
        "training.steps_per_epoch=2",
    ]
    results = _distill(
        "smollm2-135m-instruct-to-llama-tiny-cross-tokenizer",
        tmp_path / "run",
        sets,
    )
    _check_cross_tokenizer_run(results, ["kd", "mta"])
