import pytest

from keras_mta.analysis import plot_results_table
from keras_mta.analysis import plot_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_training_curves_png(tmp_path):
    histories = {
        "kd": {
            "loss": [3.0, 2.5, 2.2],
            "val_loss": [3.1, 2.7, 2.4],
            "kd": [1.0, 0.8, 0.7],
        },
        "mta": {
            "loss": [3.2, 2.4, 2.0],
            "val_loss": [3.0, 2.6, 2.3],
            "kd": [1.1, 0.7, 0.6],
            "dsa": [0.3, 0.2, 0.1],
        },
    }
    path = plot_training_curves(histories, str(tmp_path / "c" / "curves.png"))
    data = open(path, "rb").read()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert not list((tmp_path / "c").glob("*.tmp-*"))


def test_results_table_png(tmp_path):
    rows = [
        {"model": "teacher", "rouge_l": 31.234, "params": 1234567},
        {"model": "mta", "rouge_l": 25.1, "params": 345678},
    ]
    path = plot_results_table(
        rows,
        ["model", "rouge_l", "params"],
        str(tmp_path / "table.png"),
        title="Results",
    )
    assert open(path, "rb").read().startswith(PNG_MAGIC)


def test_no_history_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="at least one history"):
        plot_training_curves({}, str(tmp_path / "x.png"))
