"""`keras-mta evaluate PRESET`: the ROUGE-L protocol on a saved model."""

import json
import os

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
a keras-hub preset name or an hf:// handle. Each DATA is a JSONL path in
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
    import keras_hub

    from keras_mta.recipe import EvaluationSpec
    from keras_mta.runner import evaluation_sets
    from keras_mta.runner import rouge_scores

    if os.path.sep in args.preset and not os.path.isdir(args.preset):
        raise FileNotFoundError(
            f"No preset directory at {args.preset!r}: give a directory "
            "written by `save_to_preset` (e.g. runs/tiny-cpu/mta_student) "
            "or a keras-hub preset name."
        )
    model = keras_hub.models.CausalLM.from_preset(args.preset)
    protocol = EvaluationSpec(
        seeds=list(args.seeds),
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        max_examples=args.max_examples,
        temperature=args.temperature,
        top_p=args.top_p,
    )
    sets = evaluation_sets(args.data, limit=args.max_examples)
    results = rouge_scores(protocol, model, sets, args.preset)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({"preset": args.preset, "results": results}, f, indent=1)
        print(f"results: {args.output}")
    return results
