"""`keras-mta distill [RECIPE]` and `keras-mta train-teacher RECIPE`."""

import argparse

from keras_mta.recipe import describe_fields
from keras_mta.recipe import load_recipe

DEFAULT_RECIPE = "tiny-cpu"

DISTILL_HELP = "distill a teacher into a student as a recipe describes"
DISTILL_DESCRIPTION = f"""\
Run a recipe end to end: load (or write) the data, build the tokenizer and
the models, cache the spaCy spans, optionally fine-tune the teacher, train
every student variant of `distillation.compare` (e.g. SFT, KD, MTA) from
the same start, score teacher and students with the ROUGE-L protocol, and
write results.json, results.md, plots and the MTA student's keras-hub
preset to `training.output_dir`.

With no RECIPE, runs the embedded default `{DEFAULT_RECIPE}`: offline,
on the project's own English instruction data, in minutes on a CPU.

RECIPE is a path to a .toml file or the name of a recipe in recipes/.
"""

TEACHER_HELP = "supervised fine-tuning of a recipe's teacher"
TEACHER_DESCRIPTION = """\
Fine-tune the recipe's teacher on its training data (cross-entropy on the
response tokens) for `training.teacher_epochs` epochs (or
`training.epochs` when that is 0) at `training.teacher_learning_rate`,
and save it as a keras-hub preset in `training.output_dir/teacher_preset`.
"""


def _fields_epilog():
    return "recipe fields (override any with --set FIELD=VALUE):\n" + (
        "\n".join(describe_fields())
    )


def _add_recipe_arguments(parser, optional):
    parser.add_argument(
        "recipe",
        metavar="RECIPE",
        nargs="?" if optional else None,
        default=DEFAULT_RECIPE if optional else None,
        help="recipe file or shipped recipe name"
        + (f" (default: {DEFAULT_RECIPE})" if optional else ""),
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a recipe field, e.g. --set training.epochs=1 "
        "(TOML values: 1e-4, true, [6, 9, 12]); repeatable",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="where results go (default: the recipe's training.output_dir)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="build the models from their architectures at tiny widths "
        "(a dry run of a large recipe; no preset is downloaded)",
    )


def add_recipe_command(subparsers, name, help_, description, func, optional):
    """Register a subcommand that reads a recipe (RECIPE, `--set`,
    `--output-dir`, `--tiny`, the fields in its help); returns its
    parser."""
    parser = subparsers.add_parser(
        name,
        help=help_,
        description=description,
        epilog=_fields_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_recipe_arguments(parser, optional)
    parser.set_defaults(func=func)
    return parser


def add_parser(subparsers):
    """Add `distill` and `train-teacher` to an argparse subparsers object."""
    distill = add_recipe_command(
        subparsers,
        "distill",
        DISTILL_HELP,
        DISTILL_DESCRIPTION,
        distill_command,
        optional=True,
    )
    distill.add_argument(
        "--dry-run",
        action="store_true",
        help="print the run's plan (as `keras-mta plan`) and stop: nothing "
        "is loaded, downloaded or trained",
    )
    add_recipe_command(
        subparsers,
        "train-teacher",
        TEACHER_HELP,
        TEACHER_DESCRIPTION,
        train_teacher_command,
        optional=False,
    )


def distill_command(args):
    """Run `keras-mta distill`; returns the results dict (with
    `--dry-run`, the `RunPlan` it printed)."""
    if getattr(args, "dry_run", False):
        from keras_mta.cli.plan import plan_command

        return plan_command(args)
    # The recipe is checked before the runner (and TensorFlow) is imported.
    recipe = load_recipe(args.recipe, overrides=args.overrides)
    from keras_mta.runner import run_distill

    return run_distill(
        recipe, tiny=getattr(args, "tiny", False), output_dir=args.output_dir
    )


def train_teacher_command(args):
    """Run `keras-mta train-teacher`; returns the results dict."""
    # The recipe is checked before the runner (and TensorFlow) is imported.
    recipe = load_recipe(args.recipe, overrides=args.overrides)
    from keras_mta.runner import run_train_teacher

    return run_train_teacher(
        recipe, tiny=getattr(args, "tiny", False), output_dir=args.output_dir
    )
