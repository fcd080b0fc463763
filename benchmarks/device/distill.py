"""SFT, KD and MTA students of one trained teacher, paired by seed, on the
GPU kit's prepared arrays (part (b) of `run_kit.py`).

Reads `train.npz`, `valid.npz` and `meta.json` written by `prepare.py` (no
text, no tokenizer, no spaCy on the device). Trains a GPT-2-shaped teacher
on every training row, then, for each seed, one student per variant from
the same initial weights (the seed's), on the same batches in the same
order (the first `student_rows` rows, shuffled by the seed), for the same
number of steps: the variants' differences are paired by seed. Each
variant's `DistillationModel` is built and compiled once and shares the one
student; between runs its trainable variables and optimizer state are put
back to their values before the first step. Records the training and
validation loss curves and the greedy generations (token ids) of the
validation prompts, written after each run so a timeout keeps what
finished: `distill.json` and `generations.npz` under `--out`.
`score.py` scores the generations here (ROUGE-L).

    KERAS_BACKEND=jax python benchmarks/device/distill.py \\
        --data runs/device_kit --out /tmp/out --budget-s 200
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_utils  # noqa: E402

GPU = {
    "teacher_layers": 8,
    "teacher_dim": 512,
    "teacher_heads": 8,
    "student_layers": 4,
    "student_dim": 256,
    "student_heads": 4,
    "num_pairs": 2,
    "batch_size": 32,
    "teacher_steps": 1500,
    "student_steps": 400,
    "eval_every": 100,
    "teacher_learning_rate": 5e-4,
    "learning_rate": 1e-3,
    "generate_batch": 128,
    "seeds": 3,
}
TINY = {
    "teacher_layers": 2,
    "teacher_dim": 32,
    "teacher_heads": 2,
    "student_layers": 2,
    "student_dim": 16,
    "student_heads": 2,
    "num_pairs": 2,
    "batch_size": 4,
    "teacher_steps": 4,
    "student_steps": 3,
    "eval_every": 2,
    "teacher_learning_rate": 1e-3,
    "learning_rate": 1e-3,
    "generate_batch": 4,
    "seeds": 2,
}
VARIANTS = ("sft", "kd", "mta")
# Share of the budget the teacher may take before its students start.
TEACHER_SHARE = 0.35


def load(data_dir):
    import numpy as np

    data_dir = Path(data_dir)
    meta = json.loads((data_dir / "meta.json").read_text())
    with np.load(data_dir / "train.npz") as f:
        train = {k: f[k] for k in f.files}
    with np.load(data_dir / "valid.npz") as f:
        valid = {k: f[k] for k in f.files}
    return meta, train, valid


def device_name(backend):
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
        return "cpu"
    if backend == "jax":
        import jax

        return str(jax.devices()[0])
    return backend


def batch_of(data, index, with_units=True):
    keys = ["token_ids", "padding_mask"]
    if with_units:
        keys += ["word_units", "phrase_units"]
    x = {k: data[k][index] for k in keys}
    return x, data["y"][index], data["sample_weight"][index]


def order(rows, steps, batch_size, seed):
    """Row indices of `steps` batches: epochs of seeded permutations."""
    import numpy as np

    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    out = []
    while sum(len(o) for o in out) < needed:
        out.append(rng.permutation(rows))
    return np.concatenate(out)[:needed].reshape(steps, batch_size)


def valid_loss(causal_lm, valid, batch_size):
    """Mean cross-entropy on the validation responses (weighted tokens)."""
    import keras
    import numpy as np

    total, weight = 0.0, 0.0
    n = len(valid["token_ids"])
    for start in range(0, n, batch_size):
        index = np.arange(start, start + batch_size) % n
        x, y, sw = batch_of(valid, index, with_units=False)
        if start + batch_size > n:  # a padded last batch: same shape
            sw = sw.copy()
            sw[n - start :] = 0.0
        logits = keras.ops.convert_to_numpy(causal_lm.predict_on_batch(x))
        logits = logits.astype("float64")
        logits -= logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        nll = -np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
        total += float((nll * sw).sum())
        weight += float(sw.sum())
    return total / max(weight, 1.0)


def generate(causal_lm, valid, batch_size, end_token_id):
    """Greedy generations of the validation prompts (full sequences)."""
    import keras
    import numpy as np

    ids, mask = valid["prompt_ids"], valid["prompt_mask"].astype(bool)
    n = len(ids)
    out = []
    for start in range(0, n, batch_size):
        index = np.arange(start, start + batch_size) % n  # same shape
        result = causal_lm.generate(
            {"token_ids": ids[index], "padding_mask": mask[index]},
            stop_token_ids=(end_token_id,),
        )
        tokens = keras.ops.convert_to_numpy(result["token_ids"])
        out.append(tokens[: min(batch_size, n - start)])
    return np.concatenate(out).astype("int32")


class Results:
    """`distill.json` and `generations.npz`, rewritten after each run."""

    def __init__(self, out, header):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.report = {**header, "teacher": None, "runs": [], "skipped": []}
        self.generations = {}

    def save(self):
        import numpy as np

        self.report["elapsed_s"] = time.perf_counter() - STARTED
        bench_utils.write_json(self.out / "distill.json", self.report)
        tmp = self.out / "generations.tmp.npz"
        np.savez_compressed(tmp, **self.generations)
        os.replace(tmp, self.out / "generations.npz")


def train_teacher(teacher, train, config, budget_s, results, end_id, valid):
    import keras

    teacher.compile(
        optimizer=keras.optimizers.AdamW(config["teacher_learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    rows = len(train["token_ids"])
    steps = order(rows, config["teacher_steps"], config["batch_size"], 12345)
    began = time.perf_counter()
    curve, valid_curve, done = [], [], 0
    for step, index in enumerate(steps, 1):
        x, y, sw = batch_of(train, index, with_units=False)
        logs = teacher.train_on_batch(x, y, sample_weight=sw, return_dict=True)
        done = step
        if step % config["eval_every"] == 0 or step == len(steps):
            curve.append([step, float(logs["loss"])])
            loss = valid_loss(teacher, valid, config["generate_batch"])
            valid_curve.append([step, loss])
            print(f"[teacher] step {step}: valid loss {loss:.4f}", flush=True)
            if time.perf_counter() - began > budget_s:
                break
    seconds = time.perf_counter() - began
    results.generations["teacher"] = generate(
        teacher, valid, config["generate_batch"], end_id
    )
    results.report["teacher"] = {
        "steps": done,
        "seconds": seconds,
        "train_loss": curve,
        "valid_loss": valid_curve,
        "final_valid_loss": valid_curve[-1][1] if valid_curve else None,
    }
    results.save()


def student_inits(config, vocabulary, seq_len, seeds):
    """Initial student weights of each seed (NumPy lists)."""
    import keras

    inits = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        model = build(config, "student", vocabulary, seq_len)
        inits.append(model.get_weights())
        del model
    return inits


def build(config, role, vocabulary, seq_len):
    return bench_utils.build_gpt2(
        config[f"{role}_layers"],
        config[f"{role}_dim"],
        config[f"{role}_heads"],
        vocabulary,
        seq_len,
        role,
    )


def snapshot(model):
    """Values of a compiled model's trainable and optimizer variables."""
    import keras

    variables = list(model.trainable_variables) + list(
        model.optimizer.variables
    )
    return variables, [keras.ops.convert_to_numpy(v) for v in variables]


def run_one(model, state, student, init, train, steps, config, valid):
    variables, values = state
    for variable, value in zip(variables, values):
        variable.assign(value)
    student.set_weights(init)
    model.reset_metrics()
    curve, valid_curve = [], []
    began = time.perf_counter()
    for step, index in enumerate(steps, 1):
        x, y, sw = batch_of(train, index)
        logs = model.train_on_batch(x, y, sample_weight=sw, return_dict=True)
        if step % config["eval_every"] == 0 or step == len(steps):
            curve.append([step, float(logs["loss"])])
            loss = valid_loss(student, valid, config["generate_batch"])
            valid_curve.append([step, loss])
    return {
        "steps": len(steps),
        "seconds": time.perf_counter() - began,
        "train_loss": curve,
        "valid_loss": valid_curve,
        "final_valid_loss": valid_curve[-1][1],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--budget-s", type=float, default=200.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    for key, value in GPU.items():
        kind = float if isinstance(value, float) else int
        parser.add_argument("--" + key.replace("_", "-"), type=kind)
    args = parser.parse_args(argv)
    config = dict(TINY if args.tiny else GPU)
    for key in config:
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    variants = args.variants.split(",")

    import keras

    import keras_mta

    meta, train, valid = load(args.data)
    vocabulary, seq_len = meta["vocabulary"], meta["seq_len"]
    end_id = meta["end_token_id"]
    results = Results(
        args.out,
        {
            "backend": keras.backend.backend(),
            "device": device_name(keras.backend.backend()),
            "machine": bench_utils.machine_info(),
            "config": config,
            "data": meta,
            "variants": variants,
        },
    )
    keras.utils.set_random_seed(1000)
    teacher = build(config, "teacher", vocabulary, seq_len)
    train_teacher(
        teacher,
        train,
        config,
        TEACHER_SHARE * args.budget_s,
        results,
        end_id,
        valid,
    )
    teacher.trainable = False
    inits = student_inits(config, vocabulary, seq_len, config["seeds"])
    student = build(config, "student", vocabulary, seq_len)
    plan = keras_mta.AlignmentPlan.default(
        config["teacher_layers"],
        config["student_layers"],
        num_pairs=config["num_pairs"],
        word_pairs=1,
    )
    results.report["plan"] = plan.get_config()
    models = {}
    first = batch_of(train, order(meta["student_rows"], 1, 2, 0)[0])
    for variant in variants:
        model = bench_utils.build_variant(
            variant, teacher, student, plan, config["learning_rate"]
        )
        # Build the variables (projections, optimizer slots) without a
        # step, as `train_on_batch` does first, to put them back per run.
        model._symbolic_build(data_batch=first)
        models[variant] = (model, snapshot(model))
    # A seed's time once compiled: the fastest seed so far (the first one
    # also compiles every variant's step).
    fastest = 0.0
    for seed in range(config["seeds"]):
        elapsed = time.perf_counter() - STARTED
        if seed and elapsed + fastest > args.budget_s:
            results.report["skipped"].append(
                f"seeds {seed}..{config['seeds'] - 1}: {elapsed:.0f} s "
                f"spent, a seed takes {fastest:.0f} s, budget "
                f"{args.budget_s:.0f} s"
            )
            break
        began = time.perf_counter()
        steps = order(
            meta["student_rows"],
            config["student_steps"],
            config["batch_size"],
            seed,
        )
        for variant in variants:
            model, state = models[variant]
            run = run_one(
                model, state, student, inits[seed], train, steps, config, valid
            )
            run = {"variant": variant, "seed": seed, **run}
            results.generations[f"{variant}_s{seed}"] = generate(
                student, valid, config["generate_batch"], end_id
            )
            results.report["runs"].append(run)
            results.save()
            print(
                f"[{variant} seed {seed}] {run['steps']} steps in "
                f"{run['seconds']:.1f} s: valid loss "
                f"{run['final_valid_loss']:.4f}",
                flush=True,
            )
        seconds = time.perf_counter() - began
        fastest = min(fastest, seconds) if seed else seconds
    results.save()
    return 0


STARTED = time.perf_counter()

if __name__ == "__main__":
    sys.exit(main())
