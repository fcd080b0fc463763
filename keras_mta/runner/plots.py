"""The pictures of a run: training curves, results table and chart, the
teacher/student trajectory."""

import os

from keras_mta.analysis.results import results_rows
from keras_mta.utils import say


def write_plots(results, histories, tables, output_dir, terms=None):
    """Training curves, the results table and chart, and the trajectory,
    as PNGs in `output_dir`; returns `{name: path}`.

    Args:
        results: the run's results dict.
        histories: `{model name: History.history}`; the later training
            seeds' (`"... seed N"`) are left out of the picture.
        tables: `TrajectoryTable`s (before / after MTA), possibly empty.
        output_dir: where the PNGs go.
        terms: optional `{model name: metric names it trained with}`; the
            curves then show only those terms for each model.

    Skipped with a message when matplotlib (the `plot` extra) is missing.
    """
    try:
        from keras_mta import analysis
    except ImportError as e:  # pragma: no cover - matplotlib is optional
        say(f"no plots ({e}); pip install 'keras-mta[plot]'")
        return {}
    paths = {}
    # The curves of the first training seed (the others are in
    # results.json): one line per model keeps the picture readable.
    histories = {
        name: history
        for name, history in histories.items()
        if " seed " not in name
    }
    try:
        if histories:
            paths["curves"] = analysis.plot_training_curves(
                histories,
                os.path.join(output_dir, "training_curves.png"),
                title=results["recipe"],
                terms=terms,
            )
        rows = results_rows(results)
        paths["table"] = analysis.plot_results_table(
            rows,
            list(rows[0]),
            os.path.join(output_dir, "results_table.png"),
            title=results["recipe"],
        )
        if results.get("evaluation_datasets"):
            paths["chart"] = analysis.plot_results_chart(
                results,
                os.path.join(output_dir, "results_chart.png"),
                title=results["recipe"],
            )
        if tables:
            paths["trajectory"] = analysis.plot_trajectory_lines(
                tables,
                os.path.join(output_dir, "trajectory.png"),
                title="teacher/student agreement along the plan's pairs",
            )
            paths["trajectory_heatmaps"] = analysis.plot_trajectory_heatmaps(
                tables[-1],
                os.path.join(output_dir, "trajectory_heatmaps.png"),
                title=f"agreement {tables[-1].label}",
            )
    except ImportError as e:  # pragma: no cover - matplotlib is optional
        say(f"no plots ({e}); pip install 'keras-mta[plot]'")
    return paths


def measure_trajectory(teacher, student, datasets, plan, label):
    """The teacher/student `TrajectoryTable` on two validation batches."""
    from keras_mta.analysis import trajectory

    say(f"trajectory {label}")
    return trajectory(
        teacher, student, datasets.valid, plan=plan, max_batches=2, label=label
    )
