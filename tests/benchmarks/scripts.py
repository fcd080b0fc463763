"""The benchmark scripts, imported as modules by their tests."""

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name):
    """`benchmarks/<name>.py` as a fresh module (the scripts are not a
    package: they put `benchmarks/` on `sys.path` themselves)."""
    spec = importlib.util.spec_from_file_location(
        name, BENCHMARKS / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
