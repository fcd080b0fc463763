"""Training-step time and peak memory: MTA against plain KD.

One "mid" configuration, the paper's shape at CPU size: a GPT-2 teacher of
8 blocks x 512, a GPT-2 student of 4 x 256, vocabulary 8,000, sequence 256,
batch 8, three layer pairs (`AlignmentPlan.default(8, 4)`: teacher
`[4, 6, 8]`, student `[2, 3, 4]`, one word pair), random weights. Batches
are real texts (`t0_mix`) with their real word and phrase units (spaCy
chunks through the span cache, mapped to tokens by
`DistillationPreprocessor`; see `bench_utils.real_unit_batches`).

Variants: SFT only, KD only, KD + HRA, KD + DSA, full MTA (all
`keras_mta.DistillationModel`) and `keras.distillation.Distiller` with
`LogitsDistillation(temperature=1, loss=keras.losses.KLDivergence())`.
Each variant runs in its own subprocess (so the peak RSS is its own):
build, compile, `warmup` steps, then the median of `steps`
`train_on_batch` calls. Ratios are to KD only of the same backend and run.

Not a test: run it by hand and copy the table into BENCHMARKS.md.

    python benchmarks/step_time.py --backends jax,torch,tensorflow

Prints a table and writes JSON (`--output`).
"""

import argparse
import os
import sys
import time
from pathlib import Path

# bench_utils imports keras_mta (and so keras): choose the backend first.
os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_utils  # noqa: E402

MID = {
    "teacher_layers": 8,
    "teacher_dim": 512,
    "teacher_heads": 8,
    "student_layers": 4,
    "student_dim": 256,
    "student_heads": 4,
    "vocabulary_size": 8000,
    "seq_len": 256,
    "batch_size": 8,
    "num_pairs": 3,
}


def worker(args):
    """One variant in this process; writes its figures to `args.result`."""
    import keras
    import numpy as np

    config = dict(MID, seq_len=args.seq_len, batch_size=args.batch_size)
    data = bench_utils.real_unit_batches(
        config["seq_len"], num_examples=args.num_examples
    )
    if args.unit_length:
        # Unit-count sweep: evenly sized units instead of real ones.
        lengths = data["padding_mask"].sum(axis=1)
        batch = len(lengths)
        units = bench_utils.synthetic_units(
            batch, config["seq_len"], args.unit_length, lengths
        )
        data = dict(data, word_units=units, phrase_units=units)
    batch_list = bench_utils.batches(data, config["batch_size"])
    keras.utils.set_random_seed(0)
    rss_start = bench_utils.current_rss_mb()
    teacher, student, plan = bench_utils.build_models(
        config, with_teacher=args.variant != "sft"
    )
    model = bench_utils.build_variant(args.variant, teacher, student, plan)
    rss_built = bench_utils.current_rss_mb()
    times, cpu_times, warmup_s, loss = bench_utils.time_steps(
        model, args.variant, batch_list, args.steps, args.warmup
    )
    result = {
        "variant": args.variant,
        "backend": keras.backend.backend(),
        "config": config,
        "unit_length": args.unit_length,
        "word_units_shape": list(data["word_units"].shape[1:]),
        "phrase_units_shape": list(data["phrase_units"].shape[1:]),
        "times_s": times,
        **bench_utils.summarize(times, cpu_times),
        "warmup_s": warmup_s,
        "final_loss": loss,
        "rss_start_mb": rss_start,
        "rss_built_mb": rss_built,
        "peak_rss_mb": bench_utils.peak_rss_mb(),
        "trainable_params": int(
            sum(np.prod(v.shape) for v in model.trainable_variables)
        ),
        "load_avg_end": list(os.getloadavg()),
    }
    bench_utils.write_json(args.result, result)


def interleaved(args, variants):
    """All variants in this process on shared models, steps round-robin.

    Load changes on a shared machine then hit every variant alike, so the
    ratios are robust; peak memory is not per variant here.
    """
    import statistics

    import keras

    config = dict(MID, seq_len=args.seq_len, batch_size=args.batch_size)
    data = bench_utils.real_unit_batches(
        config["seq_len"], num_examples=args.num_examples
    )
    batch_list = bench_utils.batches(data, config["batch_size"])
    keras.utils.set_random_seed(0)
    teacher, student, plan = bench_utils.build_models(config)
    models = {
        v: bench_utils.build_variant(v, teacher, student, plan)
        for v in variants
    }
    for variant, model in models.items():
        bench_utils.time_steps(model, variant, batch_list, 0, args.warmup)
    times = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    loads = []
    for step in range(args.steps):
        loads.append(os.getloadavg()[0])
        for variant, model in models.items():
            t, c, _, _ = bench_utils.time_steps(
                model, variant, batch_list[step % len(batch_list) :], 1, 0
            )
            times[variant] += t
            cpu[variant] += c
        print(f"round {step}: load {loads[-1]:.1f}", flush=True)
    out = {}
    for v in variants:
        out[v] = {
            "median_s": statistics.median(times[v]),
            "median_cpu_s": statistics.median(cpu[v]),
            "times_s": times[v],
            "cpu_times_s": cpu[v],
        }
    base = out.get("kd")
    rows = []
    for v in variants:
        r = out[v]
        rows.append(
            [
                keras.backend.backend(),
                bench_utils.VARIANT_LABELS[v],
                f"{r['median_s'] * 1000:.0f}",
                f"{r['median_s'] / base['median_s']:.3f}" if base else "-",
                f"{r['median_cpu_s']:.2f}",
                f"{r['median_cpu_s'] / base['median_cpu_s']:.3f}"
                if base
                else "-",
            ]
        )
    text = bench_utils.fmt_table(
        [
            "backend",
            "variant",
            "median ms/step",
            "x KD only",
            "CPU s/step",
            "CPU x KD only",
        ],
        rows,
        ["l", "l", "r", "r", "r", "r"],
    )
    text += (
        f"\n\n{args.steps} rounds, load average "
        f"{min(loads):.1f} to {max(loads):.1f}"
    )
    return out, text


def run_suite(args, variants, script, extra=()):
    """All variants under all backends, one subprocess each."""
    results = {}
    for backend in args.backends.split(","):
        for variant in variants:
            start = time.perf_counter()
            load = os.getloadavg()[0]
            out = bench_utils.run_worker(
                script,
                [
                    "--worker",
                    "--variant",
                    variant,
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                    "--seq-len",
                    str(args.seq_len),
                    "--batch-size",
                    str(args.batch_size),
                    "--num-examples",
                    str(args.num_examples),
                    *extra,
                ],
                backend,
                timeout=args.timeout,
            )
            out["load_avg_start"] = load
            out["wall_s"] = time.perf_counter() - start
            results.setdefault(backend, {})[variant] = out
            status = (
                f"median {out['median_s']:.3f} s"
                if "median_s" in out
                else "FAILED: " + out["error"].strip().splitlines()[-1]
            )
            print(
                f"[{backend}] {variant:16s} {status} "
                f"(load {load:.1f}, {out['wall_s']:.0f} s)",
                flush=True,
            )
    return results


def table(results, variants):
    rows = []
    for backend, by_variant in results.items():
        base = by_variant.get("kd", {})
        for variant in variants:
            r = by_variant.get(variant, {})
            if "median_s" not in r:
                rows.append([backend, bench_utils.VARIANT_LABELS[variant]])
                continue
            ratio = (
                f"{r['median_s'] / base['median_s']:.3f}"
                if "median_s" in base
                else "-"
            )
            cpu_ratio = (
                f"{r['median_cpu_s'] / base['median_cpu_s']:.3f}"
                if "median_cpu_s" in base
                else "-"
            )
            mem_ratio = (
                f"{r['peak_rss_mb'] / base['peak_rss_mb']:.3f}"
                if "peak_rss_mb" in base
                else "-"
            )
            rows.append(
                [
                    backend,
                    bench_utils.VARIANT_LABELS[variant],
                    f"{r['median_s'] * 1000:.0f}",
                    f"{r['min_s'] * 1000:.0f}",
                    ratio,
                    f"{r['median_cpu_s']:.2f}",
                    cpu_ratio,
                    f"{r['peak_rss_mb']:.0f}",
                    f"{r['peak_rss_mb'] - r['rss_built_mb']:.0f}",
                    mem_ratio,
                    f"{r['load_avg_start']:.1f}",
                ]
            )
    return bench_utils.fmt_table(
        [
            "backend",
            "variant",
            "median ms/step",
            "min ms",
            "x KD only",
            "CPU s/step",
            "CPU x KD only",
            "peak RSS MiB",
            "step RSS MiB",
            "peak x KD only",
            "load avg",
        ],
        rows,
        ["l", "l"] + ["r"] * 9,
    )


def add_common_args(parser):
    parser.add_argument("--backends", default="jax,torch,tensorflow")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=MID["seq_len"])
    parser.add_argument("--batch-size", type=int, default=MID["batch_size"])
    parser.add_argument("--num-examples", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--worker", action="store_true", help="internal")
    parser.add_argument("--variant", default=None, help="internal")
    parser.add_argument("--unit-length", type=int, default=0, help="internal")
    parser.add_argument("--result", default=None, help="internal")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument(
        "--variants",
        default=",".join(bench_utils.VARIANTS),
        help="comma-separated subset of " + ",".join(bench_utils.VARIANTS),
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="all variants in this process (current backend), steps "
        "round-robin: robust ratios on a busy machine, no per-variant "
        "memory",
    )
    parser.add_argument(
        "--output",
        default=str(bench_utils.OUTPUT_DIR / "step_time.json"),
    )
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.interleave:
        machine = bench_utils.machine_info()
        results, text = interleaved(
            args, bench_utils.variant_names(args.variants)
        )
        bench_utils.write_json(
            args.output,
            {
                "command": "python benchmarks/step_time.py "
                + " ".join(argv if argv is not None else sys.argv[1:]),
                "machine": machine,
                "load_avg_end": list(os.getloadavg()),
                "results": results,
                "table": text,
            },
        )
        print()
        print(text)
        return

    # Prepare (and cache) the real-unit batches once, outside the timing.
    data = bench_utils.real_unit_batches(
        args.seq_len, num_examples=args.num_examples
    )
    units = bench_utils.unit_summary(data)
    machine = bench_utils.machine_info()
    variants = bench_utils.variant_names(args.variants)
    print(f"units per example: {units}", flush=True)
    results = run_suite(args, variants, Path(__file__).resolve())
    text = table(results, variants)
    bench_utils.write_json(
        args.output,
        {
            "command": "python benchmarks/step_time.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine,
            "load_avg_end": list(os.getloadavg()),
            "units": units,
            "results": results,
            "table": text,
        },
    )
    print()
    print(text)


if __name__ == "__main__":
    main()
