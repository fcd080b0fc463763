"""`keras-mta plan RECIPE` and `keras-mta distill RECIPE --dry-run`: the
plan of every shipped recipe in seconds, in-process, with nothing loaded."""

import time

import keras_hub
import pytest

from keras_mta.cli.main import main
from keras_mta.recipe import RECIPES_DIR

RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
# Seconds a plan may take in-process (about 1 s each on a quiet 2-core
# machine; the imports are paid before).
PLAN_SECONDS = 30

# The paper recipe with the reference's OPT settings as overrides.
OPT_REFERENCE = [
    "--set",
    "student.lora_rank=8",
    "--set",
    "student.lora_alpha=16",
    "--set",
    "training.alignment_learning_rate=5e-4",
    "--set",
    "training.batch_size=8",
    "--set",
    "training.gradient_accumulation_steps=2",
]

pytestmark = pytest.mark.once


def _fail(*args, **kwargs):
    raise AssertionError("the plan loaded, built or read something")


@pytest.fixture
def nothing_loads(monkeypatch):
    """Every way a run gets weights or data fails the test."""
    from keras_mta.models import loading
    from keras_mta.preprocessing import chunking
    from keras_mta.runner import data
    from keras_mta.runner import models

    for cls in (keras_hub.models.CausalLM, keras_hub.models.Backbone):
        monkeypatch.setattr(cls, "from_preset", classmethod(_fail))
    for module, name in (
        (loading, "load_causal_lm"),
        (loading, "build_causal_lm"),
        (loading, "from_gguf"),
        (models, "load_models"),
        (data, "load_data"),
        (data, "load_examples"),
        (chunking.PhraseChunker, "chunk"),
    ):
        monkeypatch.setattr(module, name, _fail)


def _plan(capsys, *argv):
    start = time.perf_counter()
    status = main(list(argv))
    seconds = time.perf_counter() - start
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out, seconds


@pytest.mark.parametrize("name", RECIPES)
def test_every_shipped_recipe_plans_in_seconds(name, capsys, nothing_loads):
    out, seconds = _plan(capsys, "plan", name)
    assert seconds < PLAN_SECONDS, f"{name}: {seconds:.1f} s"
    for section in ("Teacher", "Student", "Alignment", "Optimizer", "Data"):
        assert f"\n{section}\n" in out
    assert "parameters: " in out and "Memory on one device" in out
    assert "total " in out


def test_paper_counts_and_memory(capsys, nothing_loads):
    out, _ = _plan(capsys, "plan", "gpt2-1.5b-to-gpt2-120m")
    # GPT-2 XL and GPT-2 base: 1,557,611,200 and 124,439,808 weights
    # (their published sizes, 1.5B and 124M).
    assert "parameters: 1,557,611,200 (1.56B)" in out
    assert "parameters: 124,439,808 (124.44M)" in out
    # Weights at the policy's variable dtype (mixed_bfloat16: float32).
    assert "1,557,611,200 x 4 B (float32)" in out
    out, _ = _plan(
        capsys,
        "plan",
        "gpt2-1.5b-to-gpt2-120m",
        "--set",
        "training.precision=bfloat16",
    )
    assert "1,557,611,200 x 2 B (bfloat16)" in out
    # Three pairs of Dense(768 -> 1600) with bias.
    assert f"{3 * (768 * 1600 + 1600):,} weights" in out
    out, _ = _plan(capsys, "plan", "opt-6.7b-to-opt-1.3b")
    assert "parameters: 6,658,465,792 (6.66B)" in out


def test_lora_rate_and_accumulation_show(capsys, nothing_loads):
    out, _ = _plan(capsys, "plan", "opt-6.7b-to-opt-1.3b", *OPT_REFERENCE)
    assert "LoRA: rank 8, alpha 16 (scale 2)" in out
    assert "LoRA adapters, peak learning rate 0.0005" in out
    assert (
        "group alignment projectors: 41,963,520 weights, peak learning rate "
        "0.0005 (training.alignment_learning_rate)"
    ) in out
    assert "batch: 8 x 2 accumulation steps = effective batch 16" in out
    assert "gradient + 2 moments + accumulator" in out
    dry, _ = _plan(
        capsys, "distill", "opt-6.7b-to-opt-1.3b", "--dry-run", *OPT_REFERENCE
    )
    assert dry == out


def test_plan_object(nothing_loads):
    from keras_mta import load_recipe
    from keras_mta.runner import plan_run

    overrides = [a for a in OPT_REFERENCE if a != "--set"]
    plan = plan_run(load_recipe("opt-6.7b-to-opt-1.3b", overrides))
    student = plan.student.count
    assert student.lora == student.trainable < student.total
    assert plan.effective_batch_size == 16
    assert [unit for *_, unit in plan.pairs] == ["word"] + ["phrase"] * 4
    terms = {term.name: term for term in plan.memory}
    assert terms["teacher weights"].bytes == 6_658_465_792 * 4
    assert terms["teacher weights"].exact
    assert not terms["student activations (estimate)"].exact
    assert plan.memory_bytes == sum(t.bytes for t in plan.memory if not t.host)


def test_bad_recipe_is_refused_before_anything_is_built(
    capsys, monkeypatch, nothing_loads
):
    from keras_mta.runner import run_plan

    monkeypatch.setattr(run_plan, "count_parameters", _fail)
    status = main(
        [
            "plan",
            "gpt2-1.5b-to-gpt2-120m",
            "--set",
            "training.batch_size=0",
            "--set",
            "student.lora_alpha=4",
        ]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "keras-mta plan: error: " in err
    assert "training.batch_size must be an integer >= 1, got 0" in err
    assert "student.lora_alpha is 4.0 but student.lora_rank is 0" in err


# --- Student generation (issue 20) ---


def test_the_plan_counts_generation(capsys, nothing_loads):
    from keras_mta import load_recipe
    from keras_mta.runner import plan_run

    out, _ = _plan(capsys, "plan", "tiny-cpu-student-generation")
    assert "sampling key/value cache (estimate)" in out
    assert "replay buffer (host memory)" in out and "not in the total" in out
    plan = plan_run(load_recipe("tiny-cpu-student-generation"))
    terms = {term.name: term for term in plan.memory}
    # 4 batches of 16 examples: 128 tokens x 13 B + 48 units x 8 B.
    assert terms["replay buffer (host memory)"].bytes == (
        4 * 16 * (128 * 13 + 48 * 8)
    )
    on_policy = plan_run(
        load_recipe(
            "tiny-cpu-student-generation",
            ["distillation.compare=['kd', 'kd+on_policy']"],
        )
    )
    names = [term.name for term in on_policy.memory]
    assert "sampling logits (estimate)" in names
    assert "replay buffer (host memory)" not in names
    plain = plan_run(load_recipe("tiny-cpu"))
    assert "sampling logits (estimate)" not in [t.name for t in plain.memory]
