"""The GPU benchmark script's worker and table in this process.

The everyday tier's check of `benchmarks/gpu_step_time.py`: its worker
(tiny models, bfloat16, one step of KD only and full MTA) and its table,
without the subprocess per backend. The full run, `--tiny` in a
subprocess, is `tests/benchmarks/test_gpu_script.py` (the full tier).
"""

import argparse
import json

import keras
import pytest

from tests.benchmarks.scripts import load_script


def _script():
    return load_script("gpu_step_time")


# One backend: the model code it drives is tested under every backend.
@pytest.mark.once(backend="torch")
def test_worker_and_table_in_process(tmp_path):
    script = _script()
    args = argparse.Namespace(
        tiny=True,
        budget_s=600.0,
        variants="kd,mta",
        steps=1,
        warmup=1,
        result=str(tmp_path / "result.json"),
    )
    script.worker(args)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["backend"] == keras.backend.backend()
    assert result["tiny"] is True
    for variant in ("kd", "mta"):
        figures = result["variants"][variant]
        assert figures["median_s"] > 0
        assert figures["final_loss"] == figures["final_loss"]  # not NaN
    assert "| MTA (KD + DSA + HRA) |" in script.table([result])
