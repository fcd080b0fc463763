"""Test tiers, backend-independent tests once, and cheap teardown.

Two tiers, as in keras-hub:

- The everyday tier (a plain `pytest`, `bash scripts/test.sh`, `.ci/run`):
  every numerical check under every backend, every backend-independent
  test once, one short smoke run of the CLI.
- The full tier adds the tests marked `large` (end-to-end subprocess runs,
  SmolLM2, slow `fit` calls): `bash scripts/test.sh --all`,
  `pytest --run-large` or `KERAS_MTA_RUN_LARGE=1`. `extra_large` tests
  (none yet) need `--run-extra-large` or `KERAS_MTA_RUN_EXTRA_LARGE=1`.
  A test marked `large` is skipped with its reason otherwise.

`slow`, the older name, is read as `large`.
"""

import os
import zlib

# XLA compiles every jitted step and, under jax, every eager op per shape;
# the tests' models are tiny, so compiling is most of their time. LLVM's
# optimisation level 0 compiles faster and computes the same numbers (it
# does not reassociate floating-point arithmetic); measured on the jax
# tests of five modules, quiet, 2-core machine: 202 s -> 155 s. Set before
# keras (and so jax or TensorFlow) is imported; a level the caller set in
# XLA_FLAGS is kept.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# `scripts/test.sh` runs the suite once per backend and lists them here
# (e.g. "jax torch tensorflow"). A test marked `once` runs in one of those
# processes only: under `@pytest.mark.once(backend="torch")` in the torch
# process, under a plain `@pytest.mark.once` in one picked by the test's
# file (see `once_backend`). Unset (plain `pytest`), every test runs.
TEST_BACKENDS = os.environ.get("KERAS_MTA_TEST_BACKENDS", "").split()

# The tier markers, smallest first: a test runs when its tier is asked for.
TIERS = {
    "large": ("--run-large", "KERAS_MTA_RUN_LARGE"),
    "extra_large": ("--run-extra-large", "KERAS_MTA_RUN_EXTRA_LARGE"),
}
# Why a test of a tier that was not asked for is skipped.
SKIP_REASONS = {
    "large": "marked `large` (the full tier): run with --run-large, "
    "KERAS_MTA_RUN_LARGE=1 or `bash scripts/test.sh --all`",
    "extra_large": "marked `extra_large`: run with --run-extra-large or "
    "KERAS_MTA_RUN_EXTRA_LARGE=1",
}
# Older marker names and the tier they stand for.
ALIASES = {"slow": "large"}


def pytest_addoption(parser):
    group = parser.getgroup("keras-mta test tiers")
    group.addoption(
        "--run-large",
        action="store_true",
        default=False,
        help="also run tests marked `large` (the full tier; also "
        "KERAS_MTA_RUN_LARGE=1)",
    )
    group.addoption(
        "--run-extra-large",
        action="store_true",
        default=False,
        help="also run tests marked `extra_large` and `large` (also "
        "KERAS_MTA_RUN_EXTRA_LARGE=1)",
    )


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false")


def tiers_to_run(config):
    """The tier markers whose tests this session runs."""
    run = set()
    for tier, (option, env) in TIERS.items():
        if config.getoption(option.lstrip("-").replace("-", "_")) or (
            _env_flag(env)
        ):
            run.add(tier)
    if "extra_large" in run:
        run.add("large")
    return run


def once_backend(marker, module):
    """The backend whose test process runs a test marked `marker`.

    The given backend when it is in the list; otherwise torch when it is
    in the list: its process runs the tests of every backend in about a
    quarter of jax's time and half of TensorFlow's (CI reports of the
    everyday tier, 2-core machine), so the backend-independent tests even
    out the three processes that `scripts/test.sh` runs side by side.
    Without torch, one picked by a stable hash of the test's file.
    """
    preferred = marker.kwargs.get("backend")
    if preferred in TEST_BACKENDS:
        return preferred
    if "torch" in TEST_BACKENDS:
        return "torch"
    return TEST_BACKENDS[zlib.crc32(module.encode()) % len(TEST_BACKENDS)]


def item_tier(item):
    """`extra_large`, `large` or None (everyday) for a collected test."""
    for tier in reversed(list(TIERS)):
        if item.get_closest_marker(tier) is not None:
            return tier
    for alias, tier in ALIASES.items():
        if item.get_closest_marker(alias) is not None:
            return tier
    return None


def pytest_report_header(config):
    once = (
        f"; tests marked `once` run in one of {TEST_BACKENDS} only"
        if TEST_BACKENDS
        else ""
    )
    tiers = sorted(tiers_to_run(config))
    tier = (
        f"full tier ({', '.join(tiers)} included)"
        if tiers
        else "everyday tier (`large` tests skipped; --run-large runs them)"
    )
    return (
        f"keras {keras.__version__}, backend {keras.backend.backend()} "
        f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'unset')}){once}; "
        f"{tier}"
    )


def pytest_collection_modifyitems(config, items):
    run = tiers_to_run(config)
    current = keras.backend.backend()
    for item in items:
        tier = item_tier(item)
        if tier is not None and tier not in run:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASONS[tier]))
            continue
        marker = item.get_closest_marker("once")
        if marker is None or not TEST_BACKENDS:
            continue
        home = once_backend(marker, item.nodeid.split("::")[0])
        if home != current:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"marked `once`: runs under {home} in this test run"
                )
            )


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _reset_keras_state():
    yield
    keras.config.set_dtype_policy("float32")
    # Without Python's garbage collection: a full collection costs 0.3 to
    # 0.7 s with TensorFlow, JAX and torch loaded (measured with cProfile),
    # and Python's own generational collection frees the tiny models.
    keras.utils.clear_session(free_memory=False)
