"""Can the teacher cache feed training? Examples per second read vs consumed.

Streams a teacher cache through `TeacherCache.dataset` (chunks read from
disk in parallel, bfloat16 decoded, merged with the student's inputs,
shuffled and batched) as fast as it goes, for a few epochs, and compares
the rate with the examples per second a training run consumes (from the
`results.json` of `benchmarks/fidelity.py`, which trained from the same
cache).

    python benchmarks/teacher_cache_stream.py            # the fidelity cache
    python benchmarks/teacher_cache_stream.py --cache DIR --epochs 3

Prints a table and writes `runs/benchmarks/teacher_cache_stream.json`.
"""

import argparse
import glob
import json
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIDELITY = REPO / "runs" / "fidelity"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache",
        default=None,
        help="a teacher cache directory (default: the training cache of "
        "runs/fidelity)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--results",
        default=str(FIDELITY / "results.json"),
        help="fidelity results.json with the training rate",
    )
    parser.add_argument(
        "--output",
        default=str(REPO / "runs" / "benchmarks" / "teacher_cache_stream.json"),
    )
    return parser.parse_args(argv)


def _default_cache():
    found = sorted(glob.glob(str(FIDELITY / "teacher_cache" / "*")))
    if not found:
        raise SystemExit(
            "No teacher cache under runs/fidelity/teacher_cache: run "
            "benchmarks/fidelity.py first, or pass --cache."
        )
    return found[0]


def consumed_rate(results_path, batch_size):
    """Training examples per second of the fidelity runs, by variant."""
    if not os.path.exists(results_path):
        return {}
    results = json.loads(Path(results_path).read_text())
    by_variant = {}
    for run in results["runs"]:
        rate = run["steps"] * batch_size / run["train_seconds"]
        by_variant.setdefault(run["variant"], []).append(rate)
    return {v: statistics.median(r) for v, r in by_variant.items()}


def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    from keras_mta import TeacherCache

    cache = TeacherCache(args.cache or _default_cache())
    length = cache.metadata["sequence_length"]
    n = cache.num_examples
    # Student inputs of the same shapes as a real run's.
    x = {
        "token_ids": np.zeros((n, length), "int32"),
        "padding_mask": np.ones((n, length), "int32"),
        "word_units": np.zeros((n, 64, 2), "int32"),
        "phrase_units": np.zeros((n, 32, 2), "int32"),
    }
    y = np.zeros((n, length), "int32")
    weights = np.ones((n, length), "float32")
    dataset = cache.dataset((x, y, weights), batch_size=args.batch_size, seed=0)
    rates = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        count = 0
        for features, _, _ in dataset:
            count += int(features["token_ids"].shape[0])
        seconds = time.perf_counter() - start
        rates.append(count / seconds)
        print(f"epoch {epoch + 1}: {count} examples in {seconds:.2f} s")
    read = statistics.median(rates)
    consumed = consumed_rate(args.results, args.batch_size)
    out = {
        "cache": cache.directory,
        "examples": n,
        "example_bytes": cache.example_nbytes,
        "batch_size": args.batch_size,
        "read_examples_per_s": rates,
        "read_median": read,
        "consumed_examples_per_s": consumed,
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=1))
    print()
    print("| stream | examples/s | read / consumed |")
    print("|---|---|---|")
    print(f"| cache read (median of {args.epochs} epochs) | {read:.0f} | |")
    for variant, rate in consumed.items():
        print(
            f"| training consumes ({variant}) | {rate:.2f} | "
            f"{read / rate:.0f}x |"
        )
    return out


if __name__ == "__main__":
    main()
