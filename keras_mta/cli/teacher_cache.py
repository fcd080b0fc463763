"""`keras-mta teacher-cache RECIPE`: run the teacher once, store its signals."""

from keras_mta.cli.distill import add_recipe_command
from keras_mta.recipe import load_recipe

HELP = "run a recipe's teacher once and store its signals for distillation"
DESCRIPTION = """\
Run the recipe's teacher once over its training and validation data and
store, per example and position: the hidden states of the plan's teacher
layers (distillation.teacher_cache_dtype, bfloat16 by default), the
teacher's token importance at those layers, its distillation.top_k most
likely next tokens (log-probabilities at distillation.temperature, and
ids) with the log of the remaining probability mass, and its entropy
weights.

The caches go to distillation.teacher_cache (default: teacher_cache/ in
the output directory), one directory per key (a hash of the teacher's
weights, the token ids, the plan's teacher layers and the settings). Their
size is printed before anything is written; chunks are written atomically,
and an interrupted run resumes where it stopped. `keras-mta distill` with
the same recipe and distillation.teacher_cache set trains the students
from these caches, without running the teacher at every step.
"""


def add_parser(subparsers):
    """Add `teacher-cache` to an argparse subparsers object."""
    return add_recipe_command(
        subparsers,
        "teacher-cache",
        HELP,
        DESCRIPTION,
        teacher_cache_command,
        optional=False,
    )


def teacher_cache_command(args):
    """Run `keras-mta teacher-cache`; returns `{split: TeacherCache}`."""
    from keras_mta.runner import run_teacher_cache

    recipe = load_recipe(args.recipe, overrides=args.overrides)
    return run_teacher_cache(
        recipe, tiny=getattr(args, "tiny", False), output_dir=args.output_dir
    )
