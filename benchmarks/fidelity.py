"""Does MTA beat plain KD with a real teacher? A powered study on a CPU.

The SmolLM2-135M-Instruct teacher (GGUF, offline) runs once over the
training data and its signals are cached (`keras_mta.build_teacher_cache`).
The student (the recipe's 10-block Llama3, copied from a subset of the
teacher's blocks) is first **healed**: `--heal-steps` of KD only on rows of
the cache that the compared runs never see (its own seed and data order),
saved once in `OUTPUT/healed/` and scored as the common start. Every
variant (SFT, KD, MTA by default) and training seed then **branches** from
the healed weights; within a seed every variant sees the same data order,
so the differences KD - SFT and MTA - KD are paired. Each run is scored
with the validation loss, greedy ROUGE-L and the sampling protocol on
held-out T0 rows and on SelfInst.

    python benchmarks/fidelity.py --pilot     # 3 seeds: spread and power
    python benchmarks/fidelity.py --seeds 0,1,2,3   # the main study
    python benchmarks/fidelity.py --recipe recipes/tiny-cpu.toml --tiny-run
                                                # seconds, for tests

The pilot's runs are the main study's first seeds (same files). From the
seed-to-seed standard deviation of each paired difference, the results say
how many seeds would detect a difference of the paper's relative size with
80 % power (two-sided 5 %), and the smallest difference the seeds run can
detect (what a null result rules out). Before training, the script prints
its time estimate (measured from finished runs when there are some) and
refuses a plan over `--budget-minutes`.

Writes `OUTPUT/results.json`, `OUTPUT/results.md` (the tables) and
`OUTPUT/fidelity.png`; every finished run is kept in `OUTPUT/runs/` under a
name that holds the key of its settings (heal stage included), so an
interrupted study resumes where it stopped and a changed setting is never
mixed with older runs. See RESULTS.md.

What a seed changes: the order of the training examples, the HRA
projectors' initialisation and the sampling of the evaluation responses
(every run of the study starts from the same healed weights).
"""

import argparse
import dataclasses
import gc
import hashlib
import json
import math
import statistics
import sys
import time
import types
from pathlib import Path

from keras_mta.analysis.paired_differences import COMPARISONS
from keras_mta.analysis.paired_differences import variant_differences
from keras_mta.analysis.power import minimal_detectable_effect
from keras_mta.analysis.power import seeds_needed
from keras_mta.models.variants import VARIANTS
from keras_mta.models.variants import variant_name
from keras_mta.utils import atomic_write

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_RECIPE = REPO / "recipes" / "smollm2-135m-instruct-to-llama-small.toml"
# The variants the powered study compares by default (the others of
# `keras_mta.models.variants.VARIANTS`, e.g. kd_hra, kd_dsa, stay
# selectable with --variants).
COMPARED = ("sft", "kd", "mta")
PILOT_SEEDS = "0,1,2"
MAIN_SEEDS = "0,1,2,3"
DEFAULT_HEAL_STEPS = 80  # 2 epochs of the 320 heal rows at batch 8

# The effect to detect. ROUGE-L: the paper's gain of MTA over DistiLLM
# relative to DistiLLM (20.21 -> 21.45: +6.1 %, 19.80 -> 21.01: +6.1 %,
# 22.98 -> 23.97: +4.3 %; about 5.5 %), applied to the mean of the
# subtracted variant (KD for MTA - KD, SFT for KD - SFT). Validation loss:
# the same relative size on perplexity, a 5.5 % lower perplexity, i.e.
# -ln(1 - 0.055) = 0.057 nats (an explicit choice: the pilot's KD - SFT gain
# is itself too noisy to scale from).
PAPER_RELATIVE_GAIN = 0.055
LOSS_EFFECT = -math.log(1.0 - PAPER_RELATIVE_GAIN)

# The time estimate when nothing is measured yet: the default recipe on the
# 2-core machine of RESULTS.md (30-step runs of batch 8 x 128 tokens: 7 to
# 9 s a step; evaluation of 48 validation rows and 32 sampled prompts of 32
# new tokens: about 90 s; teacher cache: 400 rows in 6 min 16 s). Scaled
# by the settings; finished runs replace them by what they measured.
STEP_SECONDS = 8.0  # per step of 8 x 128 tokens
DECODE_SECONDS = 2.6  # per prompt and decoding pass of 32 new tokens
VALID_ROW_SECONDS = 0.15
TEACHER_FACTOR = 3.0  # the teacher's 30 blocks against the student's 10
CACHE_ROW_SECONDS = 0.94
SETUP_SECONDS = 120.0  # data, spans, models, compilation


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--output", default=str(REPO / "runs" / "fidelity"))
    parser.add_argument("--variants", default=",".join(COMPARED))
    parser.add_argument(
        "--seeds",
        default=None,
        help=f"training seeds (default {PILOT_SEEDS} with --pilot, else "
        f"{MAIN_SEEDS}); choose them from the pilot's power summary",
    )
    parser.add_argument(
        "--pilot",
        action="store_true",
        help=f"the pilot: seeds {PILOT_SEEDS} (unless --seeds), then the "
        "spread of the paired differences and the seeds the main study "
        "needs; its runs are the main study's first seeds",
    )
    parser.add_argument(
        "--heal-steps",
        type=int,
        default=None,
        help=f"KD-only steps that heal the teacher-subset student before "
        f"the variants branch (default {DEFAULT_HEAL_STEPS}; 0: branch "
        "from the teacher-subset initialisation)",
    )
    parser.add_argument(
        "--heal-examples",
        type=int,
        default=320,
        help="cached training rows the heal stage trains on, apart from "
        "the --train-examples rows of the compared runs",
    )
    parser.add_argument(
        "--heal-seed",
        type=int,
        default=1000,
        help="the heal stage's data order (and sampling) seed",
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=120.0,
        help="refuse a study whose estimated wall time (spent + left) is "
        "longer (0: no check)",
    )
    parser.add_argument(
        "--rouge-effect",
        type=float,
        default=PAPER_RELATIVE_GAIN,
        help="the ROUGE-L difference to detect, relative to the subtracted "
        "variant's mean (the paper: MTA over DistiLLM)",
    )
    parser.add_argument(
        "--loss-effect",
        type=float,
        default=LOSS_EFFECT,
        help="the validation-loss difference to detect, nats (default: "
        "5.5 %% lower perplexity)",
    )
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
        default=240,
        help="cached examples the compared runs train on (steps x batch "
        "size = one epoch by default)",
    )
    parser.add_argument(
        "--valid-examples",
        type=int,
        default=96,
        help="held-out T0 rows for the validation loss.",
    )
    parser.add_argument(
        "--eval-prompts",
        type=int,
        default=16,
        help="prompts per evaluation set for ROUGE-L (greedy and sampled).",
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
    if args.seeds is None:
        args.seeds = PILOT_SEEDS if args.pilot else MAIN_SEEDS
    try:
        args.seeds = parse_seeds(args.seeds)
    except ValueError:
        parser.error(
            f"--seeds takes integers like 0,1,2 or a range like 0-9; got "
            f"{args.seeds!r}"
        )
    if len(set(args.seeds)) != len(args.seeds) or not args.seeds:
        parser.error(f"--seeds needs distinct seeds; got {args.seeds}")
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
        args.heal_examples = 8
        if args.heal_steps is None:
            args.heal_steps = 2
        args.eval_prompts, args.max_new_tokens = 2, 4
        args.batch_size, args.sequence_length = 4, 64
        args.max_prompt_length = 48
    if args.heal_steps is None:
        args.heal_steps = DEFAULT_HEAL_STEPS
    if args.heal_steps < 0 or args.heal_examples < 0:
        parser.error("--heal-steps and --heal-examples must be >= 0")
    if args.heal_steps and args.heal_examples < args.batch_size:
        parser.error(
            f"--heal-examples {args.heal_examples} is less than one batch "
            f"({args.batch_size}): give the heal stage at least one batch"
        )
    if not args.heal_steps:
        args.heal_examples = 0  # nothing to heal on
    return args


def parse_seeds(text):
    """The seeds of `--seeds`: `0,1,2`, or a range `0-9` (both ends)."""
    seeds = []
    for part in text.split(","):
        if "-" in part.strip()[1:]:
            low, high = part.strip().split("-", 1)
            seeds += range(int(low), int(high) + 1)
        elif part.strip():
            seeds.append(int(part))
    return seeds


def say(message):
    print(f"[fidelity] {message}", flush=True)


# === What makes a stage or a run different (resumability keys) ===


def _digest(settings):
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _file_digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def heal_settings(args):
    """Everything the healed weights depend on: the recipe (its file),
    the data and its split, the heal stage's steps, seed and optimizer,
    the teacher cache's precision."""
    return {
        "recipe_sha256": _file_digest(args.recipe),
        "train": args.train,
        "train_examples": args.train_examples,
        "heal_examples": args.heal_examples,
        "heal_steps": args.heal_steps,
        "heal_seed": args.heal_seed,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "warmup_steps": args.warmup_steps,
        "sequence_length": args.sequence_length,
        "max_prompt_length": args.max_prompt_length,
        "top_k": args.top_k,
        "cache_dtype": args.cache_dtype,
    }


def evaluation_settings(args):
    """Everything a score depends on besides the weights: the held-out
    rows, prompts and decoding lengths."""
    return {
        "recipe_sha256": _file_digest(args.recipe),
        "valid": args.valid,
        "valid_examples": args.valid_examples,
        "eval_prompts": args.eval_prompts,
        "max_new_tokens": args.max_new_tokens,
        "selfinst": args.selfinst,
        "batch_size": args.batch_size,
        "sequence_length": args.sequence_length,
        "max_prompt_length": args.max_prompt_length,
    }


def study_keys(args):
    """The keys of the heal stage, the evaluation and the runs. A run's key
    holds the other two: a run is reused only when it branched from the
    same healed weights and was scored the same way."""
    heal = _digest(heal_settings(args))
    evaluation = _digest(evaluation_settings(args))
    run = _digest(
        {
            "heal": heal,
            "evaluation": evaluation,
            "steps": args.steps,
            "log_every": args.log_every,
            "learning_rate": args.learning_rate,
            "warmup_steps": args.warmup_steps,
            "batch_size": args.batch_size,
            "mta_weight": args.mta_weight,
            "word_pairs": args.word_pairs,
            "pairs": args.pairs,
        }
    )
    return types.SimpleNamespace(heal=heal, evaluation=evaluation, run=run)


def run_path(output, variant, seed, keys):
    return Path(output) / "runs" / f"{variant}-seed{seed}-{keys.run}.json"


def _read_json(path, default=None):
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else default


def check_healed(args, output):
    """`True` when `OUTPUT/healed` holds weights made with this study's
    heal settings, `False` when there are none; a folder made with other
    settings is an error (never reused silently)."""
    folder = Path(output) / "healed"
    saved = _read_json(folder / "settings.json")
    if saved is None or not (folder / "weights.npz").exists():
        return False
    wanted = heal_settings(args)
    changed = {
        k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v
    }
    if changed:
        what = "; ".join(
            f"{k}: saved {old!r}, asked {new!r}"
            for k, (old, new) in sorted(changed.items())
        )
        raise SystemExit(
            f"{folder} holds healed weights made with other settings ({what}). "
            "Use another --output for a study with these settings, give the "
            "saved ones again, or delete that folder to heal anew (the runs "
            "branched from it will not be reused either)."
        )
    return True


# === Time: estimate, budget ===


def _per_step_and_eval(args, output, keys):
    """Seconds per training step and per evaluation of a run, measured
    from the finished runs (or the heal stage) when there are some, else
    from the settings; and where they come from."""
    done = [
        _read_json(p)
        for p in sorted((Path(output) / "runs").glob(f"*-{keys.run}.json"))
    ]
    healed = _read_json(Path(output) / "healed" / "scores.json") or {}
    tokens = args.batch_size * args.sequence_length / (8 * 128)
    if done:
        step = statistics.median(r["train_seconds"] / r["steps"] for r in done)
        source = f"measured over {len(done)} finished runs"
    elif healed.get("train_seconds") and args.heal_steps:
        step = healed["train_seconds"] / args.heal_steps
        source = "measured on the heal stage"
    else:
        step = STEP_SECONDS * tokens
        source = "from the settings (nothing measured yet)"
    if done:
        evaluation = statistics.median(r["eval_seconds"] for r in done)
    elif healed.get("eval_seconds"):
        evaluation = healed["eval_seconds"]
    else:
        evaluation = evaluation_seconds(args)
    return step, evaluation, source


def evaluation_seconds(args):
    """Settings-based seconds of one student's evaluation: the validation
    loss, then greedy and sampled decoding of every prompt of both sets."""
    decode = DECODE_SECONDS * args.max_new_tokens / 32
    return (
        args.valid_examples * VALID_ROW_SECONDS
        + 2 * 2 * args.eval_prompts * decode
    )


def estimate(args, output, keys, seeds=None):
    """The study's wall time: `{"spent": s, "left": {stage: s}, "total": s,
    "per_step": s, "per_eval": s, "source": str}` (what the finished
    stages and runs recorded, and what the others should take)."""
    output = Path(output)
    seeds = args.seeds if seeds is None else seeds
    step, per_eval, source = _per_step_and_eval(args, output, keys)
    timings = _read_json(output / "timings.json", {})
    left = {"setup": SETUP_SECONDS}
    spent = 0.0
    cache_key = f"cache-{keys.heal}"
    if cache_key in timings:
        spent += timings[cache_key]
    else:
        rows = args.train_examples + args.heal_examples
        left["teacher cache"] = rows * CACHE_ROW_SECONDS
    teacher_key = f"teacher-{keys.evaluation}"
    if teacher_key in timings:
        spent += timings[teacher_key]
    else:
        left["teacher evaluation"] = TEACHER_FACTOR * evaluation_seconds(args)
    healed = _read_json(output / "healed" / "scores.json")
    if healed and healed.get("key") == keys.heal:
        spent += healed["train_seconds"] + healed["eval_seconds"]
    else:
        left["heal"] = args.heal_steps * step + per_eval
    todo = 0
    for seed in seeds:
        for variant in args.variants:
            run = _read_json(run_path(output, variant, seed, keys))
            if run is None:
                todo += 1
            else:
                spent += run["train_seconds"] + run["eval_seconds"]
    left["runs"] = todo * (args.steps * step + per_eval)
    return {
        "spent": spent,
        "left": left,
        "runs_left": todo,
        "total": spent + sum(left.values()),
        "per_step": step,
        "per_eval": per_eval,
        "source": source,
    }


def most_seeds_within(args, output, keys, limit=100):
    """The most seeds (0, 1, 2, ...) whose study fits `--budget-minutes`."""
    budget = args.budget_minutes * 60
    best = 0
    for n in range(1, limit + 1):
        if estimate(args, output, keys, seeds=list(range(n)))["total"] > budget:
            break
        best = n
    return best


def _minutes(seconds):
    return f"{seconds / 60:.0f} min"


def check_budget(args, output, keys):
    """Print the estimate; refuse a plan over `--budget-minutes`."""
    plan = estimate(args, output, keys)
    stages = ", ".join(f"{k} {_minutes(v)}" for k, v in plan["left"].items())
    say(
        f"time estimate: {plan['runs_left']} runs to train "
        f"({len(args.seeds)} seeds x {len(args.variants)} variants in all), "
        f"{plan['per_step']:.1f} s per step and {plan['per_eval']:.0f} s "
        f"per evaluation ({plan['source']}); left: {stages}; spent so far "
        f"{_minutes(plan['spent'])}; the whole study about "
        f"{_minutes(plan['total'])}"
        + (
            f" of a {args.budget_minutes:.0f} min budget"
            if args.budget_minutes
            else ""
        )
    )
    if args.budget_minutes and plan["total"] > args.budget_minutes * 60:
        raise SystemExit(
            f"The study would take about {_minutes(plan['total'])}, over "
            f"--budget-minutes {args.budget_minutes:g} ({stages}; "
            f"{plan['per_step']:.1f} s per step, {plan['per_eval']:.0f} s per "
            f"evaluation, {plan['source']}). Reduce --seeds (now "
            f"{len(args.seeds)}), --steps ({args.steps}), --heal-steps "
            f"({args.heal_steps}), --eval-prompts ({args.eval_prompts}) or "
            f"--variants ({','.join(args.variants)}), or raise "
            "--budget-minutes (0: no check)."
        )
    return plan


def _record_time(output, name, seconds):
    """Keep the first measured seconds of a stage in `timings.json`."""
    path = Path(output) / "timings.json"
    timings = _read_json(path, {})
    if name not in timings:
        timings[name] = seconds
        atomic_write(path, json.dumps(timings, indent=1))


# === Data, models, caches ===


def _subsample(examples, count, seed):
    import numpy as np

    if not count or count >= len(examples):
        return list(examples)
    order = np.random.default_rng(seed).permutation(len(examples))[:count]
    return [examples[i] for i in sorted(order)]


def split_rows(rows, heal_examples, seed=3):
    """`(heal, branch)`: `heal_examples` of `rows` (a seeded draw) for the
    heal stage, the others for the compared runs; disjoint, each in the
    order of `rows`."""
    import numpy as np

    if heal_examples > len(rows):
        raise SystemExit(
            f"--heal-examples {heal_examples} is more than the "
            f"{len(rows)} training rows there are."
        )
    order = np.random.default_rng(seed).permutation(len(rows))
    chosen = set(int(i) for i in order[:heal_examples])
    heal = [r for i, r in enumerate(rows) if i in chosen]
    branch = [r for i, r in enumerate(rows) if i not in chosen]
    return heal, branch


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


def _rows_of(arrays, start, stop):
    """Rows `start:stop` of `(x, y, sample_weight)` arrays."""
    x, *rest = arrays
    return ({k: v[start:stop] for k, v in x.items()},) + tuple(
        a[start:stop] for a in rest
    )


def prepare(args, output):
    """Recipe, data, teacher, student, plan and the preprocessed arrays
    of the study (also used by `fidelity_diagnostics.py`):
    `heal_arrays` (the heal stage's rows) and `train_arrays` (the compared
    runs' rows), disjoint."""
    import keras

    from keras_mta import runner

    recipe = _recipe(args)
    args.recipe_obj = recipe
    _seed(0)
    say(f"recipe {recipe.name}, backend {keras.backend.backend()}")
    train_all, valid_all, _, _ = runner.load_data(recipe, str(output))
    rows = _subsample(train_all, args.train_examples + args.heal_examples, 0)
    heal, train = split_rows(rows, args.heal_examples)
    valid = _subsample(valid_all, args.valid_examples, 1)
    # (A recipe's SentencePiece tokenizer is trained on all training text.)
    teacher, student = runner.load_models(recipe, train_all, str(output))
    plan = runner.make_plan(recipe, teacher, student)
    say(f"plan {plan}")
    say(
        f"data: {len(heal)} rows heal the student, {len(train)} other rows "
        f"train the compared runs, {len(valid)} held-out rows give the "
        "validation loss"
    )
    datasets = runner.Datasets(recipe, heal + train, valid, student, teacher)
    arrays = datasets.train_arrays
    return types.SimpleNamespace(
        recipe=recipe,
        valid_all=valid_all,
        valid=valid,
        teacher=teacher,
        student=student,
        plan=plan,
        datasets=datasets,
        heal_arrays=_rows_of(arrays, 0, len(heal)),
        train_arrays=_rows_of(arrays, len(heal), len(heal) + len(train)),
    )


def training_cache(args, output, setup, arrays=None):
    """The teacher cache of `arrays` (default: the compared runs' rows),
    built or reused (keyed by content under the cache directory)."""
    from keras_mta import build_teacher_cache

    arrays = setup.train_arrays if arrays is None else arrays
    return build_teacher_cache(
        setup.teacher,
        setup.plan,
        arrays[0],
        args.cache_dir or str(output / "teacher_cache"),
        top_k=min(args.top_k, setup.student.backbone.vocabulary_size),
        dtype=args.cache_dtype,
        temperature=setup.recipe.distillation.temperature,
        batch_size=args.batch_size,
    )


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


# === Training and scoring ===


def train(args, variant, seed, cache, arrays, student, plan, steps, label):
    """`steps` of `variant` on the cached `arrays` in the data order of
    `seed`; returns `(history, step losses, seconds)`."""
    from keras_mta import CachedTeacher
    from keras_mta import runner

    _seed(seed)
    model = runner.build_variant_model(
        args.recipe_obj,
        variant,
        None if variant == "sft" else CachedTeacher.from_cache(cache),
        student,
        plan,
        steps,
    )
    stream = cache.dataset(
        arrays, batch_size=args.batch_size, seed=seed, drop_remainder=True
    ).repeat()
    curve = _history_callback()
    epochs = max(1, steps // args.log_every)
    say(f"{label}: {steps} steps")
    start = time.perf_counter()
    history = model.fit(
        stream,
        epochs=epochs,
        steps_per_epoch=steps // epochs,
        callbacks=[curve],
        shuffle=False,  # the cache's stream is shuffled already
        verbose=2,
    )
    seconds = time.perf_counter() - start
    del model
    gc.collect()
    return history.history, [s.get("loss") for s in curve.steps], seconds


def score(args, model, datasets, sets, label, sampling_seed):
    """Validation loss, greedy ROUGE-L and sampled ROUGE-L (one sampling
    seed) of a model on every evaluation set, with the seconds it took."""
    from keras_mta import runner
    from keras_mta.runner.run import greedy_rouge

    ev = dataclasses.replace(args.recipe_obj.evaluation, seeds=[sampling_seed])
    start = time.perf_counter()
    valid_loss = runner.validation_loss(model, datasets.valid)
    greedy = greedy_rouge(ev, model, sets, label)
    rouge = runner.rouge_scores(ev, model, sets, label)
    return {
        "valid_loss": valid_loss,
        "rouge_l_greedy": greedy,
        "rouge_l": {name: r["mean"] for name, r in rouge.items()},
        "eval_seconds": time.perf_counter() - start,
        "predictions": {
            name: r.get("predictions", [])[:5] for name, r in rouge.items()
        },
    }


def heal(args, output, setup, cache, plan, initial, sets, keys):
    """The healed weights (trained and saved once, or read back) and
    their scores."""
    import numpy as np

    student, folder = setup.student, Path(output) / "healed"
    label = f"healed start (KD, {args.heal_steps} steps)"
    if check_healed(args, output):
        with np.load(folder / "weights.npz") as f:
            weights = [f[f"arr_{i}"] for i in range(len(f.files))]
        say(f"{label}: healed before, weights reused from {folder}")
        record = {"train_seconds": 0.0, "step_losses": [], "history": {}}
    elif args.heal_steps:
        student.set_weights(initial)
        history, losses, seconds = train(
            args,
            "kd",
            args.heal_seed,
            cache,
            setup.heal_arrays,
            student,
            plan,
            args.heal_steps,
            label,
        )
        weights = [np.array(w) for w in student.get_weights()]
        atomic_write(
            folder / "weights.npz", lambda tmp: np.savez(tmp, *weights)
        )
        # Written last: its presence says the weights are complete.
        atomic_write(
            folder / "settings.json",
            json.dumps(heal_settings(args), indent=1),
        )
        record = {
            "train_seconds": seconds,
            "step_losses": losses,
            "history": history,
        }
    else:
        weights = initial
        record = {"train_seconds": 0.0, "step_losses": [], "history": {}}
    scores = _read_json(folder / "scores.json")
    same_heal = scores is not None and scores.get("key") == keys.heal
    if not same_heal or scores.get("evaluation") != keys.evaluation:
        if same_heal:
            record = {k: scores[k] for k in record}  # the first training's
        student.set_weights(weights)
        scores = {
            "key": keys.heal,
            "evaluation": keys.evaluation,
            "steps": args.heal_steps,
            **record,
            **score(args, student, setup.datasets, sets, label, 100),
        }
        atomic_write(folder / "scores.json", json.dumps(scores, indent=1))
    return weights, scores


def run_one(args, variant, seed, cache, setup, start, plan, sets):
    """Train one (variant, seed) from the healed weights `start` on the
    compared runs' rows, score it; returns the run's dict."""
    student = setup.student
    label = f"{VARIANTS[variant_name(variant)].label}, seed {seed}"
    student.set_weights(start)
    history, losses, seconds = train(
        args,
        variant,
        seed,
        cache,
        setup.train_arrays,
        student,
        plan,
        args.steps,
        label,
    )
    return {
        "variant": variant,
        "label": VARIANTS[variant_name(variant)].label,
        "seed": seed,
        "steps": args.steps,
        "train_seconds": seconds,
        **score(args, student, setup.datasets, sets, label, 100 + seed),
        "history": history,
        "step_losses": losses,
    }


# === Summary: table, paired differences, power ===


def metric_names(set_names):
    """The study's metrics, in table order (the names of
    `keras_mta.analysis.paired_differences.variant_differences`)."""
    return (
        ["valid loss"]
        + [f"ROUGE-L {n} (greedy)" for n in set_names]
        + [f"ROUGE-L {n} (sampled)" for n in set_names]
    )


def metric_values(result):
    """`{metric: value}` of one scored model (teacher, healed, run)."""
    values = {"valid loss": result["valid_loss"]}
    for name, value in result["rouge_l_greedy"].items():
        values[f"ROUGE-L {name} (greedy)"] = value
    for name, value in result["rouge_l"].items():
        values[f"ROUGE-L {name} (sampled)"] = value
    return values


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def summarize(runs, teacher, healed, teacher_name, heal_steps):
    """Rows of the results table: teacher, healed start, then each
    variant's mean and standard deviation over its seeds."""
    start = (
        f"healed start (KD, {heal_steps} steps)"
        if heal_steps
        else "start (teacher subset, not healed)"
    )
    rows = [
        {
            "model": f"teacher ({teacher_name})",
            "runs": 1,
            **{k: (v, None) for k, v in metric_values(teacher).items()},
        },
        {
            "model": start,
            "runs": 1,
            **{k: (v, None) for k, v in metric_values(healed).items()},
        },
    ]
    by_variant = {}
    for run in runs:
        by_variant.setdefault(run["variant"], []).append(metric_values(run))
    for variant in VARIANTS:
        group = by_variant.get(variant)
        if not group:
            continue
        row = {
            "model": f"student: {VARIANTS[variant].label}",
            "variant": variant,
            "runs": len(group),
        }
        for metric in group[0]:
            row[metric] = _mean_std([g[metric] for g in group])
        rows.append(row)
    return rows


def paired(runs):
    """KD - SFT and MTA - KD on every metric, over the seeds both
    variants ran (`variant_differences`)."""
    by_variant = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        by_variant.setdefault(run["variant"], []).append(run)
    entries = [{"role": v, "per_seed": rs} for v, rs in by_variant.items()]
    return variant_differences(entries)


def power(rows, runs, args):
    """Adds to each paired-difference row the spread, the effect to
    detect, the seeds needed for it (80 % power, two-sided 5 %), the
    minimal detectable effect of the seeds run, and a sentence."""
    means = {}
    for run in runs:
        for metric, value in metric_values(run).items():
            means.setdefault((run["variant"], metric), []).append(value)
    out = []
    for row in rows:
        b = row["comparison"].split(" - ")[1].lower()
        metric, n = row["metric"], row["n"]
        if metric == "valid loss":
            effect = args.loss_effect
            basis = (
                f"{effect:.3f} nats, a "
                f"{1 - math.exp(-effect):.1%} lower perplexity"
            )
        else:
            reference = statistics.fmean(means[(b, metric)])
            effect = args.rouge_effect * abs(reference)
            basis = (
                f"{args.rouge_effect:.1%} of {b.upper()}'s {reference:.2f}, "
                "the paper's relative gain"
            )
        sd = statistics.stdev(row["differences"]) if n > 1 else None
        needed = mde = None
        if sd is not None:
            needed = seeds_needed(sd, effect)
            mde = minimal_detectable_effect(sd, n)
        row = dict(
            row,
            sd=sd,
            effect=effect,
            effect_basis=basis,
            seeds_needed=needed,
            minimal_detectable_effect=mde,
        )
        row["words"] = _power_words(row)
        out.append(row)
    return out


def _power_words(row):
    head = f"{row['comparison']}, {row['metric']}: {row['mean']:+.3f}"
    if row["sd"] is None:
        return f"{head}, {row['verdict']}; one seed: no spread, no power."
    if not row["effect"]:
        return (
            f"{head}, {row['verdict']}; the reference scores 0, so there is "
            "no relative effect to aim at; the "
            f"{row['n']} seeds run detect "
            f"{row['minimal_detectable_effect']:.3f} or more."
        )
    needed = row["seeds_needed"]
    needed = f"{needed} seeds" if needed else "more than 1000 seeds"
    return (
        f"{head} (95 % CI {row['low']:+.3f} to {row['high']:+.3f}), "
        f"{row['verdict']}. Seed-to-seed sd of the difference "
        f"{row['sd']:.3f}: detecting {row['effect']:.3f} "
        f"({row['effect_basis']}) with 80 % power at two-sided 5 % needs "
        f"{needed}; the {row['n']} seeds run detect "
        f"{row['minimal_detectable_effect']:.3f} or more, so finding "
        "nothing rules out a difference of about that size or larger."
    )


def _cell(value):
    mean, std = value
    if mean is None:
        return "-"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _signed(value, digits=3):
    return "-" if value is None else f"{value:+.{digits}f}"


def format_table(rows, metrics):
    header = ["model", "runs"] + metrics
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [row["model"], str(row["runs"])]
        cells += [_cell(row.get(m, (None, None))) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _needed_cell(row):
    if row["sd"] is None or not row["effect"]:
        return "-"
    return str(row["seeds_needed"] or ">1000")


def format_differences(rows):
    header = [
        "difference",
        "metric",
        "mean",
        "95 % CI",
        "verdict",
        "sd",
        "effect to detect",
        "seeds for 80 % power",
        "detectable with the seeds run",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        interval = (
            "-"
            if row["low"] is None
            else f"{row['low']:+.3f} to {row['high']:+.3f}"
        )
        mde = row["minimal_detectable_effect"]
        cells = [
            row["comparison"],
            row["metric"],
            _signed(row["mean"]),
            interval,
            row["verdict"],
            "-" if row["sd"] is None else f"{row['sd']:.3f}",
            f"{row['effect']:.3f}",
            _needed_cell(row),
            "-" if mde is None else f"{mde:.3f} ({row['n']} seeds)",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(differences, runs, metrics, path):
    """Per-seed paired differences (dots) with their mean and 95 %
    interval, one panel per metric, and the training curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(metrics) + 1
    columns = 3
    rows = -(-panels // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4 * rows))
    axes = list(getattr(axes, "flat", [axes]))
    comparisons = [f"{a.upper()} - {b.upper()}" for a, b in COMPARISONS]
    for ax, metric in zip(axes, metrics):
        for i, comparison in enumerate(comparisons):
            row = next(
                (
                    r
                    for r in differences
                    if r["comparison"] == comparison and r["metric"] == metric
                ),
                None,
            )
            if row is None:
                continue
            d = row["differences"]
            offsets = [
                -0.1 + 0.1 * (j - (len(d) - 1) / 2) / max(1, len(d))
                for j in range(len(d))
            ]
            ax.plot(
                [i + o for o in offsets], d, "o", color="tab:gray", alpha=0.7
            )
            if row["low"] is not None:
                ax.errorbar(
                    [i + 0.1],
                    [row["mean"]],
                    yerr=[
                        [row["mean"] - row["low"]],
                        [row["high"] - row["mean"]],
                    ],
                    fmt="s",
                    color="tab:blue",
                    capsize=5,
                )
        ax.axhline(0.0, color="tab:red", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(comparisons)), comparisons)
        ax.set_title(f"{metric}: paired difference")
    ax = axes[len(metrics)]
    for variant in VARIANTS:
        curves = [r["step_losses"] for r in runs if r["variant"] == variant]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mean = [statistics.fmean(c[i] for c in curves) for i in range(length)]
        ax.plot(range(1, length + 1), mean, label=VARIANTS[variant].label)
    ax.set_title("training loss from the healed start (mean over seeds)")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    for ax in axes[panels:]:
        ax.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


# === The study ===


def _sets(args, setup):
    """The ROUGE-L prompts: held-out T0 rows not used for the validation
    loss, and SelfInst."""
    from keras_mta import runner

    used = {id(e) for e in setup.valid}
    held_out = [e for e in setup.valid_all if id(e) not in used]
    held_out = runner.truncate_prompts(
        _subsample(held_out, args.eval_prompts, 2),
        setup.student.preprocessor.tokenizer,
        args.max_prompt_length,
    )[0]
    sets = runner.evaluation_sets(
        ["valid", args.selfinst], held_out, limit=args.eval_prompts
    )
    return {"T0": sets["valid"], "SelfInst": sets[args.selfinst]}


def pilot_advice(args, output, keys, differences):
    """What the pilot says about the main study: the seeds each MTA - KD
    (and KD - SFT) metric needs, and the most seeds the budget allows."""
    allowed = (
        most_seeds_within(args, output, keys) if args.budget_minutes else None
    )
    needed = {
        f"{r['comparison']}, {r['metric']}": r["seeds_needed"]
        for r in differences
    }
    lines = [
        f"seeds for 80 % power: {k}: {v or 'more than 1000 (or no effect)'}"
        for k, v in needed.items()
    ]
    if allowed is not None:
        seeds = f"0-{max(allowed, 1) - 1}"
        lines.append(
            f"the {args.budget_minutes:g} min budget allows about {allowed} "
            f"seeds of {','.join(args.variants)} at the measured times: "
            f"python benchmarks/fidelity.py --seeds {seeds} (the pilot's "
            "runs are reused)"
        )
    return {
        "seeds_needed": needed,
        "seeds_allowed_by_budget": allowed,
        "lines": lines,
    }


def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    keys = study_keys(args)
    check_healed(args, output)  # a mismatch fails before anything loads
    planned = check_budget(args, output, keys)
    import keras
    import numpy as np

    started = time.perf_counter()
    setup = prepare(args, output)
    recipe, teacher, student = setup.recipe, setup.teacher, setup.student
    sets = _sets(args, setup)
    set_names = list(sets)
    metrics = metric_names(set_names)

    # === Teacher: scored once, then cached and dropped ===
    teacher_path = output / f"teacher-{keys.evaluation}.json"
    teacher_result = _read_json(teacher_path)
    if teacher_result is None:
        teacher_result = score(
            args, teacher, setup.datasets, sets, "teacher", 100
        )
        atomic_write(teacher_path, json.dumps(teacher_result, indent=1))
        _record_time(
            output,
            f"teacher-{keys.evaluation}",
            teacher_result["eval_seconds"],
        )
    start = time.perf_counter()
    cache = training_cache(args, output, setup)
    heal_cache = None
    if args.heal_steps:
        heal_cache = training_cache(args, output, setup, setup.heal_arrays)
    cache_seconds = time.perf_counter() - start
    _record_time(output, f"cache-{keys.heal}", cache_seconds)
    # The cache holds every pair of the recipe's plan; an ablation of the
    # number of pairs trains with some of them (the heal stage with all).
    plan = ablated_plan(setup.plan, args.pairs, args.word_pairs)
    if args.pairs is not None:
        say(f"ablation: training with pairs {args.pairs}: {plan}")
    initial = [np.array(w) for w in student.get_weights()]
    del teacher, setup.teacher
    gc.collect()

    # === Heal once, then branch every variant and seed from there ===
    healed_weights, healed = heal(
        args, output, setup, heal_cache, setup.plan, initial, sets, keys
    )
    runs = []
    for seed in args.seeds:
        for variant in args.variants:
            path = run_path(output, variant, seed, keys)
            if path.exists():
                runs.append(json.loads(path.read_text()))
                say(f"{variant} seed {seed}: done before, kept")
                continue
            run = run_one(
                args, variant, seed, cache, setup, healed_weights, plan, sets
            )
            atomic_write(path, json.dumps(run, indent=1))
            runs.append(run)

    # The teacher's preset (e.g. gguf:smollm2-135m-instruct), or the recipe
    # of a teacher built from an architecture.
    teacher_name = recipe.teacher.preset or f"{recipe.name} teacher"
    rows = summarize(
        runs, teacher_result, healed, teacher_name, args.heal_steps
    )
    differences = power(paired(runs), runs, args)
    table = format_table(rows, metrics)
    difference_table = format_differences(differences)
    words = [row["words"] for row in differences]
    advice = (
        pilot_advice(args, output, keys, differences) if args.pilot else None
    )
    wall = time.perf_counter() - started
    study = estimate(args, output, keys)
    results = {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "recipe": recipe.name,
        "pilot": args.pilot,
        "settings": {k: v for k, v in vars(args).items() if k != "recipe_obj"},
        "keys": vars(keys),
        "heal_settings": heal_settings(args),
        "plan": plan.get_config(),
        "cache": {
            "directory": cache.directory,
            "bytes": cache.nbytes,
            "examples": cache.num_examples,
            "heal_examples": heal_cache.num_examples if heal_cache else 0,
            "heal_bytes": heal_cache.nbytes if heal_cache else 0,
            "build_seconds_this_invocation": cache_seconds,
        },
        "teacher": teacher_result,
        "healed": healed,
        "runs": runs,
        "table": table,
        "paired_differences": differences,
        "paired_table": difference_table,
        "reading": words,
        "power_method": (
            "paired differences over training seeds; seeds needed = the "
            "fewest n >= 2 with (t(0.975, n-1) + t(0.80, n-1)) * sd / "
            "sqrt(n) <= effect; minimal detectable effect = that bound at "
            "the seeds run (sd: the seed-to-seed standard deviation of the "
            "difference)"
        ),
        "pilot_advice": advice,
        "time": {
            "estimated_before_s": planned["total"],
            "study_s": study["spent"],
            "this_invocation_s": wall,
        },
        "wall_seconds_this_invocation": wall,
    }
    atomic_write(output / "results.json", json.dumps(results, indent=1))
    text = (
        table
        + "\n\n"
        + difference_table
        + "\n\n"
        + "\n".join(f"- {w}" for w in words)
    )
    if advice:
        text += "\n\nPilot:\n" + "\n".join(f"- {w}" for w in advice["lines"])
    atomic_write(output / "results.md", text + "\n")
    plot(differences, runs, metrics, output / "fidelity.png")
    print(text, flush=True)
    say(
        f"cache {cache.nbytes / 2**20:.0f} MiB (+ heal rows "
        f"{(heal_cache.nbytes if heal_cache else 0) / 2**20:.0f} MiB); this "
        f"invocation took {wall:.0f} s; the study's stages and runs so far "
        f"{study['spent']:.0f} s; results in {output}"
    )
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
