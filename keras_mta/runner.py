"""Run a recipe end to end: data, teacher, students, evaluation, results.

`run_distill(recipe)` is what `keras-mta distill` calls, and what a Python
user calls with a `keras_mta.load_recipe(...)` result:

1. data: load (or, for `builtin:toy-world`, write) the JSONL files;
2. models: teacher and student from presets or architectures, with the
   recipe's tokenizer (trained on the training text for `sentencepiece:N`);
3. spans and tokens: chunk every text once (span cache), tokenize and map
   units once into arrays that `tf.data` shuffles and batches per epoch;
4. teacher: optional supervised fine-tuning (`training.teacher_epochs`);
   with `distillation.teacher_cache` set, the teacher then runs once over
   the training and validation data and its signals are stored
   (`keras_mta.build_teacher_cache`, reused when already there);
5. students: every variant of `distillation.compare` (e.g. SFT, KD, MTA),
   each from the same initial student weights, seed and schedule (from the
   teacher cache when there is one);
6. evaluation: validation loss and the ROUGE-L protocol for the teacher
   and every student;
7. results: `results.json`, `results.md`, training-curve and table plots,
   the before/after trajectory plot, the MTA student saved as a keras-hub
   preset.
"""

import dataclasses
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_mta.data import load_examples
from keras_mta.data.tokenizers import train_sentencepiece_tokenizer
from keras_mta.data.toy_world import write_toy_dataset
from keras_mta.evaluation import evaluate_rouge
from keras_mta.losses import get_divergence
from keras_mta.models import AlignmentPlan
from keras_mta.models import CachedTeacher
from keras_mta.models import DistillationModel
from keras_mta.models import get_backbone
from keras_mta.models import num_hidden_layers
from keras_mta.models.gguf import save_tied_preset
from keras_mta.models.loading import backbone_class
from keras_mta.models.loading import build_causal_lm
from keras_mta.models.loading import causal_lm_class
from keras_mta.models.loading import load_causal_lm
from keras_mta.models.variants import VARIANTS
from keras_mta.models.variants import variant_name
from keras_mta.preprocessing import DistillationPreprocessor
from keras_mta.preprocessing import PhraseChunker
from keras_mta.preprocessing import SpanCache
from keras_mta.preprocessing import tokenize_with_offsets
from keras_mta.preprocessing.distillation_preprocessor import same_tokenization
from keras_mta.teacher_cache import build_teacher_cache

TOY_WORLD = "builtin:toy-world"


def _say(message):
    print(f"[keras-mta] {message}", flush=True)


def _verbose():
    """Keras `fit` verbosity: a progress bar on a terminal, a line per
    epoch in a log file."""
    return 1 if sys.stdout.isatty() else 2


def output_dir_of(recipe):
    """The run's output directory (`training.output_dir`, `{name}`
    replaced by the recipe's name)."""
    return recipe.training.output_dir.format(name=recipe.name)


# ----------------------------------------------------------------------
# Data.


def load_data(recipe, output_dir):
    """`(train_examples, valid_examples, reports)` of a recipe.

    `builtin:toy-world` writes the project's own English instruction data
    (`keras_mta.data.toy_world`) under `output_dir/data` first.
    """
    paths = {"train": recipe.data.train, "valid": recipe.data.valid}
    if TOY_WORLD in paths.values():
        toy_train, toy_valid = write_toy_dataset(
            os.path.join(output_dir, "data"), seed=recipe.training.seed
        )
        for split, toy in (("train", toy_train), ("valid", toy_valid)):
            if paths[split] == TOY_WORLD:
                paths[split] = toy
    examples, reports = {}, {}
    for split, path in paths.items():
        if not path:
            raise ValueError(
                f"The recipe has no data.{split}: give a JSONL path or "
                f"{TOY_WORLD!r}."
            )
        examples[split], reports[split] = load_examples(
            path,
            schema=recipe.data.schema,
            on_error=recipe.data.on_error,
            limit=recipe.data.max_examples or None,
        )
        _say(f"{split}: {reports[split]}")
    return examples["train"], examples["valid"], reports


def truncate_prompts(examples, tokenizer, max_prompt_length):
    """Cut prompts to their first `max_prompt_length` tokens.

    As in the MiniLLM / DistiLLM data processing, a prompt longer than
    `max_prompt_length` tokens keeps its first tokens; the cut falls on a
    token boundary (the tokenizer's character offsets). Returns
    `(examples, number of prompts cut)`; the count is reported, never
    silent.
    """
    if not max_prompt_length or not examples:
        return list(examples), 0
    _, offsets = tokenize_with_offsets(
        tokenizer, [example.prompt for example in examples]
    )
    lengths = offsets.row_lengths().numpy()
    out, cut = [], 0
    for index, example in enumerate(examples):
        if lengths[index] > max_prompt_length:
            end = int(offsets[index][max_prompt_length - 1][1])
            example = dataclasses.replace(example, prompt=example.prompt[:end])
            cut += 1
        out.append(example)
    return out, cut


def span_cache_of(recipe):
    """The recipe's `SpanCache` (spaCy is loaded only for missing texts)."""
    chunker = PhraseChunker(pipeline=recipe.data.spacy_pipeline or None)
    return SpanCache(recipe.data.span_cache or None, chunker=chunker)


# ----------------------------------------------------------------------
# Models.


def _architecture_with_vocabulary(architecture, vocabulary_size):
    architecture = dict(architecture)
    architecture["vocabulary_size"] = int(vocabulary_size)
    return architecture


def load_models(recipe, train_examples, output_dir, tiny=False):
    """`(teacher, student)` keras-hub CausalLMs with preprocessors.

    With `data.tokenizer = "sentencepiece:N"` an N-piece SentencePiece
    tokenizer is trained on the training text (keras-hub's tools) and both
    models are built from their `architecture` with that vocabulary;
    otherwise each model comes from its preset (or architecture).
    """
    spec = recipe.data.tokenizer
    if spec.startswith("sentencepiece:"):
        size = int(spec.split(":", 1)[1])
        _say(f"training a {size}-piece SentencePiece tokenizer")
        tokenizer = train_sentencepiece_tokenizer(
            [e.text for e in train_examples],
            size,
            proto_path=os.path.join(output_dir, "tokenizer.spm"),
        )
        models = []
        for role in ("teacher", "student"):
            model_spec = getattr(recipe, role)
            if not model_spec.architecture:
                raise ValueError(
                    f"data.tokenizer={spec!r} trains a new tokenizer, so the "
                    f"{role} must be built from `{role}.architecture`."
                )
            architecture = _architecture_with_vocabulary(
                model_spec.architecture, tokenizer.vocabulary_size()
            )
            cls = causal_lm_class(backbone_class(architecture["class"]))
            preprocessor = cls.preprocessor_cls(
                tokenizer=tokenizer,
                sequence_length=recipe.data.sequence_length,
            )
            with keras.name_scope(role):
                models.append(
                    build_causal_lm(architecture, preprocessor, tiny=tiny)
                )
        return tuple(models)
    if spec:
        raise ValueError(
            f"Unknown data.tokenizer {spec!r}: leave it empty (the presets' "
            "tokenizer) or use 'sentencepiece:N'."
        )
    teacher = load_causal_lm(recipe.teacher, "teacher", tiny=tiny)
    student = load_causal_lm(
        recipe.student, "student", tiny=tiny, teacher=teacher
    )
    _share_tokenizer(teacher, student)
    for model in (teacher, student):
        if model.preprocessor is None:
            raise ValueError(
                "A recipe model built from an architecture has no "
                "tokenizer: set data.tokenizer = 'sentencepiece:N' or "
                "load the model from a preset."
            )
        model.preprocessor.sequence_length = recipe.data.sequence_length
    return teacher, student


def _share_tokenizer(teacher, student):
    """Give a student built from an architecture the teacher's tokenizer.

    A student without a preset has no tokenizer; when its vocabulary is the
    teacher's and its preprocessor class takes the teacher's tokenizer
    class (e.g. a Llama3 student of a Llama3 teacher), it gets a
    preprocessor over the teacher's tokenizer, so both read the same ids.
    """
    if student.preprocessor is not None or teacher.preprocessor is None:
        return
    tokenizer = teacher.preprocessor.tokenizer
    preprocessor_cls = getattr(type(student), "preprocessor_cls", None)
    tokenizer_cls = getattr(preprocessor_cls, "tokenizer_cls", None)
    vocabulary = get_backbone(student).token_embedding.input_dim
    if (
        preprocessor_cls is None
        or tokenizer_cls is None
        or not isinstance(tokenizer, tokenizer_cls)
        or tokenizer.vocabulary_size() != vocabulary
    ):
        return
    teacher_preprocessor = teacher.preprocessor
    student.preprocessor = preprocessor_cls(
        tokenizer=tokenizer,
        sequence_length=teacher_preprocessor.sequence_length,
        add_start_token=teacher_preprocessor.add_start_token,
        add_end_token=teacher_preprocessor.add_end_token,
    )


def make_plan(recipe, teacher, student):
    """The recipe's `AlignmentPlan` (its layers, or the default plan)."""
    plan = recipe.plan
    kwargs = {
        "word_pairs": plan.word_pairs,
        "hra_scale": plan.hra_scale,
        "entropy_weighting": plan.entropy_weighting,
    }
    if plan.teacher_layers:
        return AlignmentPlan(plan.teacher_layers, plan.student_layers, **kwargs)
    return AlignmentPlan.default(
        num_hidden_layers(teacher),
        num_hidden_layers(student),
        num_pairs=plan.num_pairs,
        **kwargs,
    )


def make_optimizer(training, steps, learning_rate=None):
    """The recipe's optimizer with its learning-rate schedule."""
    learning_rate = learning_rate or training.learning_rate
    if training.schedule == "cosine":
        warmup = int(training.warmup_steps)
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else learning_rate,
            decay_steps=max(1, steps - warmup),
            warmup_target=learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    else:
        schedule = learning_rate
    clip = {"global_clipnorm": training.clip_norm} if training.clip_norm else {}
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(
            learning_rate=schedule, weight_decay=training.weight_decay, **clip
        )
    return keras.optimizers.Adam(learning_rate=schedule, **clip)


# ----------------------------------------------------------------------
# Datasets.


class Datasets:
    """The tf.data pipelines of a run and what was cut to build them."""

    def __init__(self, recipe, train, valid, student, teacher=None):
        data = recipe.data
        tokenizer = student.preprocessor.tokenizer
        if teacher is not None and not same_tokenization(
            student.preprocessor, teacher.preprocessor
        ):
            raise ValueError(
                "Teacher and student tokenize differently; keras-mta's "
                "DistillationModel needs a shared vocabulary (the logit "
                "divergence compares distributions token by token). Use a "
                "student with the teacher's tokenizer."
            )
        self.train_examples, self.train_prompts_cut = truncate_prompts(
            train, tokenizer, data.max_prompt_length
        )
        self.valid_examples, self.valid_prompts_cut = truncate_prompts(
            valid, tokenizer, data.max_prompt_length
        )
        for split, cut in (
            ("train", self.train_prompts_cut),
            ("valid", self.valid_prompts_cut),
        ):
            if cut:
                _say(
                    f"{split}: {cut} prompts longer than "
                    f"data.max_prompt_length={data.max_prompt_length} tokens "
                    "were cut to their first tokens"
                )
        self.preprocessor = DistillationPreprocessor(
            student.preprocessor,
            max_word_units=data.max_word_units,
            max_phrase_units=data.max_phrase_units,
            chunker=span_cache_of(recipe),
            sequence_length=data.sequence_length,
        )
        self.batch_size = recipe.training.batch_size
        self.seed = recipe.training.seed
        self.cap = recipe.training.steps_per_epoch
        drop = len(self.train_examples) >= self.batch_size
        self.drop_remainder = drop
        # Tokens, targets and units are computed once per dataset and kept
        # (a few MB even for Dolly at 256 tokens): epochs and variants then
        # only shuffle and batch arrays, instead of re-running tokenizers
        # and span masking at every step.
        _say("spans and tokens of the training data")
        self.train_arrays = _materialize(
            self.preprocessor.prepare_dataset(
                self.train_examples, batch_size=256, name="train"
            )
        )
        self.train_statistics = self.preprocessor.statistics
        _say("spans and tokens of the validation data")
        self.valid_arrays = _materialize(
            self.preprocessor.prepare_dataset(
                self.valid_examples, batch_size=256, name="valid"
            )
        )
        self.valid_statistics = self.preprocessor.statistics
        self.valid = (
            tf.data.Dataset.from_tensor_slices(self.valid_arrays)
            .batch(self.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        self.train = self.training_dataset()
        full = len(self.train_examples) // self.batch_size or 1
        self.steps_per_epoch = min(full, self.cap or full)

    def use_teacher_caches(self, caches):
        """Stream `{"train": cache, "valid": cache}` beside the inputs:
        `train_from_cache` / `valid_from_cache` then carry the teacher's
        signals (for the variants that train from the cache)."""
        self.caches = caches
        self.valid_from_cache = caches["valid"].dataset(
            self.valid_arrays, batch_size=self.batch_size, shuffle=False
        )

    def training_dataset(self, from_cache=False):
        """A fresh training pipeline: every call yields the same seeded
        sequence of shuffled epochs (so that every variant sees the same
        data order). With `from_cache`, the teacher cache's stream (same
        seed, chunked shuffle)."""
        if from_cache:
            dataset = self.caches["train"].dataset(
                self.train_arrays,
                batch_size=self.batch_size,
                seed=self.seed,
                drop_remainder=self.drop_remainder,
            )
            return dataset.repeat() if self.cap else dataset
        dataset = (
            tf.data.Dataset.from_tensor_slices(self.train_arrays)
            .shuffle(
                len(self.train_examples),
                seed=self.seed,
                reshuffle_each_iteration=True,
            )
            .batch(self.batch_size, drop_remainder=self.drop_remainder)
        )
        if self.cap:
            dataset = dataset.repeat()
        return dataset.prefetch(tf.data.AUTOTUNE)

    def statistics(self):
        return {
            "train": self.train_statistics.as_dict(),
            "valid": self.valid_statistics.as_dict(),
            "train_prompts_cut": self.train_prompts_cut,
            "valid_prompts_cut": self.valid_prompts_cut,
        }


def _materialize(dataset):
    """The batches of a finite dataset, concatenated into NumPy arrays
    with the same structure."""
    batches = [
        tf.nest.map_structure(lambda t: np.asarray(t), batch)
        for batch in dataset
    ]
    return tf.nest.map_structure(
        lambda *parts: np.concatenate(parts, axis=0), *batches
    )


# ----------------------------------------------------------------------
# Training and evaluation.


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _fit(model, datasets, epochs, from_cache=False):
    return model.fit(
        datasets.train,
        validation_data=datasets.valid_from_cache
        if from_cache
        else datasets.valid,
        epochs=epochs,
        steps_per_epoch=datasets.steps_per_epoch,
        verbose=_verbose(),
    )


def train_teacher(recipe, teacher, datasets):
    """Supervised fine-tuning of the teacher (`training.teacher_epochs`).

    Returns `(history dict, seconds)`.
    """
    training = recipe.training
    model = DistillationModel(None, teacher, ablation="sft_only")
    model.compile(
        optimizer=make_optimizer(
            training,
            datasets.steps_per_epoch * training.teacher_epochs,
            learning_rate=training.teacher_learning_rate,
        )
    )
    _say(f"fine-tuning the teacher for {training.teacher_epochs} epochs")
    history, seconds = timed(_fit, model, datasets, training.teacher_epochs)
    return history.history, seconds


def _divergence(recipe):
    dist = recipe.distillation
    kwargs = {"temperature": dist.temperature}
    if dist.divergence.startswith("skew"):
        kwargs["skew"] = dist.skew
    elif dist.divergence == "jensen_shannon":
        kwargs["beta"] = dist.beta
    return get_divergence(dist.divergence, **kwargs)


def distill_variant(recipe, variant, teacher, student, plan, datasets):
    """Train one student variant; returns `(model, history, seconds)`."""
    dist = recipe.distillation
    variant = variant_name(variant)
    ablation = VARIANTS[variant].ablation
    if variant == "mta" and dist.ablation:
        ablation = dist.ablation
    from_cache = variant != "sft" and getattr(datasets, "caches", None)
    if from_cache:
        teacher = CachedTeacher.from_cache(datasets.caches["train"])
        datasets.train = datasets.training_dataset(from_cache=True)
    model = DistillationModel(
        None if variant == "sft" else teacher,
        student,
        plan=None if variant == "sft" else plan,
        divergence=_divergence(recipe),
        kd_ratio=dist.kd_ratio,
        mta_weight=dist.mta_weight,
        ablation=ablation,
    )
    model.compile(
        optimizer=make_optimizer(
            recipe.training, datasets.steps_per_epoch * recipe.training.epochs
        )
    )
    source = " from the teacher cache" if from_cache else ""
    _say(f"training the student: {variant}{source}")
    history, seconds = timed(
        _fit, model, datasets, recipe.training.epochs, bool(from_cache)
    )
    return model, history.history, seconds


def teacher_cache_dir(recipe, output_dir):
    """Where a recipe's teacher caches live (`distillation.teacher_cache`,
    relative paths under the output directory)."""
    directory = recipe.distillation.teacher_cache or "teacher_cache"
    if os.path.isabs(directory):
        return directory
    return os.path.join(output_dir, directory)


def build_teacher_caches(recipe, teacher, plan, datasets, output_dir):
    """Run the teacher once over the training and validation arrays and
    store its signals (`keras_mta.build_teacher_cache`); an existing cache
    of the same teacher, data, plan and settings is reused as it is.

    Returns `{"train": TeacherCache, "valid": TeacherCache}`.
    """
    dist = recipe.distillation
    directory = teacher_cache_dir(recipe, output_dir)
    caches = {}
    for split, arrays in (
        ("train", datasets.train_arrays),
        ("valid", datasets.valid_arrays),
    ):
        _say(f"teacher cache of the {split} data")
        caches[split] = build_teacher_cache(
            teacher,
            plan,
            arrays[0],
            directory,
            top_k=min(dist.top_k, get_backbone(teacher).vocabulary_size),
            dtype=dist.teacher_cache_dtype,
            temperature=dist.temperature,
            batch_size=recipe.training.batch_size,
        )
    return caches


def validation_loss(causal_lm, valid_ds):
    """Cross-entropy of a model on the validation responses."""
    model = DistillationModel(None, causal_lm, ablation="sft_only")
    model.compile(optimizer="adam")
    logs = model.evaluate(valid_ds, return_dict=True, verbose=0)
    return float(logs["loss"])


def evaluation_sets(entries, valid_examples=None, limit=0, on_error="raise"):
    """`{entry: examples}` scored by the ROUGE-L protocol.

    Each entry is `"valid"` (the given `valid_examples`), a JSONL path, an
    `hf://datasets/...` file or a name of `EVALUATION_DATASETS`; at most
    `limit` examples of each are kept (0: all).
    """
    sets = {}
    for entry in entries:
        if entry == "valid" and valid_examples is not None:
            examples = valid_examples
        else:
            examples, report = load_examples(
                resolve_evaluation_dataset(entry), on_error=on_error
            )
            _say(f"evaluation data {entry}: {report}")
        sets[entry] = list(examples[:limit] if limit else examples)
    return sets


# Evaluation sets of the field, as laid out under `KERAS_MTA_DATA_DIR`
# (a directory per set, as MiniLLM's data/ folder): name -> file.
EVALUATION_DATASETS = {
    "dolly": "dolly/test.jsonl",
    "selfinst": "selfinst/user_oriented_instructions.jsonl",
    "vicuna": "vicuna/test.jsonl",
    "sinst": "sinst/test.jsonl",
    "uinst": "uinst/test.jsonl",
}


def resolve_evaluation_dataset(name_or_path, data_dir=None):
    """A JSONL path from a path or a dataset name of the field.

    Names (`dolly`, `selfinst`, `vicuna`, `sinst`, `uinst`) are looked up
    under `data_dir` (default `$KERAS_MTA_DATA_DIR`, else `data/`).
    """
    if os.path.exists(name_or_path) or name_or_path.startswith("hf://"):
        return name_or_path  # a path, or a Hub file for load_examples
    key = name_or_path.lower().replace("-", "").replace("_", "")
    if key in EVALUATION_DATASETS:
        root = data_dir or os.environ.get("KERAS_MTA_DATA_DIR", "data")
        path = os.path.join(root, EVALUATION_DATASETS[key])
        if os.path.exists(path):
            return path
        raise FileNotFoundError(
            f"Evaluation set {name_or_path!r} is looked up at {path!r}, "
            "which does not exist. Download it there (JSONL in the Dolly, "
            "prompt/completion or self-instruct schema) or set "
            "KERAS_MTA_DATA_DIR to the folder holding "
            f"{EVALUATION_DATASETS[key]}."
        )
    raise FileNotFoundError(
        f"No evaluation data at {name_or_path!r}: give a JSONL path or one "
        f"of the names {sorted(EVALUATION_DATASETS)}."
    )


def rouge_scores(ev, causal_lm, sets, label):
    """`{dataset: EvaluationResult.to_dict()}` of one model, with the
    protocol settings of `ev` (a recipe's `EvaluationSpec`)."""
    out = {}
    for name, examples in sets.items():
        _say(f"ROUGE-L of {label} on {name} ({len(examples)} prompts)")
        result = evaluate_rouge(
            causal_lm,
            examples,
            dataset=name,
            seeds=tuple(ev.seeds),
            max_new_tokens=ev.max_new_tokens,
            batch_size=ev.batch_size,
            temperature=ev.temperature,
            top_p=ev.top_p,
        )
        _say(f"  {label}: {result}")
        out[name] = result.to_dict(with_predictions=True)
    return out


# ----------------------------------------------------------------------
# Results.


def results_rows(results):
    """Table rows (dicts) of a results dict, one per model."""
    rows = []
    datasets = results.get("evaluation_datasets", [])
    for entry in results["models"]:
        row = {"model": entry["model"]}
        for name in datasets:
            score = entry["rouge_l"].get(name)
            row[f"ROUGE-L {name}"] = (
                "-"
                if score is None
                else f"{score['mean']:.2f} +- {score['std']:.2f}"
            )
        row["valid loss"] = f"{entry['valid_loss']:.4f}"
        row["parameters"] = f"{entry['parameters']:,}"
        row["wall time (s)"] = f"{entry['wall_time_s']:.1f}"
        rows.append(row)
    return rows


def format_table(rows):
    """A Markdown table of `rows` (list of dicts with the same keys)."""
    if not rows:
        return ""
    columns = list(rows[0])
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def _atomic_write_text(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_results(results, output_dir):
    """`results.json` and `results.md` of a run; returns their paths."""
    json_path = os.path.join(output_dir, "results.json")
    _atomic_write_text(json_path, json.dumps(results, indent=1, default=str))
    lines = [
        f"# {results['recipe']}",
        "",
        results.get("description", ""),
        "",
        format_table(results_rows(results)),
        "",
        f"Backend: {results['backend']}. Total wall time: "
        f"{results['wall_time_s']:.0f} s.",
    ]
    md_path = os.path.join(output_dir, "results.md")
    _atomic_write_text(md_path, "\n".join(lines) + "\n")
    return json_path, md_path


def write_plots(results, histories, tables, plan, output_dir):
    """Training curves, the results table and the trajectory, as PNGs.

    Skipped with a message when matplotlib (the `plot` extra) is missing.
    """
    try:
        from keras_mta import analysis
    except ImportError as e:  # pragma: no cover - matplotlib is optional
        _say(f"no plots ({e}); pip install 'keras-mta[plot]'")
        return {}
    paths = {}
    try:
        paths["curves"] = analysis.plot_training_curves(
            histories,
            os.path.join(output_dir, "training_curves.png"),
            title=results["recipe"],
        )
        rows = results_rows(results)
        paths["table"] = analysis.plot_results_table(
            rows,
            list(rows[0]),
            os.path.join(output_dir, "results_table.png"),
            title=results["recipe"],
        )
        if tables:
            paths["trajectory"] = analysis.plot_trajectory_lines(
                tables,
                os.path.join(output_dir, "trajectory.png"),
                title="teacher/student agreement along the plan's pairs",
            )
            paths["trajectory_heatmaps"] = analysis.plot_trajectory_heatmaps(
                tables[-1],
                os.path.join(output_dir, "trajectory_heatmaps.png"),
                title=f"agreement {tables[-1].label}",
            )
    except ImportError as e:  # pragma: no cover - matplotlib is optional
        _say(f"no plots ({e}); pip install 'keras-mta[plot]'")
    return paths


def _measure_trajectory(teacher, student, datasets, plan, label):
    from keras_mta.analysis import trajectory

    _say(f"trajectory {label}")
    return trajectory(
        teacher, student, datasets.valid, plan=plan, max_batches=2, label=label
    )


class _Settings:
    """Global Keras settings of a run (seed, dtype policy, distribution),
    restored on exit."""

    def __init__(self, training):
        self.training = training

    def __enter__(self):
        self.policy = keras.config.dtype_policy()
        self.distribution = keras.distribution.distribution()
        keras.utils.set_random_seed(self.training.seed)
        keras.config.set_dtype_policy(self.training.precision)
        if self.training.distribution == "data_parallel":
            if keras.backend.backend() != "jax":
                raise ValueError(
                    "training.distribution = 'data_parallel' uses "
                    "keras.distribution, which needs KERAS_BACKEND=jax. "
                    "With torch, launch one process per GPU with torchrun "
                    "instead (see guides/scaling_out.py)."
                )
            keras.distribution.set_distribution(
                keras.distribution.DataParallel()
            )
        return self

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.policy)
        keras.distribution.set_distribution(self.distribution)
        return False


def _model_entry(name, role, model, valid_loss, seconds, rouge):
    return {
        "model": name,
        "role": role,
        "parameters": int(model.count_params()),
        "valid_loss": valid_loss,
        "wall_time_s": seconds,
        "rouge_l": rouge,
    }


def run_distill(recipe, tiny=False, output_dir=None):
    """Run a recipe end to end (what `keras-mta distill` does).

    Args:
        recipe: a `keras_mta.Recipe` (see `keras_mta.load_recipe`).
        tiny: build the models from their architectures with tiny widths
            (tests, dry runs); presets are not loaded.
        output_dir: overrides `training.output_dir`.

    Returns:
        The results dict, also written to `results.json` / `results.md`
        with plots in the output directory.
    """
    start = time.perf_counter()
    output_dir = output_dir or output_dir_of(recipe)
    os.makedirs(output_dir, exist_ok=True)
    _say(f"recipe {recipe.name} -> {output_dir}")
    stages = {}
    with _Settings(recipe.training):
        (train, valid, reports), stages["data"] = timed(
            load_data, recipe, output_dir
        )
        (teacher, student), stages["models"] = timed(
            load_models, recipe, train, output_dir, tiny=tiny
        )
        plan = make_plan(recipe, teacher, student)
        _say(f"plan: {plan}")
        datasets, stages["spans"] = timed(
            Datasets, recipe, train, valid, student, teacher
        )
        sets = evaluation_sets(
            recipe.evaluation.datasets,
            datasets.valid_examples,
            limit=recipe.evaluation.max_examples,
            on_error=recipe.data.on_error,
        )
        histories, entries, tables = {}, [], []

        teacher_seconds = 0.0
        if recipe.training.teacher_epochs:
            history, teacher_seconds = train_teacher(recipe, teacher, datasets)
            histories["teacher (SFT)"] = history
            save_tied_preset(
                teacher, os.path.join(output_dir, "teacher_preset")
            )
        entries.append(
            _model_entry(
                "teacher",
                "teacher",
                teacher,
                validation_loss(teacher, datasets.valid),
                teacher_seconds,
                rouge_scores(recipe.evaluation, teacher, sets, "teacher"),
            )
        )

        if recipe.distillation.teacher_cache:
            caches, stages["teacher_cache"] = timed(
                build_teacher_caches,
                recipe,
                teacher,
                plan,
                datasets,
                output_dir,
            )
            datasets.use_teacher_caches(caches)
        initial = student.get_weights()
        if "mta" in recipe.distillation.compare:
            tables.append(
                _measure_trajectory(teacher, student, datasets, plan, "before")
            )
        for variant in recipe.distillation.compare:
            # Same start, same data order. (Not `set_random_seed` here: it
            # clears TensorFlow's kernel cache, destroying the tf-text
            # tokenizer resources that live pipelines use.)
            student.set_weights(initial)
            datasets.train = datasets.training_dataset()
            _, history, seconds = distill_variant(
                recipe, variant, teacher, student, plan, datasets
            )
            name = f"student ({variant.upper()})"
            histories[name] = history
            entries.append(
                _model_entry(
                    name,
                    variant,
                    student,
                    validation_loss(student, datasets.valid),
                    seconds,
                    rouge_scores(recipe.evaluation, student, sets, name),
                )
            )
            if variant == "mta":
                tables.append(
                    _measure_trajectory(
                        teacher, student, datasets, plan, "after MTA"
                    )
                )
                preset = os.path.join(output_dir, "mta_student")
                save_tied_preset(student, preset)
                _say(f"MTA student saved as a keras-hub preset: {preset}")

    results = {
        "recipe": recipe.name,
        "description": recipe.description,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "plan": {
            "teacher_layers": list(plan.teacher_layers),
            "student_layers": list(plan.student_layers),
            "word_pairs": plan.word_pairs,
        },
        "evaluation_datasets": list(sets),
        "models": entries,
        "histories": histories,
        "data": {
            "train_report": str(reports["train"]),
            "valid_report": str(reports["valid"]),
            **datasets.statistics(),
        },
        "stages_s": stages,
        "recipe_fields": recipe.to_dict(),
    }
    for table in tables:
        slug = table.label.lower().replace(" ", "_")
        table.save(os.path.join(output_dir, f"trajectory_{slug}.json"))
    results["wall_time_s"] = time.perf_counter() - start
    json_path, md_path = write_results(results, output_dir)
    results["plots"] = write_plots(results, histories, tables, plan, output_dir)
    print(format_table(results_rows(results)), flush=True)
    _say(f"results: {json_path}, {md_path}")
    _say(f"total wall time {results['wall_time_s']:.0f} s")
    return results


def run_teacher_cache(recipe, tiny=False, output_dir=None):
    """Run a recipe's teacher once over its data and store the signals
    (`keras-mta teacher-cache`): the caches `keras-mta distill` trains
    from when `distillation.teacher_cache` is set.

    Returns `{"train": TeacherCache, "valid": TeacherCache}`.
    """
    output_dir = output_dir or output_dir_of(recipe)
    os.makedirs(output_dir, exist_ok=True)
    with _Settings(recipe.training):
        train, valid, _ = load_data(recipe, output_dir)
        teacher, student = load_models(recipe, train, output_dir, tiny=tiny)
        plan = make_plan(recipe, teacher, student)
        _say(f"plan: {plan}")
        datasets = Datasets(recipe, train, valid, student, teacher)
        caches = build_teacher_caches(
            recipe, teacher, plan, datasets, output_dir
        )
    for split, cache in caches.items():
        _say(f"{split}: {cache}")
    return caches


def run_train_teacher(recipe, tiny=False, output_dir=None):
    """Supervised fine-tuning of a recipe's teacher (`keras-mta
    train-teacher`); saves it as a keras-hub preset in
    `output_dir/teacher_preset` and returns a results dict."""
    output_dir = output_dir or output_dir_of(recipe)
    os.makedirs(output_dir, exist_ok=True)
    epochs = recipe.training.teacher_epochs or recipe.training.epochs
    recipe = dataclasses.replace(
        recipe,
        training=dataclasses.replace(recipe.training, teacher_epochs=epochs),
    )
    with _Settings(recipe.training):
        train, valid, _ = load_data(recipe, output_dir)
        teacher, _ = load_models(recipe, train, output_dir, tiny=tiny)
        datasets = Datasets(recipe, train, valid, teacher)
        history, seconds = train_teacher(recipe, teacher, datasets)
        preset = os.path.join(output_dir, "teacher_preset")
        save_tied_preset(teacher, preset)
        loss = validation_loss(teacher, datasets.valid)
    _say(f"teacher saved as a keras-hub preset: {preset}")
    _say(f"validation loss {loss:.4f}, {seconds:.0f} s")
    return {
        "preset": preset,
        "valid_loss": loss,
        "history": history,
        "wall_time_s": seconds,
    }
