import os

import keras
import numpy as np
import pytest


def pytest_report_header(config):
    return (
        f"keras {keras.__version__}, backend {keras.backend.backend()} "
        f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'unset')})"
    )


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _reset_keras_state():
    yield
    keras.config.set_dtype_policy("float32")
    keras.utils.clear_session()
