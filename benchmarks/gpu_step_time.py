"""Step time of MTA against plain KD at the paper's shape, on one GPU.

Teacher: GPT-2 1.5B-shaped (48 blocks x 1600, 25 heads, vocabulary 50,257)
in `bfloat16` (frozen). Student: GPT-2 120M-shaped (12 x 768, 12 heads)
under `mixed_bfloat16` (float32 weights, bfloat16 compute; the losses are
float32). Random weights, sequence 512, batch 8, the paper's layer pairs
(`AlignmentPlan.gpt2_xl_to_gpt2()`: teacher `[24, 36, 48]`, student
`[6, 9, 12]`, one word pair). Units: every sequence full, word units of 2
tokens and phrase units of 4 (256 and 128 per sequence, above the real
per-token rates measured on `t0_mix`, about 0.51 words and 0.29 phrases
per token; see BENCHMARKS.md).

Variants, in this order (the first ones matter most): KD only, full MTA,
SFT only, `keras.distillation.Distiller` (logits KL), KD + DSA, KD + HRA.
One subprocess per backend (jax, torch) runs all variants on the same two
models (built once; a 1.5B teacher takes time to build and compile) and
writes its figures after each variant, so a timeout keeps what was
measured. A variant is skipped when the backend's time budget would not
hold it. Peak memory: torch `max_memory_allocated` (reset per variant);
jax `peak_bytes_in_use` of the device, which cannot be reset, so under
jax it is the peak of this variant and all before it.

    python benchmarks/gpu_step_time.py              # on one H200, < 8 min
    python benchmarks/gpu_step_time.py --tiny       # on CPU, in seconds

`--tiny` shrinks everything (teacher 4 x 64, student 2 x 32, vocabulary
256, sequence 32, batch 2) so the script itself can be tested on CPU under
the current backend. The table is printed last; JSON goes to `--output`.
"""

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

# bench_utils imports keras_mta (and so keras): choose the backend first.
os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_utils  # noqa: E402

PAPER = {
    "teacher_layers": 48,
    "teacher_dim": 1600,
    "teacher_heads": 25,
    "student_layers": 12,
    "student_dim": 768,
    "student_heads": 12,
    "vocabulary_size": 50257,
    "seq_len": 512,
    "batch_size": 8,
    "word_unit_length": 2,
    "phrase_unit_length": 4,
}
TINY = {
    "teacher_layers": 4,
    "teacher_dim": 64,
    "teacher_heads": 2,
    "student_layers": 2,
    "student_dim": 32,
    "student_heads": 2,
    "vocabulary_size": 256,
    "seq_len": 32,
    "batch_size": 2,
    "word_unit_length": 2,
    "phrase_unit_length": 4,
}
GPU_VARIANTS = (
    "kd",
    "mta",
    "sft",
    "keras_distiller",
    "kd_dsa",
    "kd_hra",
)


def make_batch(config, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    b, t = config["batch_size"], config["seq_len"]
    ids = rng.integers(1, config["vocabulary_size"], (b, t)).astype("int32")
    mask = np.ones((b, t), "int32")
    lengths = mask.sum(axis=1)
    x = {
        "token_ids": ids,
        "padding_mask": mask,
        "word_units": bench_utils.synthetic_units(
            b, t, config["word_unit_length"], lengths
        ),
        "phrase_units": bench_utils.synthetic_units(
            b, t, config["phrase_unit_length"], lengths
        ),
    }
    y = np.roll(ids, -1, axis=1)
    sample_weight = mask.astype("float32")
    sample_weight[:, -1] = 0.0
    return x, y, sample_weight


class Memory:
    """Peak accelerator memory of a variant (or RSS on CPU)."""

    def __init__(self, backend):
        self.backend = backend
        self.device = None
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                self.device = "cuda"
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                self.device = device

    def reset(self):
        if self.backend == "torch" and self.device:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_mb(self):
        if self.backend == "torch" and self.device:
            import torch

            return torch.cuda.max_memory_allocated() / 2**20, "cuda peak"
        if self.backend == "jax" and self.device is not None:
            stats = self.device.memory_stats() or {}
            peak = stats.get("peak_bytes_in_use")
            if peak is not None:
                return peak / 2**20, "device peak (cumulative)"
        return bench_utils.peak_rss_mb(), "process peak RSS (cumulative)"

    def sync(self):
        if self.backend == "torch" and self.device:
            import torch

            torch.cuda.synchronize()


def worker(args):
    import keras

    import keras_mta

    config = TINY if args.tiny else PAPER
    backend = keras.backend.backend()
    budget = args.budget_s
    start = time.perf_counter()
    result = {
        "backend": backend,
        "tiny": args.tiny,
        "config": config,
        "device": None,
        "variants": {},
        "skipped": [],
    }
    try:
        import jax

        if backend == "jax":
            result["device"] = str(jax.devices()[0])
    except ImportError:
        pass
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            result["device"] = torch.cuda.get_device_name(0)
    memory = Memory(backend)

    keras.utils.set_random_seed(0)
    built = time.perf_counter()
    teacher = bench_utils.build_gpt2(
        config["teacher_layers"],
        config["teacher_dim"],
        config["teacher_heads"],
        config["vocabulary_size"],
        config["seq_len"],
        "teacher",
        dtype="bfloat16",
    )
    student = bench_utils.build_gpt2(
        config["student_layers"],
        config["student_dim"],
        config["student_heads"],
        config["vocabulary_size"],
        config["seq_len"],
        "student",
        dtype="mixed_bfloat16",
    )
    result["build_s"] = time.perf_counter() - built
    if args.tiny:
        plan = keras_mta.AlignmentPlan.default(
            config["teacher_layers"], config["student_layers"]
        )
    else:
        plan = keras_mta.AlignmentPlan.gpt2_xl_to_gpt2()
    result["plan"] = plan.get_config()
    batch_list = [make_batch(config, seed) for seed in range(2)]
    slowest = 0.0
    for variant in bench_utils.variant_names(args.variants):
        elapsed = time.perf_counter() - start
        if (
            result["variants"]
            and not getattr(args, "try_all", False)
            and elapsed + 1.2 * slowest > budget
        ):
            result["skipped"].append(variant)
            continue
        began = time.perf_counter()
        memory.reset()
        model = bench_utils.build_variant(variant, teacher, student, plan)
        times, _, warmup_s, loss = bench_utils.time_steps(
            model, variant, batch_list, args.steps, args.warmup, memory.sync
        )
        peak, peak_kind = memory.peak_mb()
        result["variants"][variant] = {
            **bench_utils.summarize(times),
            "times_s": times,
            "warmup_s": warmup_s,
            "final_loss": loss,
            "peak_mb": peak,
            "peak_kind": peak_kind,
        }
        del model
        gc.collect()
        if backend == "jax":
            import jax

            jax.clear_caches()
        slowest = max(slowest, time.perf_counter() - began)
        result["elapsed_s"] = time.perf_counter() - start
        bench_utils.write_json(args.result, result)
        median = result["variants"][variant]["median_s"]
        print(
            f"[{backend}] {variant}: {median:.4f} s/step, "
            f"peak {peak:.0f} MiB ({peak_kind})",
            flush=True,
        )
    result["elapsed_s"] = time.perf_counter() - start
    bench_utils.write_json(args.result, result)


def run_backend(args, backend, timeout):
    """The worker under `backend`; its (possibly partial) JSON."""
    import subprocess
    import tempfile

    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(bench_utils.REPO), env.get("PYTHONPATH", "")) if p
    )
    if backend == "jax":
        # Let XLA take GPU memory as it needs it, like torch, so the two
        # backends can follow each other in one session.
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--result",
        out,
        "--variants",
        args.variants,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        # The worker stops starting variants a little before the limit.
        "--budget-s",
        str(max(timeout - 30, 1)),
    ]
    if args.tiny:
        command.append("--tiny")
    if args.try_all:
        command.append("--try-all")
    error = None
    try:
        proc = subprocess.run(
            command, env=env, timeout=timeout, capture_output=True, text=True
        )
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            error = (proc.stderr or proc.stdout)[-3000:]
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout:.0f} s"
    result = {"backend": backend, "variants": {}}
    try:
        with open(out) as f:
            text = f.read()
        if text.strip():
            result = json.loads(text)
    finally:
        os.remove(out)
    if error:
        result["error"] = error
    return result


def table(results):
    rows = []
    for r in results:
        backend = r["backend"]
        by_variant = bench_utils.by_variant_name(r["variants"])
        base = by_variant.get("kd", {})
        for variant in GPU_VARIANTS:
            v = by_variant.get(variant)
            if v is None:
                state = "skipped" if variant in r.get("skipped", []) else "-"
                if variant in r.get("skipped", []) or "error" in r:
                    rows.append(
                        [backend, bench_utils.VARIANT_LABELS[variant], state]
                        + [""] * 4
                    )
                continue
            ratio = (
                f"{v['median_s'] / base['median_s']:.3f}"
                if base.get("median_s")
                else "-"
            )
            mem = (
                f"{v['peak_mb'] / base['peak_mb']:.3f}"
                if base.get("peak_mb")
                else "-"
            )
            rows.append(
                [
                    backend,
                    bench_utils.VARIANT_LABELS[variant],
                    f"{v['median_s'] * 1000:.1f}",
                    ratio,
                    f"{v['peak_mb']:.0f}",
                    mem,
                    f"{v['warmup_s']:.1f}",
                ]
            )
    return bench_utils.fmt_table(
        [
            "backend",
            "variant",
            "median ms/step",
            "x KD only",
            "peak MiB",
            "peak x KD only",
            "warm-up s",
        ],
        rows,
        ["l", "l"] + ["r"] * 5,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="jax,torch")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--variants", default=",".join(GPU_VARIANTS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=420.0,
        help="total seconds for all backends (split evenly)",
    )
    parser.add_argument(
        "--try-all",
        action="store_true",
        help="start every variant even when the budget looks too short "
        "(the backend's timeout still stops it; what finished is kept)",
    )
    parser.add_argument("--output", default=None)
    parser.add_argument("--worker", action="store_true", help="internal")
    parser.add_argument("--result", default=None, help="internal")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    try:
        variants = bench_utils.variant_names(args.variants)
    except ValueError as e:
        parser.error(str(e))
    unknown = set(variants) - set(GPU_VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    args.variants = ",".join(variants)
    if args.output is None:
        name = "gpu_step_time_tiny.json" if args.tiny else "gpu_step_time.json"
        args.output = str(bench_utils.OUTPUT_DIR / name)

    backends = args.backends.split(",")
    started = time.perf_counter()
    machine = bench_utils.machine_info()
    results = []
    for i, backend in enumerate(backends):
        left = args.budget_s - (time.perf_counter() - started)
        share = max(left / (len(backends) - i), 60.0)
        print(f"[{backend}] budget {share:.0f} s", flush=True)
        results.append(run_backend(args, backend, share))
    text = table(results)
    bench_utils.write_json(
        args.output,
        {
            "command": "python benchmarks/gpu_step_time.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine,
            "wall_s": time.perf_counter() - started,
            "results": results,
            "table": text,
        },
    )
    for r in results:
        if "error" in r:
            print(f"[{r['backend']}] error:\n{r['error']}")
    print()
    print(text)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
