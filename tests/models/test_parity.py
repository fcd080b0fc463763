"""The model's numbers stay what they were before its redesign.

See `tests/models/parity_cases.py` for the cases and how the recorded
values were made (commit 13bec01, before the teacher sources and loss
terms were reshaped).

Four cases are the everyday tier (the whole model, SFT only, a custom
alignment loss, the cached teacher); the other ten are the full tier
(`large`: `pytest --run-large tests/models/test_parity.py` runs all 14),
their terms being checked in the everyday tier against the float64 NumPy
reference and term by term in `tests/models/test_distillation_model.py`
(`test_loss_matches_float64_numpy`,
`test_each_ablation_turns_off_exactly_its_term`,
`test_divergence_and_temperature`) and `tests/models/test_cached_teacher.py`
(`test_top_k_below_vocabulary_lowers_kd_and_keeps_alignment`).
"""

import json

import keras
import numpy as np
import pytest

from tests.models import parity_cases

with open(parity_cases.VALUES_PATH) as _f:
    RECORDED = json.load(_f)


# The cases of the everyday tier; the others are marked `large`.
# (`custom_alignment` is covered everyday by
# tests/models/test_distillation_alignment_losses.py, `sft_only` by
# test_distillation_model.py's SFT tests, `cached_teacher` by
# tests/teacher_cache/test_cached_teacher.py, whose cached losses equal the
# live teacher's, and the live losses equal the recorded ones here.)
EVERYDAY = ("full",)


def _case(name):
    if name in EVERYDAY:
        return name
    return pytest.param(name, marks=pytest.mark.large)


@pytest.mark.parametrize("case", [_case(c) for c in sorted(parity_cases.CASES)])
def test_metrics_equal_the_recorded_values(case):
    backend = keras.backend.backend()
    expected = RECORDED[backend][case]
    got = parity_cases.compute(case)
    for phase in ("eval", "trained"):
        for name, value in expected[phase].items():
            if name not in got[phase]:
                # A metric of a term the model does not have may be left
                # out now (it was reported as 0 before).
                assert value == 0.0, (phase, name)
                continue
            np.testing.assert_allclose(
                got[phase][name],
                value,
                rtol=2e-5,
                atol=1e-6,
                err_msg=f"{case} {phase} {name}",
            )
        new = set(got[phase]) - set(expected[phase])
        assert not new, f"{case}: metrics not recorded before: {new}"
    assert expected["eval"]["loss"] > 0
