"""`keras-mta trajectory`: per-layer teacher/student agreement of presets."""

import os

HELP = "measure and draw the per-layer teacher/student alignment of presets"
DESCRIPTION = """\
For every student layer and every teacher layer, the agreement of their
unit geometry (1 - DSA) at word and at phrase granularity, and the linear
CKA of their token states, measured on examples of DATA. Writes one JSON
table per student, heatmaps of the last student, and a line chart of the
agreement along the plan's pairs with one line per student (e.g. the
student before and after distillation).

TEACHER and each STUDENT are keras-hub preset directories, preset names
or hf:// handles sharing one tokenizer; DATA is a JSONL file in a
supported schema.
"""


def add_parser(subparsers):
    """Add the `trajectory` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "trajectory", help=HELP, description=DESCRIPTION
    )
    parser.add_argument("--teacher", required=True, help="teacher preset")
    parser.add_argument(
        "--student",
        action="append",
        required=True,
        help="student preset; repeat for several checkpoints (one line "
        "each in the plot), labelled by their directory names",
    )
    parser.add_argument("--data", required=True, help="a JSONL data file")
    parser.add_argument(
        "--teacher-layers",
        type=int,
        nargs="+",
        default=None,
        help="the plan's teacher indices, marked in the plots",
    )
    parser.add_argument(
        "--student-layers",
        type=int,
        nargs="+",
        default=None,
        help="the plan's student indices, one per teacher index",
    )
    parser.add_argument("--word-pairs", type=int, default=1, help="default: 1")
    parser.add_argument(
        "--max-examples",
        type=int,
        default=64,
        help="examples measured (default: 64)",
    )
    parser.add_argument(
        "--sequence-length", type=int, default=256, help="default: 256"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="default: 8")
    parser.add_argument(
        "--output-dir",
        default="runs/trajectory",
        help="where tables and plots go (default: runs/trajectory)",
    )
    parser.set_defaults(func=trajectory_command)
    return parser


def trajectory_command(args):
    """Run `keras-mta trajectory`; returns the `TrajectoryTable`s."""
    import keras_hub

    from keras_mta import analysis
    from keras_mta.data import load_examples
    from keras_mta.models import AlignmentPlan
    from keras_mta.preprocessing import DistillationPreprocessor
    from keras_mta.preprocessing import SpanCache

    if bool(args.teacher_layers) != bool(args.student_layers):
        raise ValueError(
            "Give both --teacher-layers and --student-layers (or neither)."
        )
    plan = None
    if args.teacher_layers:
        plan = AlignmentPlan(
            args.teacher_layers,
            args.student_layers,
            word_pairs=args.word_pairs,
        )
    teacher = keras_hub.models.CausalLM.from_preset(args.teacher)
    examples, report = load_examples(args.data, limit=args.max_examples)
    print(report, flush=True)
    os.makedirs(args.output_dir, exist_ok=True)
    tables = []
    for preset in args.student:
        student = keras_hub.models.CausalLM.from_preset(preset)
        preprocessor = DistillationPreprocessor(
            student.preprocessor,
            chunker=SpanCache(),
            sequence_length=args.sequence_length,
        )
        dataset = preprocessor.prepare_dataset(
            examples, batch_size=args.batch_size
        )
        label = os.path.basename(os.path.normpath(preset))
        table = analysis.trajectory(
            teacher, student, dataset, plan=plan, label=label
        )
        path = os.path.join(args.output_dir, f"trajectory_{label}.json")
        table.save(path)
        print(f"{label}: {path}", flush=True)
        tables.append(table)
    print(
        analysis.plot_trajectory_heatmaps(
            tables[-1],
            os.path.join(args.output_dir, "trajectory_heatmaps.png"),
        )
    )
    print(
        analysis.plot_trajectory_lines(
            tables, os.path.join(args.output_dir, "trajectory.png")
        )
    )
    return tables
