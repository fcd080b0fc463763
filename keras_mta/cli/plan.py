"""`keras-mta plan RECIPE`: what a recipe will do, without running it."""

import sys

from keras_mta.cli.distill import add_recipe_command
from keras_mta.recipe import load_recipe

HELP = (
    "print what a recipe will do (models, sizes, rates, memory); loads nothing"
)
DESCRIPTION = """\
Print the plan of a recipe's run in seconds, without loading or
downloading a model, reading data or running spaCy: teacher and student
(handle, backbone, blocks, hidden size, vocabulary, exact parameter
counts from their `architecture` tables), the student's start and LoRA
adapters, the layer pairs with their word or phrase units and the
projectors, the divergence and loss weights, the optimizer groups with
their peak learning rates, the schedule, clipping, weight decay, batch x
gradient accumulation = effective batch, epochs, precision, the data and
evaluation sets, the output directory, an estimate of the memory on one
device, and the files a run would refuse. `keras-mta distill RECIPE
--dry-run` prints the same and stops.
"""


def add_parser(subparsers):
    """Add `plan` to an argparse subparsers object."""
    return add_recipe_command(
        subparsers, "plan", HELP, DESCRIPTION, plan_command, optional=False
    )


def plan_command(args, out=None):
    """Print the plan of `args.recipe` with its `--set` overrides.

    Args:
        args: an `argparse.Namespace` with `recipe`, `overrides` and
            optionally `tiny` and `output_dir`.
        out: a text stream; defaults to `sys.stdout`.

    Returns:
        The `keras_mta.runner.run_plan.RunPlan`.
    """
    out = sys.stdout if out is None else out
    # The recipe is checked before anything is built.
    recipe = load_recipe(args.recipe, overrides=args.overrides)
    from keras_mta.runner.run_plan import plan_run

    plan = plan_run(
        recipe,
        tiny=getattr(args, "tiny", False),
        output_dir=getattr(args, "output_dir", None),
    )
    print(plan, file=out, flush=True)
    return plan
