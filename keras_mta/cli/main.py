"""The `keras-mta` command line.

Each subcommand lives in its own module of `keras_mta.cli` with an
`add_parser(subparsers)` function that registers it and sets `func`, the
function called with the parsed arguments. To add one, write the module
and list it in `SUBCOMMANDS`.
"""

import argparse
import importlib
import sys

# Subcommand name -> module of keras_mta.cli that defines `add_parser`.
SUBCOMMANDS = {
    "distill": "keras_mta.cli.distill",
    "evaluate": "keras_mta.cli.evaluate",
    "chunk": "keras_mta.cli.chunk",
    "trajectory": "keras_mta.cli.trajectory",
    "teacher-cache": "keras_mta.cli.teacher_cache",
    "plan": "keras_mta.cli.plan",
}


def build_parser():
    """The argparse parser of `keras-mta` with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="keras-mta",
        description="Multi-Granular Trajectory Alignment distillation of "
        "LLMs with Keras 3.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # A module may register several subcommands (distill, train-teacher).
    for module_name in dict.fromkeys(SUBCOMMANDS.values()):
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv=None):
    """Entry point of `keras-mta`; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        args.func(args)
    except (OSError, ValueError) as e:
        print(f"keras-mta {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
