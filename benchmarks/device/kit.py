"""What the GPU kit carries and the one device command that runs it.

Pure Python (no keras import): the fetcher, the prepare script, the entry
script and the tests read the kit's layout, budgets and command from here,
and README.md quotes the command verbatim (a test checks that it does).
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The lent machine has Python 3.12 with CUDA jax and torch, numpy, h5py,
# absl-py, rich, ml-dtypes, packaging, regex, requests, tqdm, pyyaml,
# protobuf, sentencepiece, tokenizers (the device README's KINDS.md), but
# none of these: keras and keras-hub at the versions installed here, and
# their requirements that the image lacks. tensorflow-text (a keras-hub
# requirement) is left out on purpose: keras-mta's model path imports
# without it (tests/test_imports.py).
WHEELS = ("keras", "keras-hub", "namex", "optree", "kagglehub", "kagglesdk")

# Carried folders, relative to the repository root. Both are ignored by
# git (`/.whl/` and `/runs/` in .gitignore).
WHEEL_DIR = ".whl"
DATA_DIR = "runs/device_kit"
CARRY = (WHEEL_DIR, DATA_DIR)

MIB = 2**20
# Everything that travels with one call: the tracked tree, the wheels and
# the data. The device allows 64 MiB; keep a margin for untracked files.
TRAVEL_LIMIT = 64 * MIB
TRAVEL_BUDGET = 56 * MIB
WHEEL_BUDGET = 16 * MIB
DATA_BUDGET = 32 * MIB
# Files that come back from $OUT: at most 8, 16 MiB each.
MAX_RETURNED_FILES = 8
MAX_RETURNED_BYTES = 16 * MIB

# One command, under 9 minutes on the device (the kit's own deadline),
# inside a `run` timeout that leaves a minute for the machine's start-up
# being counted separately.
KIT_DEADLINE_S = 510
TIMEOUT_S = 570
COMMAND = (
    "set -o pipefail; PYTHONUNBUFFERED=1 python3 "
    "benchmarks/device/run_kit.py --wheels .whl --data runs/device_kit "
    f"--out $OUT --deadline-s {KIT_DEADLINE_S} 2>&1 | tee $OUT/kit.log"
)
# Where pip installs the carried wheels on the device.
SITE = "/tmp/site"


def pip_install_command(wheels, target=SITE, python="python3"):
    """The argv that installs carried wheels (no index, no dependencies)."""
    return [
        python,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        str(target),
        *[str(w) for w in wheels],
    ]


def folder_size(path):
    """Bytes of the files under `path` (0 when it does not exist)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def check_budget(what, size, budget):
    """Raise `ValueError` when `size` bytes exceed `budget` bytes.

    Returns the line that states the size and the budget.
    """
    line = f"{what}: {size / MIB:.2f} MiB of a {budget / MIB:.0f} MiB budget"
    if size > budget:
        raise ValueError(
            f"{line}: over budget by {(size - budget) / MIB:.2f} MiB. The "
            "device takes at most 64 MiB per call (tracked tree, wheels "
            "and data together): carry fewer wheels or prepare fewer "
            "examples (prepare.py --num-train / --seq-len)."
        )
    return line


def exit_status(check, *args, **kwargs):
    """Run a budget check: 0, or 1 with its message on stderr."""
    try:
        check(*args, **kwargs)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
