import pytest

from keras_mta import analysis
from keras_mta.runner.plots import write_plots


@pytest.mark.once
def test_training_curves_show_the_first_training_seed(monkeypatch, tmp_path):
    drawn = {}

    def record(name):
        def plot(*args, **kwargs):
            drawn[name] = args[0]
            return name

        return plot

    for name in ("plot_training_curves", "plot_results_table"):
        monkeypatch.setattr(analysis, name, record(name))
    histories = {
        "teacher (SFT)": {"loss": [1.0]},
        "student (KD)": {"loss": [2.0]},
        "student (KD) seed 2": {"loss": [3.0]},
    }
    results = {
        "recipe": "r",
        "models": [
            {
                "model": "teacher",
                "valid_loss": 1.0,
                "parameters": 1,
                "wall_time_s": 1.0,
                "rouge_l": {},
            }
        ],
    }
    paths = write_plots(results, histories, [], str(tmp_path))
    assert paths["curves"] == "plot_training_curves"
    assert list(drawn["plot_training_curves"]) == [
        "teacher (SFT)",
        "student (KD)",
    ]
