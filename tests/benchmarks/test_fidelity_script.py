"""The fidelity study in reduced form: `benchmarks/fidelity.py
--tiny-run --pilot` on the small models of recipes/tiny-cpu.toml (a few
steps, a few prompts), in its own process under the current backend.
Checks the machinery end to end: the teacher caches, the heal stage, every
variant branched from the healed weights, the tables with the paired
differences and their power, the plot, resuming from the finished runs and
refusing healed weights made with other settings. The cheap tests below
check the keys, the budget and the power rows without a model."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from tests.benchmarks.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "fidelity.py"
TINY = str(REPO / "recipes" / "tiny-cpu.toml")


def _run(output, *flags, check=True):
    env = dict(
        os.environ,
        KERAS_BACKEND=keras.backend.backend(),
        TF_CPP_MIN_LOG_LEVEL="2",
        KERAS_MTA_CACHE_DIR=str(output.parent / "spans"),
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--recipe",
            TINY,
            "--tiny-run",
            "--output",
            str(output),
            *flags,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=str(REPO),
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# Minutes of subprocess: scripts/test.sh runs it under jax only (the
# backend of the reported experiment).
@pytest.mark.large
@pytest.mark.once(backend="jax")
def test_fidelity_reduced(tmp_path):
    output = tmp_path / "fidelity"
    pilot = ("--pilot", "--seeds", "0,1")
    stdout = _run(output, *pilot).stdout
    assert "[fidelity] time estimate: 6 runs to train" in stdout
    results = json.loads((output / "results.json").read_text())
    runs = {(r["variant"], r["seed"]) for r in results["runs"]}
    assert runs == {(v, s) for v in ("sft", "kd", "mta") for s in (0, 1)}
    for run in results["runs"]:
        assert len(run["step_losses"]) == 2
        assert all(v == v for v in run["step_losses"])  # no NaN
        assert set(run["rouge_l"]) == {"T0", "SelfInst"}
        assert set(run["rouge_l_greedy"]) == {"T0", "SelfInst"}
    mta = [r for r in results["runs"] if r["variant"] == "mta"]
    assert all(r["history"]["dsa"][-1] > 0 for r in mta)
    # Healed once, saved, scored as the common start.
    healed = results["healed"]
    assert healed["steps"] == 2 and len(healed["step_losses"]) == 2
    assert (output / "healed" / "weights.npz").exists()
    assert results["cache"]["heal_examples"] == 8
    # Paired differences with their power, in numbers and in words.
    rows = results["paired_differences"]
    assert {r["comparison"] for r in rows} == {"KD - SFT", "MTA - KD"}
    loss = next(
        r
        for r in rows
        if r["comparison"] == "MTA - KD" and r["metric"] == "valid loss"
    )
    assert loss["n"] == 2 and loss["minimal_detectable_effect"] > 0
    assert "80 % power" in loss["words"]
    assert results["pilot_advice"]["seeds_allowed_by_budget"] >= 2
    table = (output / "results.md").read_text()
    assert "healed start (KD, 2 steps)" in table and "teacher" in table
    assert "seeds for 80 % power" in table
    assert (output / "fidelity.png").read_bytes()[:4] == b"\x89PNG"
    assert "| model |" in stdout
    # A second invocation keeps the healed weights and the finished runs,
    # and measures its estimate on them.
    stdout = _run(output, *pilot).stdout
    assert "healed before, weights reused" in stdout
    assert stdout.count("done before, kept") == 6
    assert "measured over 6 finished runs" in stdout
    again = json.loads((output / "results.json").read_text())
    assert again["table"] == results["table"]
    # Healed weights of other settings are refused, not reused.
    proc = _run(output, *pilot, "--heal-steps", "3", check=False)
    assert proc.returncode != 0
    assert "heal_steps: saved 2, asked 3" in proc.stderr


def _fidelity_module():
    return load_script("fidelity")


@pytest.mark.once
def test_pairs_ablation_plan():
    from keras_mta import AlignmentPlan

    fidelity = _fidelity_module()
    plan = AlignmentPlan([11, 20, 30], [4, 7, 10], word_pairs=1, hra_scale=0.2)
    assert fidelity.ablated_plan(plan, None) is plan
    top = fidelity.ablated_plan(plan, [2])
    assert (top.teacher_layers, top.student_layers) == ([30], [10])
    assert top.word_pairs == 0 and top.hra_scale == 0.2
    low_top = fidelity.ablated_plan(plan, [0, 2])
    assert low_top.teacher_layers == [11, 30] and low_top.word_pairs == 1
    assert fidelity.ablated_plan(plan, [1, 2], word_pairs=2).word_pairs == 2
    with pytest.raises(SystemExit, match="positions 0 to 2"):
        fidelity.ablated_plan(plan, [3])
    args = fidelity.parse_args(["--pairs", "2,1"])
    assert args.pairs == [1, 2]


def _args(fidelity, tmp_path, *flags):
    return fidelity.parse_args(
        ["--recipe", TINY, "--output", str(tmp_path), *flags]
    )


@pytest.mark.once
def test_run_keys_change_with_the_settings(tmp_path):
    fidelity = _fidelity_module()
    base = fidelity.study_keys(_args(fidelity, tmp_path))
    assert base == fidelity.study_keys(_args(fidelity, tmp_path))
    healed = fidelity.study_keys(_args(fidelity, tmp_path, "--heal-steps", "9"))
    assert healed.heal != base.heal and healed.run != base.run
    steps = fidelity.study_keys(_args(fidelity, tmp_path, "--steps", "7"))
    assert steps.heal == base.heal and steps.run != base.run
    prompts = fidelity.study_keys(
        _args(fidelity, tmp_path, "--eval-prompts", "5")
    )
    assert prompts.evaluation != base.evaluation and prompts.run != base.run
    # Runs of the old design (`kd-seed0.json`) or of other settings are
    # never read as this study's.
    path = fidelity.run_path(tmp_path, "kd", 0, base)
    assert path.name == f"kd-seed0-{base.run}.json"
    assert path != fidelity.run_path(tmp_path, "kd", 0, steps)


@pytest.mark.once
def test_healed_weights_of_other_settings_are_refused(tmp_path):
    fidelity = _fidelity_module()
    args = _args(fidelity, tmp_path)
    assert fidelity.check_healed(args, tmp_path) is False  # none yet
    folder = tmp_path / "healed"
    folder.mkdir()
    (folder / "weights.npz").write_bytes(b"")
    saved = fidelity.heal_settings(args)
    (folder / "settings.json").write_text(json.dumps(saved))
    assert fidelity.check_healed(args, tmp_path) is True
    other = _args(fidelity, tmp_path, "--heal-steps", "9", "--heal-seed", "5")
    with pytest.raises(SystemExit, match="heal_seed: saved 1000, asked 5"):
        fidelity.check_healed(other, tmp_path)
    with pytest.raises(SystemExit, match="heal_steps: saved 80, asked 9"):
        fidelity.check_healed(other, tmp_path)


def _fake_run(variant, seed, valid_loss, rouge, steps=30):
    return {
        "variant": variant,
        "seed": seed,
        "steps": steps,
        "train_seconds": 5.0 * steps,
        "eval_seconds": 100.0,
        "valid_loss": valid_loss,
        "rouge_l": {"T0": rouge},
        "rouge_l_greedy": {"T0": rouge},
    }


@pytest.mark.once
def test_budget_is_estimated_and_enforced(tmp_path):
    fidelity = _fidelity_module()
    args = _args(fidelity, tmp_path, "--seeds", "0-3", "--budget-minutes", "1")
    keys = fidelity.study_keys(args)
    with pytest.raises(SystemExit, match=r"Reduce --seeds \(now 4\)"):
        fidelity.check_budget(args, tmp_path, keys)
    # A finished run replaces the settings' guess by what it measured,
    # and counts as spent.
    (tmp_path / "runs").mkdir()
    run = _fake_run("kd", 0, 1.0, 10.0)
    fidelity.run_path(tmp_path, "kd", 0, keys).write_text(json.dumps(run))
    plan = fidelity.estimate(args, tmp_path, keys)
    assert plan["per_step"] == 5.0 and plan["per_eval"] == 100.0
    assert plan["runs_left"] == 11 and plan["spent"] == 250.0
    assert plan["left"]["runs"] == 11 * (30 * 5.0 + 100.0)
    args.budget_minutes = 0  # no check
    fidelity.check_budget(args, tmp_path, keys)


@pytest.mark.once
def test_power_rows_by_hand():
    from keras_mta.analysis.power import seeds_needed

    fidelity = _fidelity_module()
    args = fidelity.parse_args([])
    # MTA - KD on the valid loss: +0.1, +0.2, +0.3 (sd 0.1); ROUGE-L: KD
    # scores 20 on average, MTA 1 more with differences 0, 1, 2 (sd 1).
    runs = [_fake_run("kd", s, 2.0, 19.0 + s) for s in range(3)]
    runs += [_fake_run("mta", s, 2.1 + 0.1 * s, 19.0 + 2 * s) for s in range(3)]
    rows = fidelity.power(fidelity.paired(runs), runs, args)
    loss = next(r for r in rows if r["metric"] == "valid loss")
    assert loss["comparison"] == "MTA - KD"
    assert loss["sd"] == pytest.approx(0.1)
    assert loss["effect"] == pytest.approx(-math.log(1 - 0.055))
    assert loss["seeds_needed"] == seeds_needed(0.1, loss["effect"]) == 27
    # (4.302653 + 1.060660) * 0.1 / sqrt(3)
    assert loss["minimal_detectable_effect"] == pytest.approx(
        0.5363313 / math.sqrt(3), abs=1e-5
    )
    greedy = next(r for r in rows if r["metric"] == "ROUGE-L T0 (greedy)")
    assert greedy["effect"] == pytest.approx(0.055 * 20.0)
    assert greedy["seeds_needed"] == seeds_needed(1.0, 1.1)
    assert "needs 27 seeds" in loss["words"]
    assert "rules out" in greedy["words"]
