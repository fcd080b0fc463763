"""Does MTA beat plain KD with a real teacher? One command, on a CPU.

The SmolLM2-135M-Instruct teacher (GGUF, offline) runs once over the
training data and its signals are cached (`keras_mta.build_teacher_cache`);
then one student architecture from one initialisation (the recipe's
10-block Llama3 student, copied from a subset of the teacher's blocks) is
trained for the same number of steps as

    SFT only, KD only, KD + HRA, KD + DSA, full MTA

with three seeds each, from the cache (no teacher in memory), and scored
with the ROUGE-L protocol on held-out T0 rows and on SelfInst. Writes
`OUTPUT/results.json`, `OUTPUT/results.md` (the table) and
`OUTPUT/fidelity.png`; every finished run is kept in `OUTPUT/runs/`, so an
interrupted experiment resumes where it stopped.

    python benchmarks/fidelity.py                      # the experiment
    python benchmarks/fidelity.py --recipe recipes/tiny-cpu.toml --tiny-run
                                                        # seconds, for tests
    python benchmarks/fidelity.py --variants kd,mta --mta-weight 8 \
        --output runs/fidelity_w8 --cache-dir runs/fidelity/teacher_cache
                                                        # an ablation

What a seed changes: the order of the training examples, the HRA
projectors' initialisation and the sampling of the evaluation responses
(the student's initialisation is the same for every run). See RESULTS.md.
"""

import argparse
import dataclasses
import gc
import json
import statistics
import sys
import time
import types
from pathlib import Path

from keras_mta.models.variants import VARIANTS
from keras_mta.models.variants import variant_name
from keras_mta.utils import atomic_write

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_RECIPE = REPO / "recipes" / "smollm2-135m-instruct-to-llama-small.toml"
# The variants the experiment compares by default (names, labels and
# ablations: `keras_mta.models.variants.VARIANTS`).
COMPARED = ("sft", "kd", "kd_hra", "kd_dsa", "mta")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--output", default=str(REPO / "runs" / "fidelity"))
    parser.add_argument("--variants", default=",".join(COMPARED))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--max-prompt-length", type=int, default=96)
    parser.add_argument(
        "--train-examples",
        type=int,
        default=400,
        help="examples cached and trained on (steps x batch size = one "
        "epoch by default).",
    )
    parser.add_argument(
        "--valid-examples",
        type=int,
        default=48,
        help="held-out T0 rows for the validation loss.",
    )
    parser.add_argument(
        "--eval-prompts",
        type=int,
        default=16,
        help="prompts per evaluation set for ROUGE-L.",
    )
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument(
        "--mta-weight",
        type=float,
        default=None,
        help="ablation: the MTA weight (default: the recipe's)",
    )
    parser.add_argument(
        "--word-pairs",
        type=int,
        default=None,
        help="ablation: the word/phrase switch point (default: the "
        "recipe's plan.word_pairs)",
    )
    parser.add_argument(
        "--pairs",
        default=None,
        help="ablation: train with only these of the recipe plan's layer "
        "pairs (0-based positions, comma-separated; e.g. 2 = the top pair). "
        "The teacher cache keeps all of them, so it is reused. Word units "
        "stay at the kept pairs that were word pairs unless --word-pairs "
        "says otherwise (default: all pairs)",
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="teacher caches (default: OUTPUT/teacher_cache); point "
        "ablation runs with another --output at the main run's caches",
    )
    parser.add_argument("--cache-dtype", default="bfloat16")
    parser.add_argument(
        "--train",
        default=None,
        help="training JSONL (Dolly schema) instead of the recipe's data "
        "(default: the development setup's T0 mix with the default "
        "recipe, else the recipe's data)",
    )
    parser.add_argument(
        "--valid",
        default=None,
        help="validation JSONL (Dolly schema), with --train",
    )
    parser.add_argument(
        "--selfinst",
        default=str(SHARED / "selfinst" / "user_oriented_instructions.jsonl"),
    )
    parser.add_argument(
        "--tiny-run",
        action="store_true",
        help="a few steps on a few examples: checks the machinery in "
        "seconds (with the small models of recipes/tiny-cpu.toml).",
    )
    args = parser.parse_args(argv)
    if args.train is None and Path(args.recipe) == DEFAULT_RECIPE:
        args.train = str(SHARED / "t0_mix" / "train.jsonl")
        args.valid = args.valid or str(SHARED / "t0_mix" / "valid.jsonl")
    if bool(args.train) != bool(args.valid):
        parser.error("--train and --valid go together")
    try:
        args.variants = [variant_name(v) for v in args.variants.split(",") if v]
    except ValueError as e:
        parser.error(str(e))
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.pairs is not None:
        try:
            args.pairs = sorted({int(p) for p in args.pairs.split(",") if p})
        except ValueError:
            parser.error(
                f"--pairs takes 0-based positions like 1,2; got {args.pairs!r}"
            )
        if not args.pairs:
            parser.error("--pairs needs at least one position")
    if args.tiny_run:
        # Seconds, not hours: the machinery, not the result.
        args.steps, args.log_every, args.warmup_steps = 2, 1, 0
        args.train_examples, args.valid_examples = 8, 4
        args.eval_prompts, args.max_new_tokens = 2, 4
        args.batch_size, args.sequence_length = 4, 64
        args.max_prompt_length = 48
    return args


def say(message):
    print(f"[fidelity] {message}", flush=True)


def _subsample(examples, count, seed):
    import numpy as np

    if not count or count >= len(examples):
        return list(examples)
    order = np.random.default_rng(seed).permutation(len(examples))[:count]
    return [examples[i] for i in sorted(order)]


def _recipe(args):
    from keras_mta import load_recipe

    recipe = load_recipe(args.recipe)
    data = recipe.data
    if args.train:
        # The study's own data (the development setup's T0 mix with the
        # default recipe), whatever the recipe reads.
        data = dataclasses.replace(
            data,
            train=args.train,
            valid=args.valid,
            holdout_valid=0,
            holdout_test=0,
        )
    data = dataclasses.replace(
        data,
        sequence_length=args.sequence_length,
        max_prompt_length=args.max_prompt_length,
        max_examples=0,
    )
    training = dataclasses.replace(
        recipe.training,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        teacher_epochs=0,
    )
    distillation = recipe.distillation
    if args.mta_weight is not None:
        distillation = dataclasses.replace(
            distillation, mta_weight=args.mta_weight
        )
    plan = recipe.plan
    if args.word_pairs is not None:
        plan = dataclasses.replace(plan, word_pairs=args.word_pairs)
    evaluation = dataclasses.replace(
        recipe.evaluation,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    return dataclasses.replace(
        recipe,
        data=data,
        training=training,
        evaluation=evaluation,
        distillation=distillation,
        plan=plan,
    )


def ablated_plan(plan, pairs, word_pairs=None):
    """The plan that trains with only the pairs at positions `pairs` of
    `plan` (the teacher cache of `plan` serves it)."""
    if pairs is None:
        return plan
    bad = [p for p in pairs if not 0 <= p < plan.num_pairs]
    if bad:
        raise SystemExit(
            f"--pairs {bad}: the plan has {plan.num_pairs} pairs "
            f"(positions 0 to {plan.num_pairs - 1}): {plan}"
        )
    if word_pairs is None:
        word_pairs = sum(p < plan.word_pairs for p in pairs)
    return plan.replace(
        teacher_layers=[plan.teacher_layers[p] for p in pairs],
        student_layers=[plan.student_layers[p] for p in pairs],
        word_pairs=word_pairs,
    )


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def _seed(seed):
    """Seed Python, NumPy (and torch): Keras initializers draw their
    default seeds from Python's `random`. Not `keras.utils.set_random_seed`:
    its `tf.random.set_seed` would destroy the tokenizer resources that
    generation uses (see `DistillationPreprocessor.prepare_dataset`)."""
    import random

    import keras
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def _history_callback():
    import keras

    class Every(keras.callbacks.Callback):
        """Per-step training losses (the curve of the plot)."""

        def on_train_begin(self, logs=None):
            self.steps = []

        def on_train_batch_end(self, batch, logs=None):
            self.steps.append({k: float(v) for k, v in (logs or {}).items()})

    return Every()


def run_one(args, variant, seed, cache, student, initial, plan, datasets, sets):
    """Train and score one (variant, seed); returns the run's dict."""

    from keras_mta import CachedTeacher
    from keras_mta import runner

    recipe = args.recipe_obj
    label = VARIANTS[variant_name(variant)].label
    student.set_weights(initial)
    _seed(seed)
    model = runner.build_variant_model(
        recipe,
        variant,
        None if variant == "sft" else CachedTeacher.from_cache(cache),
        student,
        plan,
        args.steps,
    )
    x, y, sample_weight = datasets.train_arrays
    train = cache.dataset(
        (x, y, sample_weight),
        batch_size=args.batch_size,
        seed=seed,
        drop_remainder=True,
    ).repeat()
    curve = _history_callback()
    epochs = max(1, args.steps // args.log_every)
    say(f"{label}, seed {seed}: {args.steps} steps")
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=epochs,
        steps_per_epoch=args.steps // epochs,
        callbacks=[curve],
        shuffle=False,  # the cache's stream is shuffled already
        verbose=2,
    )
    train_seconds = time.perf_counter() - start
    valid_loss = runner.validation_loss(student, datasets.valid)
    ev = dataclasses.replace(recipe.evaluation, seeds=[100 + seed])
    start = time.perf_counter()
    rouge = runner.rouge_scores(ev, student, sets, f"{label} seed {seed}")
    eval_seconds = time.perf_counter() - start
    del model
    gc.collect()
    return {
        "variant": variant,
        "label": label,
        "seed": seed,
        "steps": args.steps,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "valid_loss": valid_loss,
        "rouge_l": {name: r["mean"] for name, r in rouge.items()},
        "history": history.history,
        "step_losses": [s.get("loss") for s in curve.steps],
        "predictions": {
            name: r.get("predictions", [])[:5] for name, r in rouge.items()
        },
    }


def summarize(runs, teacher, set_names, teacher_name):
    """Rows of the results table: teacher, then each variant's mean/std."""
    rows = [
        {
            "model": f"teacher ({teacher_name})",
            "runs": 1,
            "valid_loss": (teacher["valid_loss"], None),
            **{name: (teacher["rouge_l"][name], None) for name in set_names},
        }
    ]
    by_variant = {}
    for run in runs:
        by_variant.setdefault(run["variant"], []).append(run)
    for variant in VARIANTS:
        group = by_variant.get(variant)
        if not group:
            continue
        row = {
            "model": f"student: {VARIANTS[variant][0]}",
            "variant": variant,
            "runs": len(group),
            "valid_loss": _mean_std([r["valid_loss"] for r in group]),
        }
        for name in set_names:
            row[name] = _mean_std([r["rouge_l"][name] for r in group])
        rows.append(row)
    return rows


def _cell(value):
    mean, std = value
    if mean is None:
        return "-"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def format_table(rows, set_names, titles):
    header = ["model", "runs", "valid loss"] + [titles[n] for n in set_names]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [row["model"], str(row["runs"]), _cell(row["valid_loss"])]
        cells += [_cell(row[n]) for n in set_names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows, runs, set_names, titles, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(set_names) + 1, figsize=(5 * (len(set_names) + 1), 4)
    )
    students = [r for r in rows if "variant" in r]
    labels = [VARIANTS[r["variant"]][0].split(" (")[0] for r in students]
    for ax, name in zip(axes, set_names):
        means = [r[name][0] for r in students]
        stds = [r[name][1] or 0.0 for r in students]
        ax.bar(labels, means, yerr=stds, capsize=4, color="tab:blue")
        teacher = rows[0][name][0]
        ax.axhline(teacher, color="tab:red", linestyle="--", label="teacher")
        ax.set_title(f"ROUGE-L, {titles[name]}")
        ax.tick_params(axis="x", rotation=30)
        ax.legend()
    ax = axes[-1]
    for variant in VARIANTS:
        curves = [r["step_losses"] for r in runs if r["variant"] == variant]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mean = [statistics.fmean(c[i] for c in curves) for i in range(length)]
        ax.plot(range(1, length + 1), mean, label=VARIANTS[variant][0])
    ax.set_title("training loss (mean over seeds)")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prepare(args, output):
    """Recipe, data, teacher, student, plan and the preprocessed datasets
    of the experiment (also used by `fidelity_diagnostics.py`)."""
    import keras

    from keras_mta import runner

    recipe = _recipe(args)
    args.recipe_obj = recipe
    _seed(0)
    say(f"recipe {recipe.name}, backend {keras.backend.backend()}")
    train_all, valid_all, _, _ = runner.load_data(recipe, str(output))
    train = _subsample(train_all, args.train_examples, 0)
    valid = _subsample(valid_all, args.valid_examples, 1)
    # (A recipe's SentencePiece tokenizer is trained on all training text.)
    teacher, student = runner.load_models(recipe, train_all, str(output))
    plan = runner.make_plan(recipe, teacher, student)
    say(f"plan {plan}")
    datasets = runner.Datasets(recipe, train, valid, student, teacher)
    return types.SimpleNamespace(
        recipe=recipe,
        valid_all=valid_all,
        valid=valid,
        teacher=teacher,
        student=student,
        plan=plan,
        datasets=datasets,
    )


def training_cache(args, output, setup):
    """The teacher cache of the training examples (built or reused)."""
    from keras_mta import build_teacher_cache

    return build_teacher_cache(
        setup.teacher,
        setup.plan,
        setup.datasets.train_arrays[0],
        args.cache_dir or str(output / "teacher_cache"),
        top_k=min(args.top_k, setup.student.backbone.vocabulary_size),
        dtype=args.cache_dtype,
        temperature=setup.recipe.distillation.temperature,
        batch_size=args.batch_size,
    )


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np

    from keras_mta import runner

    output = Path(args.output)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    setup = prepare(args, output)
    recipe, teacher, student = setup.recipe, setup.teacher, setup.student
    plan, datasets, valid = setup.plan, setup.datasets, setup.valid
    valid_all = setup.valid_all
    # ROUGE-L prompts: held-out T0 rows not used for the validation loss.
    used = {id(e) for e in valid}
    held_out = [e for e in valid_all if id(e) not in used]
    held_out = runner.truncate_prompts(
        _subsample(held_out, args.eval_prompts, 2),
        student.preprocessor.tokenizer,
        args.max_prompt_length,
    )[0]
    sets = runner.evaluation_sets(
        ["valid", args.selfinst], held_out, limit=args.eval_prompts
    )
    set_names = list(sets)
    titles = {"valid": "T0 mix (held out)", args.selfinst: "SelfInst"}

    # === Teacher: scored once, then cached and dropped ===
    teacher_path = output / "teacher.json"
    if teacher_path.exists():
        teacher_result = json.loads(teacher_path.read_text())
    else:
        ev = dataclasses.replace(recipe.evaluation, seeds=[100])
        start = time.perf_counter()
        rouge = runner.rouge_scores(ev, teacher, sets, "teacher")
        teacher_result = {
            "valid_loss": runner.validation_loss(teacher, datasets.valid),
            "rouge_l": {n: r["mean"] for n, r in rouge.items()},
            "eval_seconds": time.perf_counter() - start,
        }
        teacher_path.write_text(json.dumps(teacher_result, indent=1))
    start = time.perf_counter()
    cache = training_cache(args, output, setup)
    cache_seconds = time.perf_counter() - start
    # The cache holds every pair of the recipe's plan; an ablation of the
    # number of pairs trains with some of them.
    plan = ablated_plan(plan, args.pairs, args.word_pairs)
    if args.pairs is not None:
        say(f"ablation: training with pairs {args.pairs}: {plan}")
    initial = [np.array(w) for w in student.get_weights()]
    del teacher
    gc.collect()

    # === Students ===
    runs = []
    for seed in args.seeds:
        for variant in args.variants:
            path = output / "runs" / f"{variant}-seed{seed}.json"
            if path.exists():
                runs.append(json.loads(path.read_text()))
                say(f"{variant} seed {seed}: done before, kept")
                continue
            run = run_one(
                args,
                variant,
                seed,
                cache,
                student,
                initial,
                plan,
                datasets,
                sets,
            )
            atomic_write(path, json.dumps(run, indent=1))
            runs.append(run)

    # The teacher's preset (e.g. gguf:smollm2-135m-instruct), or the recipe
    # of a teacher built from an architecture.
    teacher_name = recipe.teacher.preset or f"{recipe.name} teacher"
    rows = summarize(runs, teacher_result, set_names, teacher_name)
    table = format_table(rows, set_names, titles)
    wall = time.perf_counter() - started
    results = {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "recipe": recipe.name,
        "settings": {k: v for k, v in vars(args).items() if k != "recipe_obj"},
        "plan": plan.get_config(),
        "cache": {
            "directory": cache.directory,
            "bytes": cache.nbytes,
            "examples": cache.num_examples,
            "build_seconds": cache_seconds,
        },
        "teacher": teacher_result,
        "runs": runs,
        "table": table,
        "wall_seconds_this_invocation": wall,
    }
    (output / "results.json").write_text(json.dumps(results, indent=1))
    (output / "results.md").write_text(table + "\n")
    plot(rows, runs, set_names, titles, output / "fidelity.png")
    print(table, flush=True)
    say(
        f"cache {cache.nbytes / 2**20:.0f} MiB, built in "
        f"{cache_seconds:.0f} s; this invocation took {wall:.0f} s; "
        f"results in {output}"
    )
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
