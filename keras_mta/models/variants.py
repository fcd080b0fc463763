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
    """The name in `VARIANTS` of `name` (or of an older alias of it).

    Raises:
        ValueError: `name` is neither a variant nor an alias, with the
            choices.
    """
    name = VARIANT_ALIASES.get(name, name)
    if name not in VARIANTS:
        raise ValueError(
            f"Unknown variant {name!r}; choose one of {list(VARIANTS)}."
        )
    return name
