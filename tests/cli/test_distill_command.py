"""The main job end to end: `keras-mta distill` at a test size, then
`keras-mta evaluate`, `keras-mta trajectory` and `keras-mta train-teacher`
on what it wrote. Each command runs in its own process under the current
backend, as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from keras_mta.cli.main import build_parser
from keras_mta.utils.native_logs import is_startup_line

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The embedded default (tiny-cpu) shrunk to seconds of training.
TEST_SIZE = [
    "data.max_examples=96",
    "data.tokenizer=sentencepiece:160",
    "data.sequence_length=48",
    "data.max_prompt_length=32",
    "data.max_word_units=16",
    "data.max_phrase_units=8",
    "training.batch_size=16",
    "training.epochs=1",
    "training.teacher_epochs=1",
    "training.steps_per_epoch=3",
    "training.seeds=[1, 2]",
    "training.early_stopping_patience=1",
    "evaluation.max_examples=4",
    "evaluation.seeds=[10, 20]",
    "evaluation.max_new_tokens=4",
    "name=test-size",
]


# The main job end to end (minutes): scripts/test.sh runs it under torch
# only, the backend most GPU users train with; the model code it drives is
# tested in-process under every backend.
pytestmark = pytest.mark.once(backend="torch")


def run_cli(args, cache_dir, timeout=900):
    env = dict(os.environ)
    env["KERAS_BACKEND"] = keras.backend.backend()
    env["KERAS_MTA_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "keras_mta.cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"keras-mta {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    out = root / "run"
    overrides = [arg for item in TEST_SIZE for arg in ("--set", item)]
    proc = run_cli(
        ["distill", *overrides, "--output-dir", str(out)], root / "cache"
    )
    return root, out, proc


@pytest.mark.large
def test_distill_writes_every_output(run):
    _, out, proc = run
    results = json.loads((out / "results.json").read_text())
    models = [m["model"] for m in results["models"]]
    assert models == [
        "teacher",
        "student (SFT)",
        "student (KD)",
        "student (MTA)",
    ]
    for entry in results["models"]:
        score = entry["rouge_l"]["valid"]
        assert score["seeds"] == [10, 20]
        assert len(score["scores"]) == 2
        assert 0.0 <= score["mean"] <= 100.0
        assert entry["valid_loss"] > 0
        assert entry["parameters"] > 0
    # Two training seeds per student, paired: KD - SFT and MTA - KD on
    # validation loss and on sampled and greedy ROUGE-L, with words.
    assert results["training_seeds"] == [1, 2]
    for entry in results["models"][1:]:
        assert [run["seed"] for run in entry["per_seed"]] == [1, 2]
        assert set(entry["rouge_l_greedy"]) == {"valid"}
    differences = results["paired_differences"]
    assert {(d["comparison"], d["metric"]) for d in differences} == {
        (comparison, metric)
        for comparison in ("KD - SFT", "MTA - KD")
        for metric in (
            "valid loss",
            "ROUGE-L valid (sampled)",
            "ROUGE-L valid (greedy)",
        )
    }
    assert all(d["n"] == 2 and d["low"] <= d["high"] for d in differences)
    assert "| MTA - KD | valid loss |" in proc.stdout
    # Students are smaller than the teacher and share one size.
    sizes = [m["parameters"] for m in results["models"]]
    assert sizes[1] == sizes[2] == sizes[3] < sizes[0]
    assert results["backend"] == keras.backend.backend()
    # The table is printed and written as Markdown.
    assert "student (MTA)" in proc.stdout
    assert "| model |" in (out / "results.md").read_text()
    for name in (
        "training_curves.png",
        "results_table.png",
        "results_chart.png",
        "trajectory.png",
        "trajectory_heatmaps.png",
    ):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
    assert (out / "trajectory_before.json").exists()
    assert (out / "trajectory_after_mta.json").exists()
    assert (out / "mta_student" / "config.json").exists()
    assert (out / "teacher_preset" / "config.json").exists()


@pytest.mark.large
def test_overrides_reach_the_run(run):
    _, out, _ = run
    results = json.loads((out / "results.json").read_text())
    fields = results["recipe_fields"]
    assert results["recipe"] == "test-size"
    assert fields["training"]["epochs"] == 1
    assert fields["data"]["sequence_length"] == 48
    assert fields["evaluation"]["seeds"] == [10, 20]
    # One epoch of 3 steps per variant: one entry per metric in History.
    for name in ("student (SFT)", "student (KD)", "student (MTA)"):
        assert len(results["histories"][name]["loss"]) == 1
    # The data statistics are reported, not silent.
    data = results["data"]
    assert data["train_report"].startswith(str(out / "data"))
    assert data["train"]["examples"] == 96
    assert data["train_prompts_cut"] >= 0


@pytest.mark.large
def test_mta_student_differs_from_kd_student(run):
    _, out, _ = run
    results = json.loads((out / "results.json").read_text())
    hist = results["histories"]
    # MTA reports nonzero alignment terms; KD and SFT report only the
    # terms they train with.
    assert hist["student (MTA)"]["dsa"][0] > 0
    assert hist["student (MTA)"]["hra"][0] > 0
    # Early stopping validates a student by its own cross-entropy alone
    # (`StudentValidation`): `val_ce`, no teacher terms.
    assert set(hist["student (KD)"]) == {"loss", "ce", "kd", "val_ce"}
    assert "kd" not in hist["student (SFT)"]


@pytest.mark.large
def test_the_run_prints_no_warning_a_user_cannot_act_on(run):
    _, _, proc = run
    # TensorFlow's native start-up lines (filtered by the command), Keras's
    # ignored-shuffle warning, TensorFlow's retracing warning.
    noise = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if is_startup_line(line)
        or "shuffle=True" in line
        or "retracing" in line
    ]
    assert noise == []


@pytest.mark.large
def test_evaluate_and_trajectory_on_saved_presets(run):
    root, out, _ = run
    valid = out / "data" / "valid.jsonl"
    report = root / "evaluate.json"
    proc = run_cli(
        [
            "evaluate",
            str(out / "mta_student"),
            "--data",
            str(valid),
            "--seeds",
            "10",
            "--max-new-tokens",
            "4",
            "--max-examples",
            "3",
            "--output",
            str(report),
        ],
        root / "cache",
    )
    assert "ROUGE-L" in proc.stdout
    result = json.loads(report.read_text())["results"][str(valid)]
    assert result["num_prompts"] == 3 and len(result["predictions"]) == 3
    traj = root / "trajectory"
    run_cli(
        [
            "trajectory",
            "--teacher",
            str(out / "teacher_preset"),
            "--student",
            str(out / "mta_student"),
            "--data",
            str(valid),
            "--max-examples",
            "8",
            "--sequence-length",
            "48",
            "--teacher-layers",
            "2",
            "4",
            "--student-layers",
            "1",
            "2",
            "--output-dir",
            str(traj),
        ],
        root / "cache",
    )
    table = json.loads((traj / "trajectory_mta_student.json").read_text())
    assert table["label"] == "mta_student"
    assert (traj / "trajectory.png").read_bytes().startswith(PNG_MAGIC)


def test_help_explains_every_recipe_field():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    text = sub["distill"].format_help()
    for field in (
        "data.max_word_units",
        "plan.word_pairs",
        "distillation.kd_ratio",
        "training.teacher_epochs",
        "evaluation.seeds",
    ):
        assert field in text
    assert set(sub) >= {
        "distill",
        "train-teacher",
        "evaluate",
        "chunk",
        "trajectory",
    }
