"""The everyday tier's one smoke run of the CLI's main job.

`keras-mta distill` at the smallest size (the MTA student only, two steps,
one seed), then `keras-mta evaluate` and `keras-mta trajectory` on what it
wrote, and `keras-mta teacher-cache` without teacher training, each
through the CLI's `main` in this process: the parser, the runner, the
data, tokenizer and span steps, teacher training, distillation,
evaluation, trajectory, plots, the saved presets and the teacher caches.
The full runs in subprocesses, with every variant and distilling from the
cache, are `tests/cli/test_distill_command.py` and
`tests/cli/test_teacher_cache_command.py` (the full tier).
"""

import json

import keras
import pytest

from keras_mta import TeacherCache
from keras_mta.cli.main import main
from tests.cli.test_distill_command import PNG_MAGIC
from tests.cli.test_distill_command import TEST_SIZE

SMOKE_SIZE = [
    *TEST_SIZE,
    "data.max_examples=16",
    "training.batch_size=8",
    "training.steps_per_epoch=2",
    "evaluation.max_examples=2",
    "evaluation.seeds=[10]",
    "training.seeds=[1]",
    "evaluation.max_new_tokens=2",
    "distillation.compare=['mta']",
    "name=smoke",
]


# One backend (torch, the quickest here): the model code it drives is
# tested in-process under every backend.
@pytest.mark.once(backend="torch")
def test_distill_then_evaluate_and_trajectory(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_MTA_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    overrides = [arg for item in SMOKE_SIZE for arg in ("--set", item)]
    assert main(["distill", *overrides, "--output-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [m["model"] for m in results["models"]] == [
        "teacher",
        "student (MTA)",
    ]
    assert results["backend"] == keras.backend.backend()
    assert results["data"]["train"]["examples"] == 16
    assert results["histories"]["student (MTA)"]["dsa"][0] > 0
    for entry in results["models"]:
        assert entry["valid_loss"] > 0
        assert len(entry["rouge_l"]["valid"]["scores"]) == 1
    assert (out / "trajectory.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "mta_student" / "config.json").exists()
    assert (out / "teacher_preset" / "config.json").exists()

    valid = out / "data" / "valid.jsonl"
    report = tmp_path / "evaluate.json"
    args = [
        "evaluate",
        str(out / "mta_student"),
        "--data",
        str(valid),
        "--seeds",
        "10",
        "--max-new-tokens",
        "2",
        "--max-examples",
        "2",
        "--output",
        str(report),
    ]
    assert main(args) == 0
    result = json.loads(report.read_text())["results"][str(valid)]
    assert result["num_prompts"] == 2

    traj = tmp_path / "trajectory"
    args = [
        "trajectory",
        "--teacher",
        str(out / "teacher_preset"),
        "--student",
        str(out / "mta_student"),
        "--data",
        str(valid),
        "--max-examples",
        "4",
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
    ]
    assert main(args) == 0
    assert (traj / "trajectory_mta_student.json").exists()

    cached = [
        "training.teacher_epochs=0",
        "distillation.teacher_cache=teacher_caches",
        "distillation.top_k=16",
    ]
    overrides += [arg for item in cached for arg in ("--set", item)]
    out = tmp_path / "cached"
    assert (
        main(
            ["teacher-cache", "tiny-cpu", *overrides, "--output-dir", str(out)]
        )
        == 0
    )
    caches = sorted((out / "teacher_caches").iterdir())
    assert len(caches) == 2
    for directory in caches:
        cache = TeacherCache(str(directory))
        assert cache.complete
        assert cache.metadata["teacher"]["top_k"] == 16
