"""`keras-mta teacher-cache`, then `keras-mta distill` from the cache, at a
test size, each in its own process as a user runs them."""

import json

import pytest

from keras_mta import TeacherCache
from tests.cli.test_distill_command import TEST_SIZE
from tests.cli.test_distill_command import run_cli

CACHED = [
    *[item for item in TEST_SIZE if not item.startswith("training.teacher")],
    "training.teacher_epochs=0",
    "distillation.compare=['kd', 'mta']",
    "distillation.teacher_cache=teacher_caches",
    "distillation.top_k=16",
]


# End to end in subprocesses (minutes): scripts/test.sh runs it under
# tensorflow only; the cached path is tested in-process under every backend
# (tests/models/test_cached_teacher.py).
@pytest.mark.large
@pytest.mark.once(backend="tensorflow")
def test_teacher_cache_then_distill_from_it(tmp_path):
    out = tmp_path / "run"
    overrides = [arg for item in CACHED for arg in ("--set", item)]
    stdout = run_cli(
        ["teacher-cache", "tiny-cpu", *overrides, "--output-dir", str(out)],
        tmp_path / "spans",
    ).stdout
    # The size is reported before writing, then both splits are complete.
    assert "to write)" in stdout
    caches = sorted((out / "teacher_caches").iterdir())
    assert len(caches) == 2
    for directory in caches:
        cache = TeacherCache(str(directory))
        assert cache.complete
        assert cache.metadata["teacher"]["top_k"] == 16
        assert cache.metadata["dtype"] == "bfloat16"

    stdout = run_cli(
        ["distill", "tiny-cpu", *overrides, "--output-dir", str(out)],
        tmp_path / "spans",
    ).stdout
    # Same teacher, data, plan and settings: reused, nothing rewritten.
    assert stdout.count("(0 of ") >= 2
    assert "training the student: kd from the teacher cache" in stdout
    assert "training the student: mta from the teacher cache" in stdout
    results = json.loads((out / "results.json").read_text())
    roles = [entry["role"] for entry in results["models"]]
    assert roles == ["teacher", "kd", "mta"]
    history = results["histories"]["student (MTA)"]
    assert history["dsa"][-1] > 0 and history["kd"][-1] > 0
    assert "teacher_cache" in results["stages_s"]
