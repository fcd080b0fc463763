"""Every guide runs top to bottom, at reduced size, under this backend.

Each guide runs as `python guides/NAME.py` in a subprocess with
`KERAS_MTA_GUIDE_SMALL=1`, the current `KERAS_BACKEND` and its output
folder in `tmp_path`, so running the suite once per backend runs every
guide under every backend.
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
}


def test_every_guide_is_tested():
    names = {p.stem for p in GUIDES.glob("*.py")}
    assert names == set(IMAGES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(IMAGES))
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
