"""Can the span path starve training? Input texts/s against training.

Measured here, on the first `--num-examples` formatted texts of `t0_mix`:

- chunking into a fresh span cache (`build_span_cache`, spaCy,
  `n_process=1`; the pipeline load is not counted);
- reading the complete cache back (a fresh `SpanCache`, no chunking);
- `DistillationPreprocessor` with the cache: tokenization with character
  offsets and the mapping of spans to token units (`SpanMasker`), eager,
  batches of 64, sequence 256, SentencePiece vocabulary of 8,000.

Read from earlier runs: the chunking figures of `benchmarks/chunking.py`
(`runs/benchmarks/chunking.json`, 1,500 texts) and the training examples/s
(`batch / median step`) of `benchmarks/step_time.py`
(`runs/benchmarks/step_time_*.json`).

    python benchmarks/span_path.py

Prints a table, writes JSON (`--output`) and, with matplotlib installed, a
bar chart next to it (`.png`).
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_utils  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(bench_utils.DEFAULT_DATA))
    parser.add_argument("--num-examples", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--chunking-json",
        default=str(bench_utils.OUTPUT_DIR / "chunking.json"),
    )
    parser.add_argument(
        "--step-time-json",
        default=str(bench_utils.OUTPUT_DIR / "step_time_*.json"),
        help="glob of step_time.py outputs",
    )
    parser.add_argument(
        "--output", default=str(bench_utils.OUTPUT_DIR / "span_path.json")
    )
    args = parser.parse_args(argv)

    import keras_hub

    from keras_mta.data import load_examples
    from keras_mta.preprocessing import DistillationPreprocessor
    from keras_mta.preprocessing import PhraseChunker
    from keras_mta.preprocessing import SpanCache

    machine = bench_utils.machine_info()
    examples, _ = load_examples(args.data, limit=args.num_examples)
    texts = [e.text for e in examples]
    n = len(texts)
    rows = []
    figures = {}

    def add(path, seconds, count, source, load):
        rate = count / seconds
        figures[path] = {"seconds": seconds, "count": count, "per_s": rate}
        rows.append([path, f"{rate:,.1f}", source, f"{load:.1f}"])

    # Chunking into a fresh cache, then a cold read of it.
    chunker = PhraseChunker(n_process=1)
    chunker.nlp  # noqa: B018 (load the pipeline outside the timing)
    with tempfile.TemporaryDirectory() as tmp:
        cache = SpanCache(tmp, chunker=chunker)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        cache.get_or_compute(texts)
        add(
            f"chunk (spaCy, 1 process) into a new cache, {n} texts",
            time.perf_counter() - start,
            n,
            "this run",
            load,
        )
        fresh = SpanCache(tmp, chunker={"n_process": 1})
        load = os.getloadavg()[0]
        start = time.perf_counter()
        fresh.get_or_compute(texts)
        add(
            f"cached read, {n} texts",
            time.perf_counter() - start,
            n,
            "this run",
            load,
        )

        # Tokens and units from cached spans.
        tokenizer = bench_utils._tokenizer(texts, 8000, bench_utils.OUTPUT_DIR)
        preprocessor = DistillationPreprocessor(
            keras_hub.models.LlamaCausalLMPreprocessor(
                tokenizer, sequence_length=args.seq_len
            ),
            max_word_units=152,
            max_phrase_units=96,
            chunker=fresh,
            sequence_length=args.seq_len,
        )
        first = examples[: args.batch_size]
        preprocessor(  # trace once
            {
                "prompt": [e.prompt for e in first],
                "response": [e.response for e in first],
            }
        )
        load = os.getloadavg()[0]
        start = time.perf_counter()
        for i in range(0, n, args.batch_size):
            part = examples[i : i + args.batch_size]
            preprocessor(
                {
                    "prompt": [e.prompt for e in part],
                    "response": [e.response for e in part],
                }
            )
        add(
            "DistillationPreprocessor (tokens + units, cached spans), "
            f"seq {args.seq_len}",
            time.perf_counter() - start,
            n,
            "this run",
            load,
        )

    if os.path.exists(args.chunking_json):
        with open(args.chunking_json) as f:
            chunking = json.load(f)
        for path, result in _chunking_rows(chunking):
            add(
                path,
                result["seconds"],
                result["count"],
                "chunking.py",
                result["load"],
            )

    for path in sorted(glob.glob(args.step_time_json)):
        with open(path) as f:
            report = json.load(f)
        for backend, by_variant in report.get("results", {}).items():
            by_variant = bench_utils.by_variant_name(by_variant)
            for variant in ("kd", "mta"):
                r = by_variant.get(variant, {})
                if "median_s" not in r:
                    continue
                batch = r["config"]["batch_size"]
                add(
                    f"training step, {backend}, "
                    f"{bench_utils.VARIANT_LABELS[variant]}, mid config",
                    r["median_s"],
                    batch,
                    os.path.basename(path),
                    r["load_avg_start"],
                )

    text = bench_utils.fmt_table(
        ["path", "texts (examples) / s", "source", "load avg"],
        rows,
        ["l", "r", "l", "r"],
    )
    bench_utils.write_json(
        args.output,
        {
            "command": "python benchmarks/span_path.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine,
            "figures": figures,
            "table": text,
        },
    )
    _plot(figures, Path(args.output).with_suffix(".png"))
    print(text)


def _chunking_rows(chunking):
    """`(label, {seconds, count, load})` of a chunking.py JSON."""
    out = []
    for run in chunking.get("results", []):
        try:
            seconds = float(run["seconds"])
            count = int(chunking["texts"])
        except (KeyError, TypeError, ValueError):
            continue
        out.append(
            (
                f"{run.get('path', '?')}, {count} texts",
                {
                    "seconds": seconds,
                    "count": count,
                    "load": float(run.get("load_average_1min", 0.0)),
                },
            )
        )
    return out


def _plot(figures, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    labels = list(figures)
    rates = [figures[k]["per_s"] for k in labels]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(labels) + 1.2))
    ax.barh(range(len(labels)), rates, color="tab:blue")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels([label[:70] for label in labels], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("texts or training examples per second (log)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
