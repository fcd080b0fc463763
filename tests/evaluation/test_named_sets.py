import pytest

from keras_mta.evaluation.datasets import EVALUATION_DATASETS
from keras_mta.evaluation.datasets import resolve_evaluation_dataset

# Backend-independent (paths and messages only).
pytestmark = pytest.mark.once


@pytest.mark.parametrize("name", sorted(EVALUATION_DATASETS))
def test_a_missing_named_set_says_where_to_get_it(name, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        resolve_evaluation_dataset(name, data_dir=str(tmp_path))
    message = str(e.value)
    assert str(tmp_path / EVALUATION_DATASETS[name]) in message
    assert "https://github.com/" in message
    assert "KERAS_MTA_DATA_DIR" in message
