"""The runner's student: LoRA from the recipe (`keras_mta.runner.models`)."""

import json

import keras_hub
import pytest

from keras_mta.cli.main import main
from keras_mta.models import lora_layers
from keras_mta.models import lora_summary
from keras_mta.recipe import recipe_from_dict
from keras_mta.runner import models as runner_models
from tests.cli.test_distill_smoke import SMOKE_SIZE
from tests.tiny_models import tiny_gpt2_causal_lm


def _load_tiny_models(monkeypatch, overrides):
    """`load_models` of a recipe whose teacher and student are tiny
    GPT-2s with a tokenizer (no preset is read)."""
    built = {}

    def load_causal_lm(spec, role, tiny=False, teacher=None):
        built[role] = tiny_gpt2_causal_lm(
            num_layers=2 if role == "student" else 3
        )
        return built[role]

    monkeypatch.setattr(runner_models, "load_causal_lm", load_causal_lm)
    recipe = recipe_from_dict(
        {
            "teacher": {"preset": "tiny-teacher"},
            "student": {"preset": "tiny-student"},
            "data": {"sequence_length": 16, "max_prompt_length": 8},
        },
        overrides=overrides,
    )
    teacher, student = runner_models.load_models(recipe, [], "unused")
    assert (teacher, student) == (built["teacher"], built["student"])
    return teacher, student


@pytest.mark.once
def test_student_lora_rank_turns_lora_on_after_loading(monkeypatch, capsys):
    teacher, student = _load_tiny_models(
        monkeypatch, ["student.lora_rank=4", "student.lora_alpha=16"]
    )
    summary = lora_summary(student)
    assert summary["rank"] == 4 and summary["scale"] == 4.0
    assert summary["layers"] == 4  # query and value of 2 blocks
    assert {w.path.rsplit("/", 1)[1] for w in student.trainable_weights} == {
        "lora_kernel_a",
        "lora_kernel_b",
    }
    assert lora_layers(teacher) == []
    out = capsys.readouterr().out
    assert "student LoRA: rank 4, alpha 16 (updates scaled by 4)" in out
    assert f"{summary['trainable_weights']:,} student weights train" in out


@pytest.mark.once
def test_without_lora_rank_every_student_weight_trains(monkeypatch):
    _, student = _load_tiny_models(monkeypatch, [])
    assert lora_summary(student) is None
    assert len(student.trainable_weights) == len(student.weights)
    _, student = _load_tiny_models(monkeypatch, ["student.lora_rank=2"])
    assert lora_summary(student)["alpha"] == 2.0  # lora_alpha 0: the rank


# The full tier: a LoRA run of `keras-mta distill` end to end. Its pieces
# are checked in the everyday tier: the wiring above, and in
# tests/models/test_lora.py what trains inside `fit` and the merged preset
# round trip.
@pytest.mark.large
@pytest.mark.once(backend="torch")
def test_a_lora_run_saves_a_merged_student(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_MTA_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    sets = [*SMOKE_SIZE, "student.lora_rank=2", "student.lora_alpha=8"]
    overrides = [arg for item in sets for arg in ("--set", item)]
    assert main(["distill", *overrides, "--output-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    lora = results["student_lora"]
    assert (lora["rank"], lora["scale"]) == (2, 4.0)
    student = keras_hub.models.CausalLM.from_preset(str(out / "mta_student"))
    assert lora_layers(student) == []
    entry = results["models"][1]
    assert entry["parameters"] == student.count_params()
    assert entry["parameters"] == lora["model_weights"]
