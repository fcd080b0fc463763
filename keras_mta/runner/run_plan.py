"""What a recipe will do, worked out without running it: `keras-mta plan`.

`plan_run(recipe)` reads the `Recipe` alone: parameter counts come from the
`architecture` tables (`keras_mta.runner.parameter_counts`, no weight
allocated), memory from those counts and the batch's shapes
(`keras_mta.runner.memory_estimate`). No model is loaded or downloaded, no
data is read and spaCy does not run, so a paper recipe can be checked on a
laptop before a GPU is rented.
"""

import dataclasses
import os

from keras_mta.data.loaders import HUB_PREFIX
from keras_mta.models.gguf import is_gguf_handle
from keras_mta.models.loading import tiny_architecture
from keras_mta.models.student_init import evenly_spaced_layers
from keras_mta.models.variants import ABLATION_TERMS
from keras_mta.models.variants import GENERATION_SUFFIXES
from keras_mta.models.variants import split_variant
from keras_mta.recipe import BUILTIN_DATA
from keras_mta.recipe import recipe_problems
from keras_mta.runner.memory_estimate import estimate_memory
from keras_mta.runner.models import recipe_plan
from keras_mta.runner.parameter_counts import count_parameters
from keras_mta.runner.parameter_counts import projector_parameters
from keras_mta.runner.setup import output_dir_of
from keras_mta.runner.training import ablation_of

GIB = 2**30

# Unit kinds of the pairs under each ablation (`DistillationModel`).
_UNITS = {"word_units_only": "word", "phrase_units_only": "phrase"}


@dataclasses.dataclass
class ModelPlan:
    """A teacher or student as the run will get it.

    Attributes:
        role: `"teacher"` or `"student"`.
        handle: where it comes from, in words.
        backbone: the keras-hub backbone class name (empty: unknown).
        count: its `ParameterCount`, or None without an architecture.
    """

    role: str
    handle: str
    backbone: str
    count: object


@dataclasses.dataclass
class RunPlan:
    """The plan of a run, printed by `keras-mta plan` (`str(plan)`).

    Attributes:
        recipe: the `Recipe`.
        teacher: the teacher's `ModelPlan`.
        student: the student's `ModelPlan`.
        pairs: `[(teacher index, student index, unit kind)]`, or None
            when the default plan needs the models' depths.
        projector_parameters: weights of the HRA projectors (0 when no
            compared variant trains HRA).
        effective_batch_size: examples per optimizer update.
        memory: the `MemoryTerm`s of one device, or None without both
            counts.
        problems: what a run would refuse when it starts (missing files).
        sections: `[(title, lines)]`, the printed text.
    """

    recipe: object
    teacher: ModelPlan
    student: ModelPlan
    pairs: list
    projector_parameters: int
    effective_batch_size: int
    memory: list
    problems: list
    sections: list

    @property
    def memory_bytes(self):
        """The sum of the memory terms of the device (None without
        them; the host's, such as the replay buffer, are left out)."""
        if self.memory is None:
            return None
        return sum(term.bytes for term in self.memory if not term.host)

    def __str__(self):
        lines = []
        for title, body in self.sections:
            lines.append(title)
            lines.extend(f"  {line}" for line in body)
        return "\n".join(lines)


def _count_text(n):
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n:,} ({n / size:.2f}{unit})"
    return f"{n:,}"


def _gib(n):
    return f"{n / GIB:8.2f} GiB"


def _handle(spec, tiny):
    """Where a model comes from, in words (nothing is fetched)."""
    preset = spec.preset
    if tiny:
        return "built from `architecture` at tiny widths (--tiny), no preset"
    if not preset:
        return "built from `architecture` (random initial weights)"
    if is_gguf_handle(preset):
        return f"{preset} (a GGUF file, converted by keras-mta on first use)"
    if preset.startswith("hf://"):
        return (
            f"{preset} (Hugging Face Hub: downloaded on first use, converted"
            " by keras-hub from the Transformers checkpoint)"
        )
    if preset.startswith("kaggle://"):
        return f"{preset} (Kaggle: downloaded on first use)"
    if os.sep in preset or preset.startswith("."):
        there = "exists" if os.path.isdir(preset) else "does not exist yet"
        return f"{preset} (a local preset directory; {there})"
    return f"{preset} (keras-hub preset: downloaded on first use)"


def _architecture(recipe, role, tiny):
    architecture = dict(getattr(recipe, role).architecture)
    if not architecture:
        return None
    if tiny:
        architecture = tiny_architecture(architecture)
    tokenizer = recipe.data.tokenizer
    if role == "student" and recipe.data.student_tokenizer:
        # Issue 21: the student's own tokenizer, trained by the run.
        tokenizer = recipe.data.student_tokenizer
    if tokenizer.startswith("sentencepiece:"):
        # The run trains this tokenizer and builds both models with it.
        architecture["vocabulary_size"] = int(tokenizer.split(":", 1)[1])
    return architecture


def _model_plan(recipe, role, tiny):
    spec = getattr(recipe, role)
    architecture = _architecture(recipe, role, tiny)
    count = None
    if architecture is not None:
        lora_rank = spec.lora_rank if role == "student" else 0
        count = count_parameters(architecture, lora_rank=lora_rank)
    backbone = architecture["class"] if architecture else ""
    return ModelPlan(role, _handle(spec, tiny), backbone, count)


def _model_lines(model):
    lines = [f"handle: {model.handle}"]
    count = model.count
    if count is None:
        lines.append(
            "parameters: unknown (no `architecture` table; the run reads "
            f"the preset's config). Add {model.role}.architecture to see "
            "counts and memory."
        )
        return lines
    lines.append(
        f"backbone: {model.backbone}, {count.num_layers} blocks, hidden "
        f"{count.hidden_dim}, {count.num_heads} heads, vocabulary "
        f"{count.vocabulary_size:,}"
    )
    lines.append(f"parameters: {_count_text(count.total)}")
    return lines


def _student_lines(recipe, student):
    spec, teacher = recipe.student, recipe.teacher
    lines = []
    if spec.student_init == "teacher_subset":
        layers = spec.student_init_layers
        how = "given"
        if not layers and spec.num_layers and teacher.num_layers:
            layers = evenly_spaced_layers(teacher.num_layers, spec.num_layers)
            how = "evenly spaced"
        lines.append(
            "init: teacher_subset: the teacher's embeddings, final norm and "
            f"blocks {layers or '(evenly spaced)'} ({how})"
        )
    else:
        lines.append("init: random (the architecture's initialisers)")
    count = student.count
    if spec.lora_rank:
        alpha = spec.lora_alpha or spec.lora_rank
        lora = "count unknown"
        if count:
            # Keras' LoRA on an `EinsumDense` kernel (hidden, heads,
            # head_dim) adds A (hidden, heads, rank) and B (rank,
            # head_dim): more than PEFT's rank * (in + out) on a 2-D
            # kernel. `enable_student_lora` freezes the adapted layers'
            # biases, so the factors are all that trains.
            lora = (
                f"{count.lora:,} adapter weights, the only student weights "
                "that train (Keras' factors of the 3-D attention kernels: "
                "more than PEFT's rank x (in + out))"
            )
        lines.append(
            f"LoRA: rank {spec.lora_rank}, alpha {alpha:g} (scale "
            f"{alpha / spec.lora_rank:g}) on the attention query and value "
            f"projections: {lora}; every other student weight frozen"
        )
    else:
        lines.append("LoRA: none (student.lora_rank = 0): every weight trains")
    return lines


def _pairs(recipe, teacher, student, ablation):
    plan = recipe_plan(
        recipe,
        teacher.count.num_layers if teacher.count else None,
        student.count.num_layers if student.count else None,
    )
    if plan is None:
        return None
    pairs = []
    for k, (t, s) in enumerate(zip(plan.teacher_layers, plan.student_layers)):
        unit = "word" if k < plan.word_pairs else "phrase"
        pairs.append((t, s, _UNITS.get(ablation, unit)))
    return pairs


def _alignment_lines(recipe, pairs, hra_variants, projectors, dims):
    plan, data = recipe.plan, recipe.data
    if pairs is None:
        return [
            f"the default plan of {recipe.plan.num_pairs} pairs, chosen "
            "from the models' depths when they are loaded (add "
            "`architecture` tables to see it here)"
        ]
    limits = {"word": data.max_word_units, "phrase": data.max_phrase_units}
    lines = [
        f"pair {k + 1}: teacher {t} -> student {s}, {unit} units (at most "
        f"{limits[unit]} per example)"
        for k, (t, s, unit) in enumerate(pairs)
    ]
    lines.append(
        f"hra_scale {plan.hra_scale:g}; entropy weighting "
        f"{'on' if plan.entropy_weighting else 'off'}"
    )
    if hra_variants and dims:
        student_dim, teacher_dim = dims
        lines.append(
            f"projectors: {len(pairs)} x Dense({student_dim} -> "
            f"{teacher_dim}, with bias) = {projectors:,} weights (variants "
            f"with HRA: {', '.join(hra_variants)})"
        )
    elif not hra_variants:
        lines.append("projectors: none (no compared variant trains HRA)")
    return lines


def _loss_lines(recipe):
    dist = recipe.distillation
    extra = {
        "skew_forward_kl": f"skew {dist.skew:g}, ",
        "skew_reverse_kl": f"skew {dist.skew:g}, ",
        "jensen_shannon": f"beta {dist.beta:g}, ",
        "uld": (
            f"truncated to the top {dist.uld_truncation}, "
            if dist.uld_truncation
            else ""
        ),
    }.get(dist.divergence, "")
    lines = [
        f"divergence {dist.divergence} ({extra}temperature "
        f"{dist.temperature:g})",
        f"weights: CE {1 - dist.kd_ratio:g}, KD {dist.kd_ratio:g}, MTA "
        f"{dist.kd_ratio * dist.mta_weight:g} (kd_ratio {dist.kd_ratio:g}, "
        f"mta_weight {dist.mta_weight:g})",
        f"variants trained from one start: {', '.join(dist.compare)}"
        + (f"; mta ablation: {dist.ablation}" if dist.ablation else ""),
    ]
    if dist.teacher_cache:
        lines.append(
            f"teacher cache: {dist.teacher_cache} (the teacher runs once; "
            f"top-{dist.top_k} logits, hidden states in "
            f"{dist.teacher_cache_dtype})"
        )
    return lines


def _optimizer_lines(recipe, student, projectors, hra_variants):
    training = recipe.training
    decay = (
        f", weight decay {training.weight_decay:g}"
        if training.optimizer == "adamw"
        else ""
    )
    clip = (
        f"global clip norm {training.clip_norm:g}"
        if training.clip_norm
        else "no clipping"
    )
    lines = [f"{training.optimizer}{decay}, {clip}"]
    trainable = "unknown"
    if student.count:
        what = "LoRA adapters" if recipe.student.lora_rank else "weights"
        trainable = f"{student.count.trainable:,} {what}"
    lines.append(
        f"group student: {trainable}, peak learning rate "
        f"{training.learning_rate:g} (training.learning_rate)"
    )
    if hra_variants:
        rate = training.alignment_learning_rate
        source = (
            "training.alignment_learning_rate"
            if rate
            else "training.alignment_learning_rate = 0: the student's"
        )
        lines.append(
            f"group alignment projectors: {projectors:,} weights, peak "
            f"learning rate {rate or training.learning_rate:g} ({source})"
        )
    if training.schedule == "cosine":
        warmup = (
            f"after {training.warmup_steps} linear warm-up steps"
            if training.warmup_steps
            else "no warm-up"
        )
        lines.append(
            f"schedule: cosine decay to 0 over the run's optimizer steps, "
            f"{warmup}"
        )
    else:
        lines.append("schedule: constant")
    accumulation = training.gradient_accumulation_steps
    lines.append(
        f"batch: {training.batch_size} x {accumulation} accumulation "
        f"step{'s' if accumulation > 1 else ''} = effective batch "
        f"{training.batch_size * accumulation} per optimizer update"
    )
    cap = (
        f"at most {training.steps_per_epoch}"
        if training.steps_per_epoch
        else "all"
    )
    lines.append(
        f"epochs: {training.epochs}; batches per epoch: training examples "
        f"// {training.batch_size} ({cap})"
    )
    if training.teacher_epochs:
        lines.append(
            f"teacher fine-tuning first: {training.teacher_epochs} epochs at "
            f"{training.teacher_learning_rate:g}, every teacher weight "
            "trained (its gradients and moments are not in the memory "
            "estimate below, which is for distillation)"
        )
    lines.append(
        f"precision {training.precision}; distribution "
        f"{training.distribution}; seed {training.seed}"
    )
    return lines


def _data_kind(path):
    if path in BUILTIN_DATA:
        return "written by keras-mta"
    if path.startswith(HUB_PREFIX):
        return "Hugging Face Hub file, downloaded on first use"
    if not path:
        return "not set"
    return "local file" + ("" if os.path.isfile(path) else ", missing")


def _data_lines(recipe):
    data = recipe.data
    tokenizer = data.tokenizer or "the teacher preset's (shared)"
    if data.student_tokenizer:  # issue 21
        tokenizer = (
            f"{data.tokenizer or 'the preset'}'s for the teacher, "
            f"{data.student_tokenizer} for the student (across tokenizers)"
        )
    return [
        f"train: {data.train} ({_data_kind(data.train)})",
        f"valid: {data.valid} ({_data_kind(data.valid)})",
        f"schema {data.schema}; malformed rows: {data.on_error}; examples: "
        f"{data.max_examples or 'all'}",
        f"sequence {data.sequence_length} tokens, prompts cut to "
        f"{data.max_prompt_length}; tokenizer: {tokenizer}",
    ]


def _evaluation_lines(recipe):
    from keras_mta.evaluation.datasets import resolve_evaluation_dataset

    ev = recipe.evaluation
    lines = []
    for entry in ev.datasets:
        if entry == "valid":
            where = "the recipe's validation data"
        else:
            try:
                path = resolve_evaluation_dataset(entry)
                where = "a file" if path == entry else f"found at {path}"
            except FileNotFoundError:
                where = "not found (a run refuses it; see below)"
        lines.append(f"{entry}: {where}")
    if not ev.datasets:
        lines.append("no evaluation set (evaluation.datasets is empty)")
    lines.append(
        f"seeds {ev.seeds}; at most {ev.max_new_tokens} new tokens; "
        f"temperature {ev.temperature:g}, top-p {ev.top_p:g}; prompts: "
        f"{ev.max_examples or 'all'}"
    )
    return lines


def generation_of(recipe):
    """The student generation of a recipe's run for its memory: the mode
    of `training.student_generation`, else `"adaptive"` when a compared
    variant has the `+adaptive` suffix, `"on_policy"` when one has
    `+on_policy`, `"off"` otherwise (issue 20)."""
    mode = recipe.training.student_generation.mode
    if mode != "off":
        return mode
    suffixes = {split_variant(v)[1] for v in recipe.distillation.compare}
    for mode in GENERATION_SUFFIXES:  # adaptive first: it holds the most
        if mode in suffixes:
            return mode
    return "off"


def _memory_lines(terms):
    if terms is None:
        return ["unknown: give both models an `architecture` table"]
    width = max(len(term.name) for term in terms)
    host = [term for term in terms if term.host]  # issue 20
    terms = [term for term in terms if not term.host]
    lines = [
        f"{term.name:<{width}} {_gib(term.bytes)}  {term.how}" for term in terms
    ]
    exact = sum(term.bytes for term in terms if term.exact)
    rough = sum(term.bytes for term in terms if not term.exact)
    lines.append(
        f"{'total':<{width}} {_gib(exact + rough)}  ({exact / GIB:.2f} GiB "
        f"counted, {rough / GIB:.2f} GiB estimated activations)"
    )
    lines += [
        f"{term.name:<{width}} {_gib(term.bytes)}  {term.how}; not in the total"
        for term in host
    ]
    lines.append(
        "Counted terms are parameter counts times the dtype; activations "
        "are rough. With data_parallel, every device holds every weight "
        "term and its share of the batch's activations."
    )
    return lines


def plan_run(recipe, tiny=False, output_dir=None):
    """The plan of a recipe's run, without running or loading anything.

    Args:
        recipe: a `keras_mta.Recipe` (checked again here, without its
            files).
        tiny: plan the `--tiny` run (models at tiny widths).
        output_dir: overrides `training.output_dir`.

    Returns:
        A `RunPlan`; `print(plan)` gives what `keras-mta plan` prints.

    Raises:
        RecipeError: the recipe's own problems, before anything is built.

    Examples:

    ```python
    recipe = keras_mta.load_recipe("opt-6.7b-to-opt-1.3b")
    print(keras_mta.runner.plan_run(recipe))
    ```
    """
    recipe.validate()
    teacher = _model_plan(recipe, "teacher", tiny)
    student = _model_plan(recipe, "student", tiny)
    dist = recipe.distillation
    ablations = {v: ablation_of(recipe, v) for v in dist.compare}
    hra_variants = [
        v for v, a in ablations.items() if "hra" in ABLATION_TERMS[a]
    ]
    pairs = _pairs(recipe, teacher, student, ablations.get("mta", "full"))
    dims = None
    projectors = 0
    if teacher.count and student.count:
        dims = (student.count.hidden_dim, teacher.count.hidden_dim)
        if pairs is not None and hra_variants:
            projectors = projector_parameters(
                [dims[0]] * len(pairs), [dims[1]] * len(pairs)
            )
    training = recipe.training
    memory = None
    if dims is not None:
        memory = estimate_memory(
            teacher.count,
            student.count,
            projectors,
            training,
            recipe.data.sequence_length,
            len(pairs or ()),
            dims[1],
            # Issue 20: sampling and the replay buffer.
            generation=generation_of(recipe),
            word_units=recipe.data.max_word_units,
            phrase_units=recipe.data.max_phrase_units,
        )
    problems = recipe_problems(recipe, check_files=True)
    where = f" ({recipe.source})" if recipe.source else ""
    sections = [
        (
            f"Plan of {recipe.name}{where}",
            [recipe.description or "(no description)"]
            + [
                "Nothing is loaded or downloaded: counts come from the "
                "`architecture` tables."
            ],
        ),
        ("Teacher", _model_lines(teacher)),
        (
            "Student",
            _model_lines(student) + _student_lines(recipe, student),
        ),
        (
            "Alignment",
            _alignment_lines(recipe, pairs, hra_variants, projectors, dims),
        ),
        ("Loss", _loss_lines(recipe)),
        (
            "Optimizer",
            _optimizer_lines(recipe, student, projectors, hra_variants),
        ),
        ("Data", _data_lines(recipe)),
        ("Evaluation", _evaluation_lines(recipe)),
        ("Output", [output_dir or output_dir_of(recipe)]),
        ("Memory on one device", _memory_lines(memory)),
        (
            "When the run starts",
            [f"refused: {p}" for p in problems]
            or ["every file it reads is there"],
        ),
    ]
    return RunPlan(
        recipe=recipe,
        teacher=teacher,
        student=student,
        pairs=pairs,
        projector_parameters=projectors,
        effective_batch_size=(
            training.batch_size * training.gradient_accumulation_steps
        ),
        memory=memory,
        problems=problems,
        sections=sections,
    )
