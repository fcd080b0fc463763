"""`benchmarks/student_generation.py`: its tables (everyday) and its
`--tiny` run in this process (the full tier: minutes on a busy 2-core
machine, spaCy and a SentencePiece tokenizer trained on `t0_mix`)."""

import json

import pytest

from tests.benchmarks.scripts import load_script
from tests.shared_data import shared_file


def _script():
    return load_script("student_generation")


@pytest.mark.once
def test_tables_say_whether_chunking_keeps_up():
    script = _script()
    result = {
        "config": {"batch_size": 16},
        "median_s": {"without": 2.0, "synchronous": 3.0, "overlapped": 2.5},
        "parts_median_s": {"sample": 0.5, "chunk": 0.2, "preprocess": 0.1},
        # 1 process: 20 texts/s, under a 0.3 s GPU step's 53.3 texts/s.
        "chunk_texts_per_s": {"1": 20.0, "4": 60.0},
    }
    steps, span_path = script.report(result)
    assert "| generated batch, synchronous | 3000 | 1.50 |" in steps
    assert "| part: chunking (spaCy, 1 process) | 200 | 0.10 |" in steps
    assert "| chunk generated text, 1 process | 20.0 | yes | no |" in span_path
    assert (
        "| chunk generated text, 4 worker processes | 60.0 | yes | yes |"
        in span_path
    )
    assert "| a 0.3 s GPU step consumes (batch 16) | 53.3 |" in span_path
    assert "| training step consumes (batch / step" in span_path


@pytest.mark.large
@pytest.mark.once(backend="jax")
def test_tiny_run(tmp_path):
    shared_file("t0_mix", "train.jsonl")
    script = _script()
    output = tmp_path / "student_generation.json"
    result = script.main(
        [
            "--tiny",
            "--steps",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "1",
            "--n-process",
            "1",
            "--work-dir",
            str(tmp_path),
            "--output",
            str(output),
        ]
    )
    saved = json.loads(output.read_text())
    assert saved["result"]["median_s"] == result["median_s"]
    for key in ("without", "synchronous", "overlapped"):
        assert result["median_s"][key] > 0
    assert result["generated_responses"] > 0
    assert result["chunk_texts_per_s"]["1"] > 0
    assert "span path on generated text" in saved["table"]
