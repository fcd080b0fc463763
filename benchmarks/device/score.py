"""Score what the GPU kit brought back: ROUGE-L and paired differences.

Reads `distill.json` and `generations.npz` (from the device's `$OUT`) and,
from the prepared data folder here, the tokenizer, the validation prompts'
lengths and the reference responses. Each generation is cut after its
prompt and at its first end token, detokenized with the kit's
SentencePiece tokenizer, and scored with `keras_mta.evaluation.rouge_l`
(greedy decoding, one reference). Prints, per variant, the mean over seeds
of ROUGE-L and validation loss, then the paired differences KD - SFT and
MTA - KD (same seed, same start, same batches) with a 95% t interval and
whether it excludes zero, and the per-seed figures. `--output` writes the
table and the figures as JSON (for BENCHMARKS.md / RESULTS.md).

    python benchmarks/device/score.py --results /work/.device/... \\
        --data runs/device_kit
"""

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PAIRS = (("kd", "sft"), ("mta", "kd"))


def paired_interval(differences):
    """The `PairedDifference` (`keras_mta.analysis.paired_differences`)
    of per-seed differences `a - b`: mean, 95% Student-t interval (`low`
    and `high` are None with one pair) and `verdict` in words, as the
    default run's table gives them."""
    from keras_mta.analysis.paired_differences import paired_difference

    if not differences:
        raise ValueError("No paired differences: no seed ran both variants.")
    return paired_difference(differences, [0.0] * len(differences))


def response_ids(sequence, prompt_length, end_token_id, pad_token_id=0):
    """The generated ids of one full sequence: after the prompt, up to the
    first end (or padding) token."""
    out = []
    for token in list(sequence)[prompt_length:]:
        token = int(token)
        if token in (end_token_id, pad_token_id):
            break
        out.append(token)
    return out


def rouge_of(tokenizer, sequences, prompt_lengths, references, meta):
    from keras_mta.evaluation.rouge import rouge_l

    scores = []
    for seq, length, reference in zip(sequences, prompt_lengths, references):
        ids = response_ids(
            seq, int(length), meta["end_token_id"], meta["pad_token_id"]
        )
        text = tokenizer.detokenize([ids]) if ids else [""]
        text = text[0]
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        scores.append(rouge_l(str(text), reference))
    return sum(scores) / len(scores)


def cell(values, digits=2):
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.{digits}f} +- {sd:.{digits}f}"


def score(results_dir, data_dir):
    import keras_hub
    import numpy as np

    results_dir, data_dir = Path(results_dir), Path(data_dir)
    report = json.loads((results_dir / "distill.json").read_text())
    meta = json.loads((data_dir / "meta.json").read_text())
    references = json.loads((data_dir / "references.json").read_text())
    with np.load(data_dir / "valid.npz") as f:
        prompt_lengths = f["prompt_mask"].sum(axis=1)
    tokenizer = keras_hub.models.LlamaTokenizer(
        proto=str(data_dir / "tokenizer.model")
    )
    with np.load(results_dir / "generations.npz") as f:
        generations = {k: f[k] for k in f.files}
    rouge = {
        key: rouge_of(tokenizer, ids, prompt_lengths, references, meta)
        for key, ids in generations.items()
    }
    runs = {}
    for run in report["runs"]:
        key = f"{run['variant']}_s{run['seed']}"
        runs[(run["variant"], run["seed"])] = {
            "valid_loss": run["final_valid_loss"],
            "rouge_l": rouge.get(key, math.nan),
        }
    return report, rouge, runs


def table(report, rouge, runs):
    lines = []
    teacher = report.get("teacher") or {}
    lines.append(
        f"teacher: {teacher.get('steps')} steps, valid loss "
        f"{teacher.get('final_valid_loss', math.nan):.4f}, ROUGE-L "
        f"{rouge.get('teacher', math.nan):.2f}"
    )
    lines.append("| variant | seeds | ROUGE-L | valid loss |")
    lines.append("| --- | ---: | ---: | ---: |")
    variants = report["variants"]
    for v in variants:
        seeds = sorted(s for (w, s) in runs if w == v)
        lines.append(
            f"| {v} | {len(seeds)} | "
            f"{cell([runs[(v, s)]['rouge_l'] for s in seeds])} | "
            f"{cell([runs[(v, s)]['valid_loss'] for s in seeds], 4)} |"
        )
    lines.append("")
    lines.append("| difference | metric | pairs | mean | 95% interval | |")
    lines.append("| --- | --- | ---: | ---: | --- | --- |")
    differences = {}
    for a, b in PAIRS:
        if a not in variants or b not in variants:
            continue
        seeds = sorted(s for (w, s) in runs if w == a and (b, s) in runs)
        for metric in ("rouge_l", "valid_loss"):
            diffs = [runs[(a, s)][metric] - runs[(b, s)][metric] for s in seeds]
            if not diffs:
                continue
            difference = paired_interval(diffs)
            differences[f"{a}-{b}:{metric}"] = {
                "per_seed": diffs,
                **difference.to_dict(),
            }
            interval = (
                "-"
                if difference.low is None
                else f"[{difference.low:+.3f}, {difference.high:+.3f}]"
            )
            lines.append(
                f"| {a.upper()} - {b.upper()} | {metric} | {len(diffs)} | "
                f"{difference.mean:+.3f} | {interval} | "
                f"{difference.verdict} |"
            )
    lines.append("")
    lines.append("per seed (ROUGE-L / valid loss):")
    for (v, s), r in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(
            f"  seed {s} {v}: {r['rouge_l']:.2f} / {r['valid_loss']:.4f}"
        )
    return "\n".join(lines), differences


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="the kit's $OUT")
    parser.add_argument("--data", default="runs/device_kit")
    parser.add_argument("--output", default=None, help="JSON to write")
    args = parser.parse_args(argv)
    report, rouge, runs = score(args.results, args.data)
    text, differences = table(report, rouge, runs)
    print(text)
    if args.output:
        Path(args.output).write_text(
            json.dumps(
                {
                    "rouge_l": rouge,
                    "differences": differences,
                    "table": text,
                    "backend": report.get("backend"),
                    "device": report.get("device"),
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
