"""Where the step time goes, and how MTA's cost grows with T and U.

Under jax, in one process, each piece of a training step is compiled
(`jax.jit`) and timed on its own, interleaved round-robin so that a busy
machine slows all pieces alike (median over `--repeats` rounds):

- `teacher fwd`: the teacher's forward pass through the view that keeps
  the mapped hidden states (`hidden_states_model`);
- `student fwd+bwd`: the student's forward pass and the gradient of the
  next-token cross-entropy with respect to all its weights;
- `KD fwd+bwd`: forward KL on the logits, and its gradient;
- `MTA fwd+bwd`: `TrajectoryAlignmentLoss` over the three pairs, and its
  gradient with respect to the student states and the projectors; and its
  parts: the teacher's and the student's token importance (3 pairs each),
  DSA only, HRA only.

`KD step = teacher fwd + student fwd+bwd + KD`, `MTA step = KD step + MTA`
(the optimizer update is the same in both and left out). Three tables:

1. the breakdown at the mid configuration (teacher 8 x 512, student
   4 x 256, vocabulary 8,000, sequence 256, batch 8, real units);
2. sequence length 128, 256, 512 (real units at each length);
3. the number of units at sequence 256: evenly sized units of 8, 4, 2 and
   1 tokens (32 to 256 units per sequence, word and phrase alike).

With `--train-steps N`, also whole `train_on_batch` steps of KD only and
full MTA at each sequence length (subprocesses of `step_time.py`, median
of N steps; slow on a small CPU).

    python benchmarks/scaling.py

Prints the tables and writes JSON (`--output`).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_utils  # noqa: E402
from step_time import MID  # noqa: E402

PIECES = (
    "teacher fwd",
    "student fwd+bwd",
    "KD fwd+bwd",
    "MTA fwd+bwd",
    "teacher importance",
    "student importance",
    "DSA fwd+bwd",
    "HRA fwd+bwd",
)


class Pieces:
    """Compiled pieces of a step for one teacher/student pair."""

    def __init__(self, config):
        import jax
        import keras

        from keras_mta.layers import TrajectoryAlignmentLoss
        from keras_mta.losses import get_divergence
        from keras_mta.losses import token_importance
        from keras_mta.models import hidden_states_model

        keras.utils.set_random_seed(0)
        self.config = config
        teacher, student, plan = bench_utils.build_models(config, seq_len=512)
        self.t_view = hidden_states_model(teacher, plan.teacher_layers)
        self.s_view = hidden_states_model(student, plan.student_layers)
        self.t_vars = (
            [v.value for v in self.t_view.trainable_variables],
            [v.value for v in self.t_view.non_trainable_variables],
        )
        self.s_vars = (
            [v.value for v in self.s_view.trainable_variables],
            [v.value for v in self.s_view.non_trainable_variables],
        )
        dims = [config["teacher_dim"]] * plan.num_pairs
        self.layers = {
            name: TrajectoryAlignmentLoss(
                teacher_dims=dims,
                student_dims=[config["student_dim"]] * plan.num_pairs,
                word_pairs=plan.word_pairs,
                use_dsa=use_dsa,
                use_hra=use_hra,
                dtype="float32",
            )
            for name, use_dsa, use_hra in (
                ("MTA fwd+bwd", True, True),
                ("DSA fwd+bwd", True, False),
                ("HRA fwd+bwd", False, True),
            )
        }
        divergence = get_divergence("forward_kl")
        t_view, s_view = self.t_view, self.s_view

        def teacher_fwd(t_vars, x):
            out, _ = t_view.stateless_call(*t_vars, x, training=False)
            return out

        def ce(s_train, s_rest, x, y, w):
            out, _ = s_view.stateless_call(s_train, s_rest, x, training=True)
            logits = keras.ops.cast(out["logits"], "float32")
            per_token = keras.ops.sparse_categorical_crossentropy(
                y, logits, from_logits=True
            )
            return keras.ops.sum(per_token * w) / keras.ops.sum(w), out

        def kd(t_logits, s_logits, w):
            return divergence(t_logits, s_logits, sample_weight=w)

        def make_mta(layer):
            variables = [v.value for v in layer.trainable_variables]

            def mta(variables, s_hidden, t_hidden, words, phrases, mask):
                out, _ = layer.stateless_call(
                    variables, [], s_hidden, t_hidden, words, phrases, mask
                )
                return out["loss"]

            grad = jax.jit(jax.value_and_grad(mta, argnums=(0, 1)))
            return lambda *args: grad(variables, *args)

        def importances(hidden, mask):
            return [token_importance(h, mask) for h in hidden]

        self.fns = {
            "teacher fwd": jax.jit(teacher_fwd),
            "student fwd+bwd": jax.jit(
                jax.value_and_grad(ce, has_aux=True), static_argnums=()
            ),
            "KD fwd+bwd": jax.jit(jax.value_and_grad(kd, argnums=1)),
            "importance": jax.jit(importances),
        }
        self.mta = {
            name: make_mta(layer) for name, layer in self.layers.items()
        }

    def calls(self, batch):
        """Zero-argument callables of every piece on `batch`."""
        import jax

        x, y, w = batch
        inputs = {
            "token_ids": x["token_ids"],
            "padding_mask": x["padding_mask"],
        }
        t_out = self.fns["teacher fwd"](self.t_vars, inputs)
        (_, s_out), _ = self.fns["student fwd+bwd"](*self.s_vars, inputs, y, w)
        t_hidden = list(t_out["hidden_states"])
        s_hidden = list(s_out["hidden_states"])
        mask = x["padding_mask"]
        unit_args = (x["word_units"], x["phrase_units"], mask)
        calls = {
            "teacher fwd": lambda: self.fns["teacher fwd"](self.t_vars, inputs),
            "student fwd+bwd": lambda: self.fns["student fwd+bwd"](
                *self.s_vars, inputs, y, w
            ),
            "KD fwd+bwd": lambda: self.fns["KD fwd+bwd"](
                t_out["logits"], s_out["logits"], w
            ),
            "teacher importance": lambda: self.fns["importance"](
                t_hidden, mask
            ),
            "student importance": lambda: self.fns["importance"](
                s_hidden, mask
            ),
        }
        for name, fn in self.mta.items():
            calls[name] = (
                lambda fn=fn: fn(s_hidden, t_hidden, *unit_args)  # noqa: E731
            )
        return {
            name: (lambda c=c: jax.block_until_ready(c()))
            for name, c in calls.items()
        }


def measure(pieces, batch, repeats):
    calls = pieces.calls(batch)
    for call in calls.values():  # compile
        call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    kd_step = med["teacher fwd"] + med["student fwd+bwd"] + med["KD fwd+bwd"]
    med["KD step"] = kd_step
    med["MTA step"] = kd_step + med["MTA fwd+bwd"]
    med["MTA / KD"] = med["MTA step"] / kd_step
    return med


def first_batch(data, batch_size, word_units=None, phrase_units=None):
    x, y, w = bench_utils.batches(data, batch_size)[0]
    x = dict(x)
    if word_units is not None:
        x["word_units"] = word_units
        x["phrase_units"] = phrase_units
    return x, y, w


def ms(seconds):
    return f"{seconds * 1000:.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seq-lens", default="128,256,512")
    parser.add_argument("--unit-lengths", default="8,4,2,1")
    parser.add_argument("--num-examples", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=0)
    parser.add_argument(
        "--output", default=str(bench_utils.OUTPUT_DIR / "scaling.json")
    )
    args = parser.parse_args(argv)
    import keras

    if keras.backend.backend() != "jax":
        parser.error("scaling.py times jitted pieces: run with jax.")
    machine = bench_utils.machine_info()
    config = dict(MID)
    batch_size = config["batch_size"]
    pieces = Pieces(config)
    out = {
        "command": "python benchmarks/scaling.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "config": config,
    }

    # 1 + 2: breakdown per sequence length, real units.
    by_seq = {}
    for seq_len in [int(s) for s in args.seq_lens.split(",")]:
        data = bench_utils.real_unit_batches(
            seq_len, num_examples=args.num_examples
        )
        load = os.getloadavg()[0]
        med = measure(pieces, first_batch(data, batch_size), args.repeats)
        med["load_avg"] = load
        med["units"] = bench_utils.unit_summary(data)
        by_seq[seq_len] = med
        print(f"seq {seq_len}: MTA/KD {med['MTA / KD']:.3f}", flush=True)
    out["by_seq_len"] = by_seq

    # 3: number of units at the mid sequence length.
    data = bench_utils.real_unit_batches(
        config["seq_len"], num_examples=args.num_examples
    )
    lengths = data["padding_mask"][:batch_size].sum(axis=1)
    by_units = {}
    for unit_length in [int(u) for u in args.unit_lengths.split(",")]:
        units = bench_utils.synthetic_units(
            batch_size, config["seq_len"], unit_length, lengths
        )
        load = os.getloadavg()[0]
        med = measure(
            pieces,
            first_batch(data, batch_size, units, units),
            args.repeats,
        )
        med["load_avg"] = load
        med["units_per_sequence"] = int(units.shape[1])
        by_units[unit_length] = med
        print(
            f"{units.shape[1]} units: MTA/KD {med['MTA / KD']:.3f}",
            flush=True,
        )
    out["by_units"] = by_units

    # 4 (optional): whole training steps.
    if args.train_steps:
        from step_time import run_suite

        steps = {}
        for seq_len in [int(s) for s in args.seq_lens.split(",")]:
            ns = argparse.Namespace(
                backends="jax",
                steps=args.train_steps,
                warmup=2,
                seq_len=seq_len,
                batch_size=batch_size,
                num_examples=args.num_examples,
                timeout=3600,
            )
            steps[seq_len] = run_suite(
                ns,
                ["kd", "mta"],
                Path(__file__).resolve().parent / "step_time.py",
            )["jax"]
        out["train_steps"] = steps

    tables = []
    mid = by_seq.get(config["seq_len"]) or next(iter(by_seq.values()))
    rows = [
        [name, ms(mid[name]), f"{mid[name] / mid['KD step'] * 100:.1f}"]
        for name in PIECES + ("KD step", "MTA step")
    ]
    tables.append(
        "Breakdown at the mid configuration (jax, jit):\n\n"
        + bench_utils.fmt_table(["piece", "median ms", "% of KD step"], rows)
    )
    rows = []
    for seq_len, med in by_seq.items():
        rows.append(
            [
                seq_len,
                f"{med['units']['words']['mean']:.0f} / "
                f"{med['units']['phrases']['mean']:.0f}",
                ms(med["KD step"]),
                ms(med["MTA fwd+bwd"]),
                ms(med["teacher importance"] + med["student importance"]),
                f"{med['MTA / KD']:.3f}",
                f"{med['load_avg']:.1f}",
            ]
        )
    tables.append(
        "By sequence length (real units, batch 8):\n\n"
        + bench_utils.fmt_table(
            [
                "seq",
                "words / phrases per example",
                "KD step ms",
                "MTA ms",
                "importance ms (both)",
                "MTA step / KD step",
                "load avg",
            ],
            rows,
        )
    )
    rows = []
    for unit_length, med in by_units.items():
        rows.append(
            [
                med["units_per_sequence"],
                unit_length,
                ms(med["MTA fwd+bwd"]),
                ms(med["DSA fwd+bwd"]),
                ms(med["HRA fwd+bwd"]),
                f"{med['MTA / KD']:.3f}",
                f"{med['load_avg']:.1f}",
            ]
        )
    tables.append(
        f"By number of units (sequence {config['seq_len']}, batch 8):\n\n"
        + bench_utils.fmt_table(
            [
                "units / sequence",
                "tokens / unit",
                "MTA ms",
                "DSA ms",
                "HRA ms",
                "MTA step / KD step",
                "load avg",
            ],
            rows,
        )
    )
    if args.train_steps:
        rows = []
        for seq_len, res in out["train_steps"].items():
            res = bench_utils.by_variant_name(res)
            kd, full = res.get("kd", {}), res.get("mta", {})
            if "median_s" in kd and "median_s" in full:
                rows.append(
                    [
                        seq_len,
                        ms(kd["median_s"]),
                        ms(full["median_s"]),
                        f"{full['median_s'] / kd['median_s']:.3f}",
                        f"{full['median_cpu_s'] / kd['median_cpu_s']:.3f}",
                    ]
                )
        tables.append(
            "Whole train_on_batch steps (jax):\n\n"
            + bench_utils.fmt_table(
                [
                    "seq",
                    "KD only ms",
                    "full MTA ms",
                    "wall ratio",
                    "CPU ratio",
                ],
                rows,
            )
        )
    out["tables"] = tables
    out["load_avg_end"] = list(os.getloadavg())
    bench_utils.write_json(args.output, out)
    print()
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
