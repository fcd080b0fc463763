"""Which teacher layer aligns with which student layer, and how."""

import math
import operator

import keras

from keras_mta.utils.checks import check_non_negative

# Layer-index convention (Hugging Face `output_hidden_states`), written once
# here and referred to from the docstrings below.
INDEX_CONVENTION = (
    "Layer indices follow the Hugging Face `output_hidden_states` "
    "convention: 0 is the embedding output (the input of the first "
    "transformer block), i in 1 .. L-1 is the output of block i (keras-hub: "
    "`backbone.transformer_layers[i - 1].output`), and L, the number of "
    "blocks, is the output after the final norm (keras-hub: "
    "`backbone.output`)."
)


def _as_index_list(name, values):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(
            f"`{name}` must be a list of layer indices, got {values!r}."
        )
    values = list(values)
    indices = []
    for value in values:
        # Ints and NumPy integers; never bools or floats.
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise TypeError(
                f"`{name}` must hold int layer indices, got {value!r} in "
                f"{values!r}."
            )
        indices.append(operator.index(value))
    return indices


def _spaced_indices(num_layers, num_pairs):
    """`num_pairs` strictly increasing indices in `[0, num_layers]`.

    Proportionally spaced from `num_layers / 2` to `num_layers` (the upper
    half), or, when the upper half has too few indices, the last
    `num_pairs` indices.
    """
    if num_pairs == 1:
        return [num_layers]
    low = num_layers / 2.0
    step = (num_layers - low) / (num_pairs - 1)
    if step >= 1.0:
        # floor(x + 0.5) (not Python's round-half-even) keeps a sequence
        # with step >= 1 strictly increasing.
        return [int(math.floor(low + k * step + 0.5)) for k in range(num_pairs)]
    return list(range(num_layers - num_pairs + 1, num_layers + 1))


@keras.saving.register_keras_serializable(package="keras_mta")
class AlignmentPlan:
    """The layer mapping and settings of Multi-Granular Trajectory Alignment.

    A plan pairs `K` teacher layers with `K` student layers, ordered from
    low to high. Pairs `0 .. word_pairs - 1` align word units and pairs
    `word_pairs .. K - 1` phrase units; each pair contributes
    `L_DSA_k + hra_scale * L_HRA_k` and the MTA loss is the mean over pairs.

    Layer indices follow the Hugging Face `output_hidden_states` convention,
    so that published mappings carry over unchanged:

    - `0` is the embedding output, i.e. the input of the first transformer
      block (keras-hub: `backbone.transformer_layers[0].input`);
    - `i` for `1 <= i < L` is the output of block `i` (keras-hub:
      `backbone.transformer_layers[i - 1].output`);
    - `L`, the number of blocks, is the output after the final norm
      (keras-hub: `backbone.output`), as in Hugging Face, where the last
      entry of `hidden_states` has the final norm applied. The raw output of
      the last block has no index.

    The plan itself only checks what it can alone (equal lengths, strictly
    increasing non-negative indices, `0 <= word_pairs <= K`); the indices are
    checked against the actual models by `validate()`, which
    `keras_mta.DistillationModel` calls at construction.

    Args:
        teacher_layers: list of `K` int indices of teacher hidden states.
        student_layers: list of `K` int indices of student hidden states.
        word_pairs: int in `[0, K]`, how many of the lowest pairs align word
            units (the word/phrase switch point). Defaults to 1.
        hra_scale: float >= 0, the weight of HRA within each pair. Defaults
            to 0.1.
        entropy_weighting: bool, replace the teacher's token importance in
            the unit weights and HRA weights by the teacher-confidence
            weights `1 - H(p_T) / log V`. Defaults to False.

    Examples:

    >>> plan = AlignmentPlan(teacher_layers=[24, 36, 48],
    ...                      student_layers=[6, 9, 12])
    >>> plan.num_pairs
    3
    >>> AlignmentPlan.gpt2_xl_to_gpt2() == plan
    True
    >>> AlignmentPlan.default(teacher_num_layers=48, student_num_layers=12)
    AlignmentPlan(teacher_layers=[24, 36, 48], student_layers=[6, 9, 12], \
word_pairs=1, hra_scale=0.1, entropy_weighting=False)

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374); layer mappings from its public
          reference scripts.
    """

    def __init__(
        self,
        teacher_layers,
        student_layers,
        word_pairs=1,
        hra_scale=0.1,
        entropy_weighting=False,
    ):
        teacher_layers = _as_index_list("teacher_layers", teacher_layers)
        student_layers = _as_index_list("student_layers", student_layers)
        if len(teacher_layers) != len(student_layers):
            raise ValueError(
                f"`teacher_layers` has {len(teacher_layers)} entries "
                f"({teacher_layers}) but `student_layers` has "
                f"{len(student_layers)} ({student_layers}). Give one teacher "
                "index and one student index per aligned pair, e.g. "
                "AlignmentPlan([24, 36, 48], [6, 9, 12]), or use "
                "AlignmentPlan.default(teacher_num_layers, "
                "student_num_layers)."
            )
        if not teacher_layers:
            raise ValueError(
                "An AlignmentPlan needs at least one layer pair; got empty "
                "`teacher_layers` and `student_layers`. To train without "
                "MTA, pass `mta_weight=0` to DistillationModel."
            )
        for name, layers in (
            ("teacher_layers", teacher_layers),
            ("student_layers", student_layers),
        ):
            if min(layers) < 0:
                raise ValueError(
                    f"`{name}` holds a negative index: {layers}. "
                    f"{INDEX_CONVENTION}"
                )
            if any(b <= a for a, b in zip(layers, layers[1:])):
                raise ValueError(
                    f"`{name}` must be strictly increasing (pairs go from "
                    f"low to high layers; the lowest `word_pairs` pairs "
                    f"align word units), got {layers}."
                )
        num_pairs = len(teacher_layers)
        if isinstance(word_pairs, bool) or not 0 <= int(word_pairs) <= (
            num_pairs
        ):
            raise ValueError(
                f"`word_pairs` must lie in [0, {num_pairs}] (the number of "
                f"layer pairs), got {word_pairs}. 0 aligns phrase units "
                f"everywhere, {num_pairs} word units everywhere."
            )
        check_non_negative("hra_scale", hra_scale)
        self.teacher_layers = teacher_layers
        self.student_layers = student_layers
        self.word_pairs = int(word_pairs)
        self.hra_scale = float(hra_scale)
        self.entropy_weighting = bool(entropy_weighting)

    @property
    def num_pairs(self):
        """The number `K` of aligned layer pairs."""
        return len(self.teacher_layers)

    def validate(self, teacher_num_layers, student_num_layers):
        """Check the indices against models with the given block counts.

        Args:
            teacher_num_layers: int, the number of transformer blocks `L` of
                the teacher (valid indices are `0 .. L`).
            student_num_layers: int, the same for the student.

        Raises:
            ValueError: an index is out of range, with the valid range and
                a plan that fits.
        """
        for role, layers, num_layers in (
            ("teacher", self.teacher_layers, teacher_num_layers),
            ("student", self.student_layers, student_num_layers),
        ):
            bad = [i for i in layers if i > num_layers]
            if bad:
                fits = self._safe_default(
                    teacher_num_layers, student_num_layers
                )
                raise ValueError(
                    f"Layer index {bad[0]} in `{role}_layers={layers}` is "
                    f"out of range for the {role}, which has {num_layers} "
                    f"transformer blocks (valid indices 0 .. {num_layers}). "
                    f"{INDEX_CONVENTION} Fix the plan, or use "
                    f"AlignmentPlan.default({teacher_num_layers}, "
                    f"{student_num_layers}) = {fits}."
                )

    @staticmethod
    def _safe_default(teacher_num_layers, student_num_layers):
        try:
            return repr(
                AlignmentPlan.default(teacher_num_layers, student_num_layers)
            )
        except ValueError:
            return "(none fits)"

    def replace(self, **kwargs):
        """A copy of the plan with some arguments replaced."""
        config = self.get_config()
        config.update(kwargs)
        return AlignmentPlan.from_config(config)

    def get_config(self):
        return {
            "teacher_layers": list(self.teacher_layers),
            "student_layers": list(self.student_layers),
            "word_pairs": self.word_pairs,
            "hra_scale": self.hra_scale,
            "entropy_weighting": self.entropy_weighting,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        if not isinstance(other, AlignmentPlan):
            return NotImplemented
        return self.get_config() == other.get_config()

    def __hash__(self):
        return hash(repr(self))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"AlignmentPlan({args})"

    # === Constructors ===

    @classmethod
    def default(
        cls,
        teacher_num_layers,
        student_num_layers,
        num_pairs=3,
        **kwargs,
    ):
        """A plan for any teacher/student pair.

        `num_pairs` indices per model, proportionally spaced over the upper
        half of each model, from `L / 2` to `L` (the final-norm output), one
        word pair. For a 48-block teacher and a 12-block student this gives
        the paper's GPT-2 mapping `[24, 36, 48]` / `[6, 9, 12]`. When a model
        has too few blocks for `num_pairs` distinct upper-half indices, its
        last `num_pairs` indices are used.

        Args:
            teacher_num_layers: int >= 1, the teacher's number of blocks.
            student_num_layers: int >= 1, the student's number of blocks.
            num_pairs: int >= 1, how many pairs. Defaults to 3.
            **kwargs: further `AlignmentPlan` arguments (`word_pairs`,
                defaults to 1, `hra_scale`, `entropy_weighting`).
        """
        teacher_num_layers = int(teacher_num_layers)
        student_num_layers = int(student_num_layers)
        num_pairs = int(num_pairs)
        if num_pairs < 1:
            raise ValueError(f"`num_pairs` must be >= 1, got {num_pairs}.")
        for role, num_layers in (
            ("teacher", teacher_num_layers),
            ("student", student_num_layers),
        ):
            if num_layers < 1:
                raise ValueError(
                    f"The {role} must have at least one block, got "
                    f"{role}_num_layers={num_layers}."
                )
            if num_layers + 1 < num_pairs:
                raise ValueError(
                    f"The {role} has {num_layers} blocks, hence only "
                    f"{num_layers + 1} hidden states (indices 0 .. "
                    f"{num_layers}); ask for at most {num_layers + 1} "
                    f"pairs, not num_pairs={num_pairs}."
                )
        kwargs.setdefault("word_pairs", 1)
        return cls(
            teacher_layers=_spaced_indices(teacher_num_layers, num_pairs),
            student_layers=_spaced_indices(student_num_layers, num_pairs),
            **kwargs,
        )

    @classmethod
    def gpt2_xl_to_gpt2(cls, **kwargs):
        """GPT-2 1.5B (48 blocks) to GPT-2 120M (12 blocks).

        Teacher `[24, 36, 48]`, student `[6, 9, 12]`, one word pair.
        """
        kwargs.setdefault("word_pairs", 1)
        return cls([24, 36, 48], [6, 9, 12], **kwargs)

    @classmethod
    def opt_6_7b_to_opt_1_3b(cls, **kwargs):
        """OPT 6.7B (32 blocks) to OPT 1.3B (24 blocks).

        Teacher `[20, 23, 26, 29, 32]`, student `[16, 18, 20, 22, 24]`, one
        word pair.
        """
        kwargs.setdefault("word_pairs", 1)
        return cls([20, 23, 26, 29, 32], [16, 18, 20, 22, 24], **kwargs)

    @classmethod
    def qwen1_5_1_8b_to_qwen1_5_0_5b(cls, **kwargs):
        """Qwen1.5 1.8B (24 blocks) to Qwen1.5 0.5B (24 blocks).

        Teacher and student `[14, 16, 18, 20, 22, 24]`, one word pair.
        """
        kwargs.setdefault("word_pairs", 1)
        layers = [14, 16, 18, 20, 22, 24]
        return cls(list(layers), list(layers), **kwargs)

    @classmethod
    def from_name(cls, name, **kwargs):
        """One of the paper's plans by name (see `PAPER_PLANS`)."""
        key = str(name).lower().replace("-", "_").replace(".", "_")
        if key not in PAPER_PLANS:
            raise ValueError(
                f"Unknown alignment plan {name!r}. Known: "
                f"{sorted(PAPER_PLANS)}; or use AlignmentPlan.default("
                "teacher_num_layers, student_num_layers)."
            )
        return getattr(cls, PAPER_PLANS[key])(**kwargs)


# Plan names (as accepted by `AlignmentPlan.from_name`) -> constructor names.
PAPER_PLANS = {
    "gpt2_xl_to_gpt2": "gpt2_xl_to_gpt2",
    "opt_6_7b_to_opt_1_3b": "opt_6_7b_to_opt_1_3b",
    "qwen1_5_1_8b_to_qwen1_5_0_5b": "qwen1_5_1_8b_to_qwen1_5_0_5b",
}
