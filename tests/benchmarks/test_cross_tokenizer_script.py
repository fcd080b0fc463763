"""`benchmarks/cross_tokenizer.py`: its `--tiny` run in this process (the
full tier: spaCy, SentencePiece tokenizers trained on `t0_mix`, three
compiled models and the SmolLM2 tokenizer)."""

import json

import pytest

from tests.benchmarks.scripts import load_script
from tests.shared_data import shared_file


def _script():
    return load_script("cross_tokenizer")


@pytest.mark.large
@pytest.mark.once(backend="jax")
def test_tiny_run(tmp_path):
    shared_file("t0_mix", "valid.jsonl")
    from keras_mta.models import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(f"SmolLM2 GGUF file absent: {e}")
    script = _script()
    output = tmp_path / "cross_tokenizer.json"
    result = script.main(
        ["--tiny", "--work-dir", str(tmp_path), "--output", str(output)]
    )
    assert json.loads(output.read_text())["tiny"] is True
    steps = result["steps"]
    assert set(steps["variants"]) == {"mta_same", "kd_cross", "mta_cross"}
    assert all(v["median_s"] > 0 for v in steps["variants"].values())
    assert steps["ratios"]["mta_cross / mta_same"] > 0
    pairing = result["pairing"]
    assert pairing["examples"] == 16
    for kind, row in pairing["units"].items():
        assert 0 < row["paired"] <= row["units"], kind
        # Every span is paired or lost, on each side, for one reason.
        for side in ("student", "teacher"):
            lost = sum(row[side].values())
            assert row["paired"] + lost == row["units"], (kind, side)
