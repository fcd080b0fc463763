"""`keras-mta evaluate PRESET`: the ROUGE-L protocol on a saved model."""

DEFAULT_SEEDS = (10, 20, 30, 40, 50)

HELP = "score a saved student or teacher preset with the ROUGE-L protocol"
DESCRIPTION = """\
The evaluation protocol of MiniLLM, DistiLLM, DSKD and MTA: for every
prompt, sample a response (temperature 1.0, top-p 1.0, at most 384 new
tokens, stop at the end token), score it with ROUGE-L F1 (rouge-score,
with the stemmer, the maximum over references, times 100); repeat for
seeds 10, 20, 30, 40, 50 and report the mean and standard deviation per
dataset.

PRESET is a keras-hub preset directory (e.g. runs/tiny-cpu/mta_student),
a keras-hub preset name, an hf:// handle or a GGUF file (gguf:NAME such
as gguf:smollm2-135m-instruct, gguf:PATH, or a path ending in .gguf),
loaded as recipes load their models. Each DATA is a JSONL path in
the Dolly, prompt/completion or self-instruct schema, or one of the names
dolly, selfinst, vicuna, sinst, uinst, looked up under
$KERAS_MTA_DATA_DIR (default data/).
"""


def add_parser(subparsers):
    """Add the `evaluate` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "evaluate", help=HELP, description=DESCRIPTION
    )
    parser.add_argument("preset", metavar="PRESET", help="model to score")
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DATA",
        help="evaluation set (path or name); repeatable",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(DEFAULT_SEEDS),
        help="sampling seeds (default: 10 20 30 40 50)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=384,
        help="most new tokens per response (default: 384)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="prompts per generate call (default: 8)",
    )
    parser.add_argument(
        "--max-examples",
        type=int,
        default=0,
        help="score at most this many prompts per set (default: all)",
    )
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="default: 1.0"
    )
    parser.add_argument("--top-p", type=float, default=1.0, help="default: 1.0")
    parser.add_argument(
        "--output",
        default=None,
        help="write the results (with the first seed's responses) as JSON",
    )
    parser.set_defaults(func=evaluate_command)
    return parser


def evaluate_command(args):
    """Run `keras-mta evaluate`; returns `{dataset: result dict}`."""
    from keras_mta.recipe import EvaluationSpec
    from keras_mta.runner import run_evaluate

    protocol = EvaluationSpec(
        seeds=list(args.seeds),
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        max_examples=args.max_examples,
        temperature=args.temperature,
        top_p=args.top_p,
    )
    return run_evaluate(args.preset, args.data, protocol, output=args.output)
