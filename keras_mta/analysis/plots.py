"""Pictures of a run: training curves and the results table.

matplotlib is an optional dependency (`pip install keras-mta[plot]`); it is
imported when a plot is drawn, with the Agg backend (no display needed).
"""

import math
import re

from keras_mta.utils import atomic_write

# Loss terms of `DistillationModel` (and their per-pair metrics `dsa_0`,
# `hra_1`, ...): drawn for a run only when it trained with them.
_TERMS = ("ce", "kd", "dsa", "hra")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "Plots need matplotlib: pip install 'keras-mta[plot]' (or "
            "pip install matplotlib)."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path):
    """Write `fig` to `path` atomically, then close it; returns `path`."""
    try:
        return atomic_write(
            path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight")
        )
    finally:
        plt.close(fig)


def _has_term(metric, terms):
    """Whether a run that trained with `terms` has the curve `metric`
    (`None`: every curve)."""
    if terms is None:
        return True
    base = re.sub(r"_\d+$", "", metric)
    return base not in _TERMS or base in terms


def plot_training_curves(histories, path, metrics=None, title=None, terms=None):
    """Draw training (and validation) curves of several runs, one panel per
    metric.

    Args:
        histories: dict run name -> `History.history` dict (metric name ->
            list of per-epoch values; `val_*` entries are drawn dashed in
            the panel of their metric).
        path: PNG file to write.
        metrics: optional list of metric names to draw (default: every
            non-`val_` metric found, in order of first appearance).
        title: optional figure title.
        terms: optional dict run name -> the loss terms it trained with
            (`ce`, `kd`, `dsa`, `hra`, e.g. from
            `keras_mta.models.variants.ABLATION_TERMS`); a run's curves of
            other terms (zeros it logged but never trained with) are not
            drawn. Runs missing from `terms` show every curve.

    Returns:
        `path`.
    """
    plt = _pyplot()
    if not histories:
        raise ValueError("plot_training_curves needs at least one history.")
    terms = terms or {}

    def drawn(name, metric):
        return metric in histories[name] and _has_term(metric, terms.get(name))

    if metrics is None:
        metrics = []
        for name, history in histories.items():
            for key in history:
                if (
                    not key.startswith("val_")
                    and key not in metrics
                    and drawn(name, key)
                ):
                    metrics.append(key)
    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for panel, metric in enumerate(metrics):
        ax = axes[panel // columns][panel % columns]
        for k, (name, history) in enumerate(histories.items()):
            color = colors[k % len(colors)]
            if not _has_term(metric, terms.get(name)):
                continue
            if metric in history:
                values = history[metric]
                ax.plot(
                    range(1, len(values) + 1),
                    values,
                    color=color,
                    label=name,
                    marker="o",
                    markersize=3,
                )
            if f"val_{metric}" in history:
                values = history[f"val_{metric}"]
                ax.plot(
                    range(1, len(values) + 1),
                    values,
                    color=color,
                    linestyle="--",
                    label=f"{name} (valid)",
                )
        ax.set_title(metric)
        _whole_epochs(ax, histories)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for panel in range(len(metrics), rows * columns):
        axes[panel // columns][panel % columns].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=min(4, len(labels)),
            bbox_to_anchor=(0.5, -0.02),
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(plt, fig, path)


def _whole_epochs(ax, histories):
    """Epoch ticks on whole numbers only (one per epoch for short runs)."""
    from matplotlib.ticker import MaxNLocator

    epochs = max(len(v) for h in histories.values() for v in h.values())
    if epochs <= 12:
        ax.set_xticks(range(1, epochs + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_results_table(rows, columns, path, title=None):
    """Draw a results table (e.g. ROUGE-L per model) as an image.

    Args:
        rows: list of dicts (one per model).
        columns: list of keys to show, in order.
        path: PNG file to write.
        title: optional title.

    Returns:
        `path`.
    """
    plt = _pyplot()
    cells = [[_format(row.get(c, "")) for c in columns] for row in rows]
    fig, ax = plt.subplots(
        figsize=(1.6 * len(columns) + 1, 0.45 * len(rows) + 1.0)
    )
    ax.axis("off")
    table = ax.table(
        cellText=cells, colLabels=columns, loc="center", cellLoc="center"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.3)
    if title:
        ax.set_title(title)
    return _save(plt, fig, path)


def plot_results_chart(results, path, title=None):
    """Draw ROUGE-L per model and evaluation set as bars with error bars
    (mean +- standard deviation over the sampling seeds).

    Args:
        results: a run's results dict (`models`, each with `model` and
            `rouge_l` `{set: {"mean", "std"}}`, and `evaluation_datasets`).
        path: PNG file to write.
        title: optional figure title.

    Returns:
        `path`.
    """
    plt = _pyplot()
    sets = list(results.get("evaluation_datasets", []))
    models = results["models"]
    if not sets or not models:
        raise ValueError(
            "plot_results_chart needs evaluation datasets and models in "
            "the results (evaluation.datasets was empty)."
        )
    width = 0.8 / len(models)
    fig, ax = plt.subplots(
        figsize=(max(4.0, 1.2 * len(sets) * len(models) + 1.5), 3.6)
    )
    for k, entry in enumerate(models):
        scores = [entry["rouge_l"].get(name) or {} for name in sets]
        ax.bar(
            [i + (k - (len(models) - 1) / 2) * width for i in range(len(sets))],
            [s.get("mean", 0.0) for s in scores],
            width,
            yerr=[s.get("std", 0.0) for s in scores],
            capsize=3,
            label=entry["model"],
        )
    ax.set_xticks(range(len(sets)))
    ax.set_xticklabels(sets)
    ax.set_ylabel("ROUGE-L (mean +- std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        ax.set_title(title)
    return _save(plt, fig, path)


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def plot_trajectory_heatmaps(table, path, title=None):
    """Heatmaps of agreement over (student layer, teacher layer).

    One panel per granularity (word, phrase) plus linear CKA; the plan's
    pairs are marked with white squares.

    Args:
        table: a `keras_mta.analysis.TrajectoryTable`.
        path: PNG file to write.
        title: optional figure title (default: the table's label).

    Returns:
        `path`.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    panels = [(f"{g} units: 1 - DSA", m) for g, m in table.agreement.items()]
    panels.append(("token states: linear CKA", table.cka))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False
    )
    for ax, (name, matrix) in zip(axes[0], panels):
        image = ax.imshow(
            matrix,
            origin="lower",
            aspect="auto",
            vmin=0.0,
            vmax=1.0,
            cmap="viridis",
        )
        for s, t in table.plan_pairs:
            ax.scatter(
                [t],
                [s],
                marker="s",
                s=80,
                facecolors="none",
                edgecolors="white",
                linewidths=1.5,
            )
        ax.set_title(name)
        # Whole-number ticks: a tick per layer index, none between them.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("teacher layer")
        ax.set_ylabel("student layer")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(title if title is not None else table.label)
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_trajectory_lines(tables, path, pairs=None, title=None):
    """Agreement along the mapped pairs, one line per checkpoint.

    Args:
        tables: list of `TrajectoryTable` (e.g. before and after
            distillation), each drawn as one line per granularity.
        path: PNG file to write.
        pairs: optional `(student, teacher)` pairs (default: the first
            table's plan pairs, or the diagonal of proportional depth).
        title: optional figure title.

    Returns:
        `path`.
    """
    plt = _pyplot()
    if not tables:
        raise ValueError("plot_trajectory_lines needs at least one table.")
    if pairs is None:
        pairs = tables[0].plan_pairs
    if not pairs:
        s_max = tables[0].student_layers[-1]
        t_max = tables[0].teacher_layers[-1]
        pairs = [
            (s, round(s * t_max / max(s_max, 1)))
            for s in tables[0].student_layers
        ]
    granularities = list(tables[0].agreement)
    fig, axes = plt.subplots(
        1,
        len(granularities),
        figsize=(4.6 * len(granularities), 3.4),
        squeeze=False,
    )
    labels = [f"S{s}/T{t}" for s, t in pairs]
    for ax, granularity in zip(axes[0], granularities):
        for table in tables:
            ax.plot(
                range(len(pairs)),
                table.pair_agreement(granularity, pairs),
                marker="o",
                label=table.label or "checkpoint",
            )
        ax.set_xticks(range(len(pairs)))
        ax.set_xticklabels(labels, rotation=30)
        ax.set_ylim(0.0, 1.02)
        ax.set_title(f"{granularity} units: 1 - DSA along depth")
        ax.set_xlabel("student / teacher layer")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(plt, fig, path)
