"""The names of ablations, compared variants and divergences, defined once.

The model (`DistillationModel(ablation=...)`), the recipe
(`distillation.ablation`, `distillation.compare`, `distillation.divergence`),
the runner and the benchmark scripts all import these; none keeps its own
list.
"""

import collections

from keras_mta.losses.cross_vocabulary import (
    CROSS_VOCABULARY_DIVERGENCES as _CROSS_VOCABULARY_CLASSES,
)
from keras_mta.losses.divergences import DIVERGENCES as _DIVERGENCE_CLASSES

# `DistillationModel(ablation=...)`: which loss terms a model trains with.
ABLATIONS = (
    "full",
    "kd_only",
    "sft_only",
    "dsa_only",
    "hra_only",
    "word_units_only",
    "phrase_units_only",
)

# `DistillationModel(units=...)`: which unit kind each layer pair aligns.
UNIT_MODES = ("mixed", "word", "phrase")

# The loss terms (metric names of `DistillationModel`) each ablation trains
# with, besides the total `loss`: plots draw only these for a run.
ABLATION_TERMS = {
    "full": ("ce", "kd", "dsa", "hra"),
    "kd_only": ("ce", "kd"),
    "sft_only": ("ce",),
    "dsa_only": ("ce", "kd", "dsa"),
    "hra_only": ("ce", "kd", "hra"),
    "word_units_only": ("ce", "kd", "dsa", "hra"),
    "phrase_units_only": ("ce", "kd", "dsa", "hra"),
}

# Divergence names accepted by `DistillationModel(divergence=...)` and
# `distillation.divergence`.
# Divergences that compare two vocabularies (a teacher with its own
# tokenizer, `data.student_tokenizer`); the others compare one.
CROSS_VOCABULARY_DIVERGENCES = tuple(_CROSS_VOCABULARY_CLASSES)
DIVERGENCES = tuple(_DIVERGENCE_CLASSES) + CROSS_VOCABULARY_DIVERGENCES

Variant = collections.namedtuple("Variant", ["label", "ablation"])

# The students a recipe (`distillation.compare`), the runner and the
# benchmarks compare: name -> (label for tables and plots, ablation).
VARIANTS = {
    "sft": Variant("SFT only (no teacher)", "sft_only"),
    "kd": Variant("KD only", "kd_only"),
    "kd_dsa": Variant("KD + DSA", "dsa_only"),
    "kd_hra": Variant("KD + HRA", "hra_only"),
    "mta": Variant("MTA (KD + DSA + HRA)", "full"),
    "mta_word_units": Variant(
        "MTA, word units at every pair", "word_units_only"
    ),
    "mta_phrase_units": Variant(
        "MTA, phrase units at every pair", "phrase_units_only"
    ),
}

# Older spellings still accepted where a user types a variant name (recipes,
# benchmark flags): old name -> name in `VARIANTS`.
VARIANT_ALIASES = {
    "kd_only": "kd",
    "full_mta": "mta",
    "dsa_only": "kd_dsa",
    "hra_only": "kd_hra",
    "word_units_only": "mta_word_units",
    "phrase_units_only": "mta_phrase_units",
}


def variant_names(names):
    """`[variant_name(n) for n in names]`, for lists typed by a user (a
    comma-separated flag, a recipe's `distillation.compare`)."""
    return [variant_name(name) for name in names]


def variant_name(name):
    """The name in `VARIANTS` of `name` (or of an older alias of it), with
    its student-generation suffix when it has one (`"kd_only+adaptive"`
    -> `"kd+adaptive"`; see `GENERATION_SUFFIXES`).

    Raises:
        ValueError: `name` is neither a variant nor an alias, with the
            choices, or its suffix is unknown, or `sft` has one.
    """
    base, mode = split_variant(name)
    return base if mode is None else f"{base}+{mode}"


# --- Student generation per variant (issue 20): `NAME+MODE` trains the
# variant NAME with `training.student_generation`'s settings in MODE,
# whatever `training.student_generation.mode` says, so that one run
# compares a variant with and without generation. ---
GENERATION_SUFFIXES = ("adaptive", "on_policy")


def split_variant(name):
    """`(variant, generation mode or None)` of a compared variant's name:
    `"mta+on_policy"` -> `("mta", "on_policy")`, `"kd_only"` -> `("kd",
    None)`.

    Raises:
        ValueError: an unknown variant or suffix, or a suffix on `sft`
            (without a teacher there is nothing to learn from the
            student's own text).
    """
    if not isinstance(name, str):
        raise TypeError(f"A variant name must be a string, got {name!r}.")
    base, plus, mode = name.partition("+")
    base = VARIANT_ALIASES.get(base, base)
    if base not in VARIANTS:
        raise ValueError(
            f"Unknown variant {base!r}; choose one of {list(VARIANTS)}, "
            f"optionally with a generation suffix "
            f"{['+' + s for s in GENERATION_SUFFIXES]}."
        )
    if not plus:
        return base, None
    if mode not in GENERATION_SUFFIXES:
        raise ValueError(
            f"Unknown student-generation suffix {'+' + mode!r} of variant "
            f"{name!r}; choose one of "
            f"{['+' + s for s in GENERATION_SUFFIXES]}."
        )
    if base == "sft":
        raise ValueError(
            f"Variant {name!r}: `sft` trains without a teacher, so it has "
            "no use for the student's own responses. Use a variant with a "
            "teacher (kd, mta, ...) with the suffix."
        )
    return base, mode


# --- end of student generation per variant ---
