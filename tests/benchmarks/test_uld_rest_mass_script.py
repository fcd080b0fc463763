"""`benchmarks/uld_rest_mass.py`: the rest mass outside the top m (cheap,
NumPy), and the script end to end on the SmolLM2 GGUF teacher (the full
tier)."""

import json

import numpy as np
import pytest

from tests.benchmarks.scripts import load_script
from tests.shared_data import shared_file


def _script():
    return load_script("uld_rest_mass")


@pytest.mark.once
def test_rest_mass_is_the_mass_outside_the_m_largest():
    laws = np.array([[0.1, 0.5, 0.15, 0.25], [0.25, 0.25, 0.25, 0.25]])
    rests = _script().rest_masses(laws, [1, 2, 4])
    np.testing.assert_allclose(rests[1], [0.5, 0.75])
    np.testing.assert_allclose(rests[2], [0.25, 0.5])
    np.testing.assert_allclose(rests[4], [0.0, 0.0])


@pytest.mark.large
@pytest.mark.once
def test_the_script_measures_smollm2(tmp_path):
    shared_file("t0_mix", "valid.jsonl")
    output = tmp_path / "rest.json"
    rows = _script().main(
        ["--texts", "2", "--m", "4,64", "--output", str(output)]
    )
    assert [r["m"] for r in rows] == [4, 64]
    assert rows[0]["positions"] > 0
    assert 1.0 > rows[0]["mean"] > rows[1]["mean"] > 0.0
    assert json.loads(output.read_text())["rows"] == rows
