"""Every guide runs top to bottom, at reduced size, under this backend.

Each guide runs as `python guides/NAME.py` in a subprocess with
`KERAS_MTA_GUIDE_SMALL=1`, the current `KERAS_BACKEND` and its output
folder in `tmp_path`. The runs are the full tier (`large`, a minute or two
each): `bash scripts/test.sh --all` runs `switching_backends` under every
backend and each other guide under the one backend given in `HOME`. The
code they call is tested in-process under every backend in the everyday
tier, and the CLI's main job by `tests/cli/test_distill_smoke.py`.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).parents[2]
GUIDES = ROOT / "guides"
# A guide takes well under a minute alone on 2 cores; the limit leaves room
# for a loaded machine.
TIMEOUT_S = 900
# Images each guide must write (relative to its output folder).
IMAGES = {
    "getting_started": ["getting_started/training_curves.png"],
    "bring_your_own_models": [],
    "switching_backends": ["switching_backends/training_curves.png"],
    "scaling_out": [],
    "reproducing_the_paper": [
        "reproducing_the_paper/run/training_curves.png",
    ],
    "writing_your_own_alignment_loss": [
        "writing_your_own_alignment_loss/training_curves.png"
    ],
    "training_on_student_outputs": [
        "training_on_student_outputs/fractions.png"
    ],
}


# The backend whose process runs each guide under scripts/test.sh (marked
# `once`); None: every backend.
HOME = {
    "getting_started": "jax",
    "scaling_out": "jax",
    "reproducing_the_paper": "torch",
    "writing_your_own_alignment_loss": "torch",
    "bring_your_own_models": "tensorflow",
    "training_on_student_outputs": "jax",
    "switching_backends": None,
}


def _guide(name):
    if HOME[name] is None:
        return name
    return pytest.param(name, marks=pytest.mark.once(backend=HOME[name]))


def test_every_guide_is_tested():
    names = {p.stem for p in GUIDES.glob("*.py")}
    assert names == set(IMAGES) == set(HOME)


@pytest.mark.large
@pytest.mark.parametrize("name", [_guide(name) for name in sorted(IMAGES)])
def test_guide_runs(name, tmp_path):
    env = dict(os.environ)
    env.update(
        {
            "KERAS_BACKEND": keras.backend.backend(),
            "KERAS_MTA_GUIDE_SMALL": "1",
            "KERAS_MTA_GUIDE_OUTPUT": str(tmp_path),
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), env.get("PYTHONPATH", "")]
            ),
        }
    )
    result = subprocess.run(
        [sys.executable, str(GUIDES / f"{name}.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, (
        f"guides/{name}.py failed under {keras.backend.backend()}:\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    )
    for image in IMAGES[name]:
        path = tmp_path / image
        assert path.is_file() and path.stat().st_size > 0, image
