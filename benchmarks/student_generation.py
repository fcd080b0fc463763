"""Training on the student's own outputs: what generation costs a step,
and whether the span path keeps up with generated text.

At the mid configuration of `step_time.py` (GPT-2 teacher 8 x 512,
student 4 x 256, vocabulary 8,000, sequence 256, batch 8, full MTA), on
the prompts of the first `t0_mix` rows, in one process (current backend):

- step time without generation: `train_on_batch` on ground-truth batches
  (real texts, real units);
- step time with generation, synchronous: `StudentResponses.
  generate_batch` (the student samples, spaCy chunks in the same
  `--n-process` workers, waited for, the preprocessor tokenizes and finds
  units) then `train_on_batch` on that batch;
- step time with generation, overlapped: `submit` the next batch (the
  student samples on this thread, chunking and preprocessing run in the
  background, spaCy in `--n-process` worker processes), train on the
  current one, collect the next (`result()`);
- the parts of a generated batch: sampling, chunking (spaCy, this
  process), the preprocessor (tokens + units);
- the span path on generated text: chunking texts / s with 1 process and
  with `n_process` worker processes (a stream of batches submitted
  ahead), against the texts / s the training step consumes (`batch /
  step`) and against what a 0.3 s GPU step would consume.

Blocks of `--steps` steps each (without, synchronous, overlapped), the
whole sequence repeated `--rounds` times, so that load changes on a shared
machine show as differences between rounds. The student has random
weights: it rarely samples the end token, so generations run to the
window (the worst case for sampling time and for chunking).

    python benchmarks/student_generation.py
    python benchmarks/student_generation.py --tiny   # seconds, for tests

Prints a table, writes JSON (`--output`).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_utils  # noqa: E402
import step_time  # noqa: E402

# The mid configuration of `step_time.py`, with the unit capacities of the
# real-unit batches of BENCHMARKS.md (the largest counts of the first 64
# rows, rounded up to 8).
MID = dict(step_time.MID, max_word_units=152, max_phrase_units=96)
TINY = {
    "teacher_layers": 2,
    "teacher_dim": 16,
    "teacher_heads": 2,
    "student_layers": 2,
    "student_dim": 8,
    "student_heads": 2,
    "vocabulary_size": 300,
    "seq_len": 128,
    "batch_size": 2,
    "num_pairs": 2,
    "max_word_units": 64,
    "max_phrase_units": 32,
}
# The GPU step to keep up with (the yardstick).
GPU_STEP_S = 0.3


def _data(config, num_examples, directory, tiny):
    """`(examples, tokenizer)`: formatted `t0_mix` rows and the
    SentencePiece tokenizer of the configuration's vocabulary. With
    `tiny`, only rows whose prompt leaves half the window to the response
    (the tiny window is short)."""
    from keras_mta.data import load_examples

    tokenizer_texts = 200 if tiny else 3000
    examples, _ = load_examples(
        str(bench_utils.DEFAULT_DATA),
        limit=max(num_examples, tokenizer_texts) * (10 if tiny else 1),
    )
    tokenizer = bench_utils._tokenizer(
        [e.text for e in examples[:tokenizer_texts]],
        config["vocabulary_size"],
        directory,
    )
    if tiny:
        lengths = [len(ids) for ids in tokenizer([e.prompt for e in examples])]
        examples = [
            e for e, n in zip(examples, lengths) if n <= config["seq_len"] // 2
        ]
    return examples[:num_examples], tokenizer


def measure(args):
    import keras
    import keras_hub

    from keras_mta.generation import StudentResponses
    from keras_mta.preprocessing import DistillationPreprocessor
    from keras_mta.preprocessing import PhraseChunker
    from keras_mta.preprocessing.background_chunker import BackgroundChunker

    # Before any SentencePiece tokenizer runs: seeding clears TensorFlow's
    # kernel cache, and the tokenizer's resource with it.
    keras.utils.set_random_seed(0)
    config = dict(TINY if args.tiny else MID)
    batch = config["batch_size"]
    n_batches = args.rounds * args.steps + args.warmup + 2
    directory = Path(args.work_dir or tempfile.mkdtemp())
    directory.mkdir(parents=True, exist_ok=True)
    examples, tokenizer = _data(config, n_batches * batch, directory, args.tiny)
    prompt_batches = [
        [e.prompt for e in examples[i * batch : (i + 1) * batch]]
        for i in range(len(examples) // batch)
    ]

    chunker = PhraseChunker()
    chunker.nlp  # noqa: B018 (load the pipeline outside the timing)
    causal_preprocessor = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer, sequence_length=config["seq_len"]
    )
    preprocessor = DistillationPreprocessor(
        causal_preprocessor,
        max_word_units=config["max_word_units"],
        max_phrase_units=config["max_phrase_units"],
        chunker=chunker,
    )
    truth = []
    for i in range(len(prompt_batches)):
        part = examples[i * batch : (i + 1) * batch]
        x, y, weight = preprocessor(
            {
                "prompt": [e.prompt for e in part],
                "response": [e.response for e in part],
            }
        )
        truth.append(
            (
                {k: keras.ops.convert_to_numpy(v) for k, v in x.items()},
                keras.ops.convert_to_numpy(y),
                keras.ops.convert_to_numpy(weight),
            )
        )

    teacher, student, plan = bench_utils.build_models(config)
    student.preprocessor = causal_preprocessor
    model = bench_utils.build_variant("mta", teacher, student, plan)
    responder = StudentResponses(
        student,
        preprocessor,
        seed=0,
        max_new_tokens=args.max_new_tokens,
        n_process=args.n_process,
    )
    timings = {key: [] for key in ("without", "synchronous", "overlapped")}
    parts = {key: [] for key in ("sample", "chunk", "preprocess")}

    def train(data):
        x, y, weight = data
        model.train_on_batch(x, y, sample_weight=weight, return_dict=True)

    # Warm-up: compile the step, the generation and the preprocessor; start
    # the worker processes.
    for i in range(args.warmup):
        train(truth[i])
        train(responder.generate_batch(prompt_batches[i]))
    responder.submit(prompt_batches[0]).result()

    loads = []
    cursor = args.warmup
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for i in range(args.steps):
            start = time.perf_counter()
            train(truth[(cursor + i) % len(truth)])
            timings["without"].append(time.perf_counter() - start)
        for i in range(args.steps):
            prompts = prompt_batches[(cursor + i) % len(prompt_batches)]
            start = time.perf_counter()
            train(responder.generate_batch(prompts))
            timings["synchronous"].append(time.perf_counter() - start)
        pending = responder.submit(prompt_batches[cursor % len(prompt_batches)])
        for i in range(args.steps):
            prompts = prompt_batches[(cursor + i + 1) % len(prompt_batches)]
            start = time.perf_counter()
            data = pending.result()
            pending = responder.submit(prompts)
            train(data)
            timings["overlapped"].append(time.perf_counter() - start)
        pending.result()
        # The parts of a generated batch, one at a time.
        for i in range(args.steps):
            prompts = prompt_batches[(cursor + i) % len(prompt_batches)]
            start = time.perf_counter()
            prompts, responses = responder._sample(prompts)
            parts["sample"].append(time.perf_counter() - start)
            texts = [p + r for p, r in zip(prompts, responses) if r.strip()]
            start = time.perf_counter()
            spans = chunker.chunk(texts)
            parts["chunk"].append(time.perf_counter() - start)
            start = time.perf_counter()
            responder._assemble(prompts, responses, spans)
            parts["preprocess"].append(time.perf_counter() - start)
        cursor += args.steps

    # The span path on generated text: 1 process, and n_process workers fed
    # a stream of batches submitted ahead.
    generated = []
    for prompts in prompt_batches[: args.steps]:
        prompts, responses = responder._sample(prompts)
        generated.append(
            [p + r for p, r in zip(prompts, responses) if r.strip()]
        )
    count = sum(len(texts) for texts in generated)
    rates = {}
    start = time.perf_counter()
    for texts in generated:
        chunker.chunk(texts)
    rates[1] = count / (time.perf_counter() - start)
    if args.n_process != 1:
        with BackgroundChunker(chunker, n_process=args.n_process) as pool:
            pool.submit(generated[0]).result()  # start the workers
            start = time.perf_counter()
            futures = [pool.submit(texts) for texts in generated]
            for future in futures:
                future.result()
            rates[pool.processes] = count / (time.perf_counter() - start)
    responder.close()

    medians = {k: statistics.median(v) for k, v in timings.items()}
    part_medians = {k: statistics.median(v) for k, v in parts.items()}
    return {
        "backend": keras.backend.backend(),
        "config": config,
        "n_process": args.n_process,
        "max_new_tokens": args.max_new_tokens,
        "timings_s": timings,
        "parts_s": parts,
        "median_s": medians,
        "parts_median_s": part_medians,
        "chunk_texts_per_s": {str(k): v for k, v in rates.items()},
        "generated_texts": count,
        "mean_generated_chars": sum(len(t) for g in generated for t in g)
        / max(count, 1),
        "degenerate_responses": responder.degenerate_responses,
        "generated_responses": responder.generated_responses,
        "load_avg_rounds": loads,
        "load_avg_end": list(os.getloadavg()),
    }


def report(result):
    """The two Markdown tables of a `measure` result."""
    medians = result["median_s"]
    base = medians["without"]
    rows = [
        [
            label,
            f"{medians[key] * 1000:.0f}",
            f"{medians[key] / base:.2f}",
        ]
        for key, label in (
            ("without", "ground-truth batch (no generation)"),
            ("synchronous", "generated batch, synchronous"),
            ("overlapped", "generated batch, chunking overlapped"),
        )
    ]
    for key, label in (
        ("sample", "part: sampling (student `generate`)"),
        ("chunk", "part: chunking (spaCy, 1 process)"),
        ("preprocess", "part: preprocessor (tokens + units)"),
    ):
        value = result["parts_median_s"][key]
        rows.append([label, f"{value * 1000:.0f}", f"{value / base:.2f}"])
    steps = bench_utils.fmt_table(
        ["step (median)", "ms", "x no generation"], rows, ["l", "r", "r"]
    )
    batch = result["config"]["batch_size"]
    needed_gpu = batch / GPU_STEP_S
    consumed = batch / medians["without"]
    rows = []
    for processes, rate in result["chunk_texts_per_s"].items():
        label = (
            "chunk generated text, 1 process"
            if processes == "1"
            else f"chunk generated text, {processes} worker processes"
        )
        rows.append(
            [
                label,
                f"{rate:,.1f}",
                "yes" if rate >= consumed else "no",
                "yes" if rate >= needed_gpu else "no",
            ]
        )
    rows.append(
        [
            "training step consumes (batch / step without generation)",
            f"{consumed:,.1f}",
            "",
            "",
        ]
    )
    rows.append(
        [
            f"a {GPU_STEP_S} s GPU step consumes (batch {batch})",
            f"{needed_gpu:,.1f}",
            "",
            "",
        ]
    )
    span_path = bench_utils.fmt_table(
        [
            "span path on generated text",
            "texts / s",
            "keeps up with this step",
            f"keeps up with a {GPU_STEP_S} s step",
        ],
        rows,
        ["l", "r", "l", "l"],
    )
    return steps, span_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="tiny models, sequence 128, batch 2, vocabulary 300 (seconds)",
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--n-process",
        type=int,
        default=2,
        help="worker processes chunking generated text (1: a thread)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="cap on new tokens per response (default: to the window)",
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="where the tokenizer is kept (default: runs/benchmarks, or a "
        "temporary directory with --tiny)",
    )
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.work_dir is None and not args.tiny:
        args.work_dir = str(bench_utils.OUTPUT_DIR)
    if args.output is None:
        name = "student_generation_tiny" if args.tiny else "student_generation"
        args.output = str(bench_utils.OUTPUT_DIR / f"{name}.json")
    machine = bench_utils.machine_info()
    result = measure(args)
    steps, span_path = report(result)
    text = f"{steps}\n\n{span_path}"
    bench_utils.write_json(
        args.output,
        {
            "command": "python benchmarks/student_generation.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine,
            "result": result,
            "table": text,
        },
    )
    print(text)
    return result


if __name__ == "__main__":
    main()
