import os

import keras
import numpy as np
import pytest

# `scripts/test.sh` runs the suite once per backend and lists them here
# (e.g. "jax torch tensorflow"). A test marked `once` runs in one of those
# processes only: under `@pytest.mark.once(backend="torch")` in the torch
# process, under a plain `@pytest.mark.once` in the first one (a backend
# that is not in the list falls back to the first). Unset (plain
# `pytest`), every test runs.
TEST_BACKENDS = os.environ.get("KERAS_MTA_TEST_BACKENDS", "").split()


def once_backend(marker):
    """The backend whose test process runs a test marked `marker`."""
    preferred = marker.kwargs.get("backend")
    return preferred if preferred in TEST_BACKENDS else TEST_BACKENDS[0]


def pytest_report_header(config):
    once = (
        f"; tests marked `once` run in one of {TEST_BACKENDS} only"
        if TEST_BACKENDS
        else ""
    )
    return (
        f"keras {keras.__version__}, backend {keras.backend.backend()} "
        f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'unset')}){once}"
    )


def pytest_collection_modifyitems(config, items):
    if not TEST_BACKENDS:
        return
    current = keras.backend.backend()
    for item in items:
        marker = item.get_closest_marker("once")
        if marker is None:
            continue
        home = once_backend(marker)
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
    keras.utils.clear_session()
