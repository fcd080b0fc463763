"""The results of a run as a table: rows per model, Markdown, and the
`results.json` / `results.md` files."""

import json
import os

from keras_mta.utils import atomic_write


def results_rows(results):
    """Table rows (dicts) of a results dict, one per model."""
    rows = []
    datasets = results.get("evaluation_datasets", [])
    for entry in results["models"]:
        row = {"model": entry["model"]}
        for name in datasets:
            score = entry["rouge_l"].get(name)
            row[f"ROUGE-L {name}"] = (
                "-"
                if score is None
                else f"{score['mean']:.2f} +- {score['std']:.2f}"
            )
        greedy = entry.get("rouge_l_greedy")
        if greedy is not None:
            for name in datasets:
                score = greedy.get(name)
                row[f"greedy ROUGE-L {name}"] = (
                    "-" if score is None else f"{score:.2f}"
                )
        row["valid loss"] = f"{entry['valid_loss']:.4f}"
        row["parameters"] = f"{entry['parameters']:,}"
        row["wall time (s)"] = f"{entry['wall_time_s']:.1f}"
        rows.append(row)
    return rows


def paired_rows(results):
    """Table rows of a run's `paired_differences` (KD - SFT, MTA - KD):
    mean paired difference over the training seeds, its interval and the
    verdict in words. Lower validation loss is better; higher ROUGE-L."""
    rows = []
    for row in results.get("paired_differences", []):
        level = f"{100 * row['confidence']:g}%"
        interval = (
            "-"
            if row["low"] is None
            else f"[{row['low']:+.4f}, {row['high']:+.4f}]"
        )
        rows.append(
            {
                "difference": row["comparison"],
                "metric": row["metric"],
                "mean (paired)": f"{row['mean']:+.4f}",
                f"{level} interval": interval,
                "seeds": row["n"],
                "verdict": row["verdict"],
            }
        )
    return rows


def format_table(rows):
    """A Markdown table of `rows` (list of dicts with the same keys)."""
    if not rows:
        return ""
    columns = list(rows[0])
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def _paired_section(results):
    """The Markdown lines of the paired differences (none without)."""
    rows = paired_rows(results)
    if not rows:
        return []
    seeds = results.get("training_seeds", [])
    return [
        f"Paired differences over the training seeds {seeds} (each variant "
        "of a seed from the same start and data order; Student-t "
        "interval, n - 1 degrees of freedom):",
        "",
        format_table(rows),
        "",
    ]


def write_results(results, output_dir):
    """`results.json` and `results.md` of a run; returns their paths."""
    json_path = os.path.join(output_dir, "results.json")
    atomic_write(json_path, json.dumps(results, indent=1, default=str))
    lines = [
        f"# {results['recipe']}",
        "",
        results.get("description", ""),
        "",
        format_table(results_rows(results)),
        "",
        *_paired_section(results),
        f"Backend: {results['backend']}. Total wall time: "
        f"{results['wall_time_s']:.0f} s.",
    ]
    md_path = os.path.join(output_dir, "results.md")
    atomic_write(md_path, "\n".join(lines) + "\n")
    return json_path, md_path
