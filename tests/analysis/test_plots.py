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


def _figure_of(monkeypatch):
    """Capture the figure a plot function draws (before it is closed)."""
    import matplotlib.pyplot as plt

    figures = []
    close = plt.close

    def keep(fig=None):
        figures.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    return figures


def test_training_curves_draw_only_the_terms_a_run_has(tmp_path, monkeypatch):
    figures = _figure_of(monkeypatch)
    zeros = [0.0, 0.0]
    histories = {
        "teacher (SFT)": {"loss": [2.0, 1.0], "ce": [2.0, 1.0], "kd": zeros},
        "student (SFT)": {"loss": [3.0, 2.0], "kd": zeros, "dsa": zeros},
        "student (MTA)": {
            "loss": [3.0, 2.0],
            "kd": [1.0, 0.5],
            "dsa_0": [0.2, 0.1],
        },
    }
    terms = {
        "teacher (SFT)": ("ce",),
        "student (SFT)": ("ce",),
        "student (MTA)": ("ce", "kd", "dsa", "hra"),
    }
    plot_training_curves(histories, str(tmp_path / "c.png"), terms=terms)
    axes = [ax for ax in figures[0].axes if ax.get_title()]
    lines = {
        ax.get_title(): sorted(line.get_label() for line in ax.get_lines())
        for ax in axes
    }
    assert set(lines) == {"loss", "ce", "kd", "dsa_0"}
    assert lines["kd"] == ["student (MTA)"]
    assert lines["ce"] == ["teacher (SFT)"]
    assert len(lines["loss"]) == 3
    for ax in axes:
        assert [float(t) for t in ax.get_xticks()] == [1.0, 2.0]


def test_results_chart_has_error_bars(tmp_path, monkeypatch):
    from keras_mta.analysis import plot_results_chart

    figures = _figure_of(monkeypatch)
    results = {
        "evaluation_datasets": ["valid", "selfinst"],
        "models": [
            {
                "model": name,
                "rouge_l": {
                    "valid": {"mean": mean, "std": 1.5},
                    "selfinst": {"mean": mean / 2, "std": 0.5},
                },
            }
            for name, mean in (("teacher", 30.0), ("student (MTA)", 20.0))
        ],
    }
    path = plot_results_chart(results, str(tmp_path / "chart.png"))
    assert open(path, "rb").read().startswith(PNG_MAGIC)
    (ax,) = figures[0].axes
    assert len(ax.containers) == 4  # two bar groups + their error bars
    with pytest.raises(ValueError, match="evaluation datasets"):
        plot_results_chart(
            {"evaluation_datasets": [], "models": []}, str(tmp_path / "x.png")
        )


def test_trajectory_heatmaps_have_whole_number_layer_ticks(
    tmp_path, monkeypatch
):
    import numpy as np

    from keras_mta.analysis import TrajectoryTable
    from keras_mta.analysis import plot_trajectory_heatmaps

    figures = _figure_of(monkeypatch)
    table = TrajectoryTable(
        agreement={"word": np.full((3, 5), 0.5)},
        cka=np.full((3, 5), 0.5),
        teacher_layers=list(range(5)),
        student_layers=list(range(3)),
        plan_pairs=[(1, 2), (2, 4)],
        label="after",
    )
    plot_trajectory_heatmaps(table, str(tmp_path / "h.png"))
    for ax in figures[0].axes:
        if ax.get_ylabel() == "student layer":
            ticks = list(ax.get_yticks()) + list(ax.get_xticks())
            assert all(float(t).is_integer() for t in ticks), ticks
