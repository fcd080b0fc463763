"""Shared pieces of the training-step benchmarks.

- `real_unit_batches`: batches of real text (`t0_mix`), tokenized by a
  SentencePiece vocabulary trained on that text, with word and phrase units
  from the spaCy chunker through the span cache and `DistillationPreprocessor`
  (the training path). Cached as `.npz` under `runs/benchmarks/`, so a rerun
  neither imports spaCy nor tokenizes.
- `synthetic_unit_batches`: the same token ids with evenly sized units, for
  the unit-count sweep.
- `build_gpt2`, `build_variant`: random-weight keras-hub GPT-2 models and
  the compared training setups.
- `time_steps`, `run_worker`: the timed loop and its subprocess protocol
  (one variant per process, so that the peak RSS is the variant's own).

Not a test module: the scripts beside it import it.
"""

import gc
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from keras_mta.models.variants import VARIANTS as MODEL_VARIANTS
from keras_mta.models.variants import variant_name as model_variant_name
from keras_mta.utils import atomic_write

REPO = Path(__file__).resolve().parents[1]
OUTPUT_DIR = REPO / "runs" / "benchmarks"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "t0_mix" / "train.jsonl"

KERAS_DISTILLER = "keras_distiller"
# MTA with `nonfinite="ignore"`: the cost of the non-finite guard (a
# `LossScaleOptimizer` at scale 1 and a finite check of the loss terms).
MTA_UNGUARDED = "mta_unguarded"
# Our variants (named and labelled in `keras_mta.models.variants`) and, for
# comparison, Keras's own `keras.distillation.Distiller`.
MODEL_VARIANT_NAMES = ("sft", "kd", "kd_hra", "kd_dsa", "mta")
VARIANTS = (*MODEL_VARIANT_NAMES, MTA_UNGUARDED, KERAS_DISTILLER)
VARIANT_LABELS = {
    **{name: MODEL_VARIANTS[name].label for name in MODEL_VARIANT_NAMES},
    MTA_UNGUARDED: MODEL_VARIANTS["mta"].label + " without the guard",
    KERAS_DISTILLER: "keras.distillation.Distiller (logits KL)",
}
# `DistillationModel(ablation=...)` of each of our variants.
ABLATION = {
    **{name: MODEL_VARIANTS[name].ablation for name in MODEL_VARIANT_NAMES},
    MTA_UNGUARDED: MODEL_VARIANTS["mta"].ablation,
}


def variant_name(name):
    """The name in `VARIANTS` of `name` (older names such as `kd_only` and
    `full_mta` are read as `kd` and `mta`)."""
    if name in (KERAS_DISTILLER, MTA_UNGUARDED):
        return name
    return model_variant_name(name)


def variant_names(text):
    """The variant names of a comma-separated flag (older names accepted)."""
    return [variant_name(name) for name in text.split(",") if name]


def by_variant_name(results):
    """A dict keyed by variant, with the keys of older result files
    (`kd_only`, `full_mta`) read as today's names."""
    return {variant_name(key): value for key, value in results.items()}


# === Environment ===


def version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info():
    """Machine, Python and package versions, date and load average."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gb = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": memory_gb,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "versions": {
            name: version(name)
            for name in (
                "keras",
                "keras-hub",
                "jax",
                "jaxlib",
                "torch",
                "tensorflow",
                "numpy",
                "spacy",
                "sentencepiece",
            )
        },
    }


def peak_rss_mb():
    """Peak resident set size of this process, MiB (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def write_json(path, payload):
    atomic_write(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


# === Data ===


def _tokenizer(texts, vocabulary_size, directory):
    """SentencePiece tokenizer trained on `texts`, kept on disk."""
    import keras_hub

    from keras_mta.data.tokenizers import train_sentencepiece_tokenizer

    proto = Path(directory) / f"sentencepiece-{vocabulary_size}.model"
    if proto.exists():
        return keras_hub.models.LlamaTokenizer(proto=str(proto))
    return train_sentencepiece_tokenizer(texts, vocabulary_size, str(proto))


def real_unit_batches(
    seq_len,
    num_examples=64,
    vocabulary_size=8000,
    data=DEFAULT_DATA,
    directory=OUTPUT_DIR,
    tokenizer_texts=3000,
):
    """Real-text examples with real word and phrase units, as arrays.

    The first `num_examples` rows of `data` are formatted
    (`load_examples`), chunked by `PhraseChunker` through a `SpanCache`
    in `directory/span_cache`, tokenized with a SentencePiece vocabulary of
    `vocabulary_size` pieces trained on the first `tokenizer_texts` texts,
    and mapped to token ranges by `DistillationPreprocessor` at
    `seq_len` with `max_*_units = seq_len` (nothing dropped). The unit
    tensors are then cut to the largest count present, rounded up to a
    multiple of 8: the static unit capacity a user would choose for this
    data.

    Returns:
        dict of NumPy arrays `token_ids`, `padding_mask`, `word_units`,
        `phrase_units`, `y`, `sample_weight` (first axis: examples) and
        per-example counts `tokens`, `words`, `phrases`.
    """
    import numpy as np

    directory = Path(directory)
    path = directory / (
        f"units-seq{seq_len}-n{num_examples}-v{vocabulary_size}.npz"
    )
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}

    import keras_hub

    from keras_mta.data import load_examples
    from keras_mta.preprocessing import DistillationPreprocessor
    from keras_mta.preprocessing import SpanCache

    examples, _ = load_examples(
        str(data), limit=max(num_examples, tokenizer_texts)
    )
    tokenizer = _tokenizer(
        [e.text for e in examples[:tokenizer_texts]],
        vocabulary_size,
        directory,
    )
    examples = examples[:num_examples]
    cache = SpanCache(directory / "span_cache")
    preprocessor = DistillationPreprocessor(
        keras_hub.models.LlamaCausalLMPreprocessor(
            tokenizer, sequence_length=seq_len
        ),
        max_word_units=seq_len,
        max_phrase_units=seq_len,
        chunker=cache,
        sequence_length=seq_len,
    )
    x, y, sample_weight = preprocessor(
        {
            "prompt": [e.prompt for e in examples],
            "response": [e.response for e in examples],
        }
    )
    out = {k: np.asarray(v) for k, v in x.items()}
    out["padding_mask"] = out["padding_mask"].astype("int32")
    out["y"] = np.asarray(y)
    out["sample_weight"] = np.asarray(sample_weight)
    out["tokens"] = out["padding_mask"].sum(axis=1).astype("int32")
    for kind, key in (("words", "word_units"), ("phrases", "phrase_units")):
        units = out[key]
        counts = (units[..., 1] > units[..., 0]).sum(axis=1).astype("int32")
        out[kind] = counts
        capacity = max(8, int(-(-int(counts.max()) // 8) * 8))
        out[key] = np.ascontiguousarray(units[:, :capacity])
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def synthetic_units(batch, seq_len, unit_length, lengths):
    """Consecutive units of `unit_length` tokens covering each sequence."""
    import numpy as np

    num_units = -(-seq_len // unit_length)
    units = np.zeros((batch, num_units, 2), "int32")
    for b in range(batch):
        n = int(lengths[b])
        for u in range(num_units):
            start = u * unit_length
            if start >= n:
                break
            units[b, u] = [start, min(start + unit_length, n)]
    return units


def unit_summary(data):
    """Mean / max per-example counts of a `real_unit_batches` result."""
    return {
        key: {
            "mean": round(float(data[key].mean()), 1),
            "min": int(data[key].min()),
            "max": int(data[key].max()),
        }
        for key in ("tokens", "words", "phrases")
    } | {
        "word_capacity": int(data["word_units"].shape[1]),
        "phrase_capacity": int(data["phrase_units"].shape[1]),
    }


def batches(data, batch_size):
    """`(x, y, sample_weight)` batches from a `real_unit_batches` dict."""
    n = len(data["token_ids"]) // batch_size
    out = []
    for i in range(n):
        s = slice(i * batch_size, (i + 1) * batch_size)
        x = {
            key: data[key][s]
            for key in ("token_ids", "padding_mask", "word_units")
            + ("phrase_units",)
        }
        out.append((x, data["y"][s], data["sample_weight"][s]))
    return out


# === Models ===


def build_models(config, seq_len=None, with_teacher=True):
    """`(teacher or None, student, plan)` of a benchmark configuration:
    random-weight GPT-2 models and the default plan of `num_pairs`
    pairs (one word pair)."""
    import keras_mta

    seq_len = seq_len or config["seq_len"]
    teacher = None
    if with_teacher:
        teacher = build_gpt2(
            config["teacher_layers"],
            config["teacher_dim"],
            config["teacher_heads"],
            config["vocabulary_size"],
            seq_len,
            "teacher",
        )
    student = build_gpt2(
        config["student_layers"],
        config["student_dim"],
        config["student_heads"],
        config["vocabulary_size"],
        seq_len,
        "student",
    )
    plan = keras_mta.AlignmentPlan.default(
        config["teacher_layers"],
        config["student_layers"],
        num_pairs=config["num_pairs"],
        word_pairs=1,
    )
    return teacher, student, plan


def build_gpt2(
    num_layers,
    hidden_dim,
    num_heads,
    vocabulary_size,
    seq_len,
    name,
    dtype=None,
):
    """A random-weight keras-hub GPT-2 `CausalLM` without dropout."""
    import keras
    import keras_hub

    with keras.name_scope(name):
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=4 * hidden_dim,
            dropout=0.0,
            max_sequence_length=max(seq_len, 128),
            dtype=dtype,
        )
        return keras_hub.models.GPT2CausalLM(
            backbone=backbone, preprocessor=None, dtype=dtype
        )


def build_variant(variant, teacher, student, plan, learning_rate=1e-5):
    """A compiled model of one compared setup (see `VARIANTS`)."""
    import keras

    import keras_mta

    optimizer = keras.optimizers.AdamW(learning_rate)
    if variant == "keras_distiller":
        model = keras.distillation.Distiller(
            teacher=teacher,
            student=student,
            distillation_losses=keras.distillation.LogitsDistillation(
                temperature=1.0, loss=keras.losses.KLDivergence()
            ),
            student_loss_weight=0.5,
        )
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        return model
    model = keras_mta.DistillationModel(
        None if variant == "sft" else teacher,
        student,
        plan=plan,
        divergence="forward_kl",
        kd_ratio=0.5,
        mta_weight=2.0,
        ablation=ABLATION[variant],
        nonfinite="ignore" if variant == MTA_UNGUARDED else "stop",
    )
    model.compile(optimizer=optimizer)
    return model


def step_inputs(variant, batch):
    """`(x, y, sample_weight)` as the variant's `train_on_batch` takes it."""
    x, y, sample_weight = batch
    if variant == "keras_distiller":
        # The Distiller ignores sample weights and reads the models' inputs.
        return (
            {"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]},
            y,
            None,
        )
    return x, y, sample_weight


def time_steps(model, variant, batch_list, steps, warmup, sync=None):
    """Seconds of each of `steps` `train_on_batch` calls after `warmup`."""
    inputs = [step_inputs(variant, b) for b in batch_list]

    def one(i):
        x, y, sw = inputs[i % len(inputs)]
        logs = model.train_on_batch(x, y, sample_weight=sw, return_dict=True)
        # The returned logs are host floats: the step has finished.
        if sync is not None:
            sync()
        return logs

    first = time.perf_counter()
    for i in range(warmup):
        logs = one(i)
    warmup_s = time.perf_counter() - first
    times, cpu_times = [], []
    for i in range(steps):
        cpu = cpu_seconds()
        start = time.perf_counter()
        logs = one(warmup + i)
        times.append(time.perf_counter() - start)
        cpu_times.append(cpu_seconds() - cpu)
    loss = float(logs.get("loss", logs.get("total_loss", float("nan"))))
    return times, cpu_times, warmup_s, loss


def cpu_seconds():
    """User + system CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summarize(times, cpu_times=None):
    out = {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "mean_s": statistics.fmean(times),
        "steps": len(times),
    }
    if cpu_times:
        out["median_cpu_s"] = statistics.median(cpu_times)
        out["cpu_times_s"] = cpu_times
    return out


# === Subprocess protocol ===


def run_worker(script, args, backend, timeout=None, env_extra=None):
    """Run `script args` under `backend`; return its JSON result or error."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env["PYTHONPATH"]) if p
    )
    env.update(env_extra or {})
    command = [sys.executable, str(script), *args, "--result", out]
    try:
        proc = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(REPO),
        )
        if proc.returncode != 0:
            return {"error": proc.stderr[-3000:] or proc.stdout[-3000:]}
        with open(out) as f:
            return json.load(f)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    finally:
        if os.path.exists(out):
            os.remove(out)


def release(*objects):
    del objects
    gc.collect()


def fmt_table(headers, rows, align=None):
    """A Markdown table (also readable on a terminal)."""
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)
