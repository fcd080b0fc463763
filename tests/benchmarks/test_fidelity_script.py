"""The fidelity experiment in reduced form: `benchmarks/fidelity.py
--tiny-run` on the small models of recipes/tiny-cpu.toml (a few steps, a
few prompts), in its own process under the current backend. Checks the
machinery end to end: the teacher cache, every variant from the cache,
the table, the plot, and resuming from the finished runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "fidelity.py"


def _run(output, variants):
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
            str(REPO / "recipes" / "tiny-cpu.toml"),
            "--tiny-run",
            "--seeds",
            "0,1",
            "--variants",
            variants,
            "--output",
            str(output),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=str(REPO),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


# Minutes of subprocess: scripts/test.sh runs it under jax only (the
# backend of the reported experiment).
@pytest.mark.large
@pytest.mark.once(backend="jax")
def test_fidelity_reduced(tmp_path):
    output = tmp_path / "fidelity"
    stdout = _run(output, "kd,mta")
    results = json.loads((output / "results.json").read_text())
    runs = {(r["variant"], r["seed"]) for r in results["runs"]}
    assert runs == {(v, s) for v in ("kd", "mta") for s in (0, 1)}
    for run in results["runs"]:
        assert len(run["step_losses"]) == 2
        assert all(v == v for v in run["step_losses"])  # no NaN
        assert set(run["rouge_l"]) == set(results["teacher"]["rouge_l"])
    mta = [r for r in results["runs"] if r["variant"] == "mta"]
    assert all(r["history"]["dsa"][-1] > 0 for r in mta)
    assert results["cache"]["bytes"] > 0
    table = (output / "results.md").read_text()
    assert "student: MTA" in table and "teacher" in table
    assert (output / "fidelity.png").read_bytes()[:4] == b"\x89PNG"
    assert "| model |" in stdout
    # A second invocation keeps the finished runs (and the teacher cache).
    stdout = _run(output, "kd,mta")
    assert stdout.count("done before, kept") == 4
    assert "(0 of 1 chunks" in stdout
    again = json.loads((output / "results.json").read_text())
    assert again["table"] == results["table"]


def _fidelity_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fidelity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
