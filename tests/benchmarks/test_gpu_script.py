"""The GPU benchmark script runs end to end at `--tiny` size on CPU.

The only benchmark test: the other benchmark scripts are run by hand (see
BENCHMARKS.md). This one is meant for a machine nobody here has, so it is
kept runnable: tiny models, bfloat16, the current backend, one step.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_step_time.py"


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="the GPU script compares jax and torch (issue 6), not tensorflow",
)
@pytest.mark.large
def test_gpu_script_runs_tiny(tmp_path):
    backend = keras.backend.backend()
    output = tmp_path / "gpu.json"
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--tiny",
            "--backends",
            backend,
            "--variants",
            "kd_only,mta",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--budget-s",
            "600",
            "--output",
            str(output),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=str(REPO),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The table comes last.
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"| {backend} | MTA (KD + DSA + HRA)"), proc.stdout[
        -2000:
    ]
    report = json.loads(output.read_text())
    (result,) = report["results"]
    assert result["backend"] == backend
    assert result["tiny"] is True
    assert result["config"]["seq_len"] == 32
    for variant in ("kd", "mta"):
        figures = result["variants"][variant]
        assert figures["median_s"] > 0
        assert figures["peak_mb"] > 0
        assert figures["final_loss"] == figures["final_loss"]  # not NaN
    assert "| MTA (KD + DSA + HRA) |" in report["table"]
