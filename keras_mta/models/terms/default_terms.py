"""The terms `DistillationModel`'s short constructor builds.

`DistillationModel(teacher, student, plan=..., divergence=...,
kd_ratio=..., mta_weight=...)` (and its switches and `ablation`) stands for
the list

```
[CrossEntropyTerm(1 - kd_ratio),            # 1 without a teacher
 KDTerm(divergence, kd_ratio),              # unless use_kd=False
 TrajectoryAlignmentTerm(L_MTA, kd_ratio * mta_weight),   # MTA on
 AlignmentTerm(L_i, kd_ratio * loss_weight_i), ...]       # your losses
```

so that `loss = (1 - kd_ratio) CE + kd_ratio (KD + mta_weight L_MTA +
sum_i w_i L_i)`. An ablation is which of these terms are built.
"""

import keras

from keras_mta.layers.alignment_loss import AlignmentLoss
from keras_mta.layers.trajectory_alignment_loss import TrajectoryAlignmentLoss
from keras_mta.losses.divergences import get_divergence
from keras_mta.models.terms.alignment_term import ALIGNMENT_SCOPE
from keras_mta.models.terms.alignment_term import AlignmentTerm
from keras_mta.models.terms.cross_entropy_term import CrossEntropyTerm
from keras_mta.models.terms.kd_term import KDTerm
from keras_mta.models.terms.trajectory_alignment_term import (
    TrajectoryAlignmentTerm,
)
from keras_mta.models.variants import ABLATIONS
from keras_mta.models.variants import UNIT_MODES
from keras_mta.utils.checks import check_non_negative

# Metric and term names of the built-in terms (custom alignment losses are
# reported under their layer names, which must differ from these).
RESERVED_NAMES = (
    "loss",
    "ce",
    "kd",
    "mta",
    "dsa",
    "hra",
    "pair_dsa",
    "pair_hra",
)


class Switches:
    """The short constructor's switches after its `ablation` is applied.

    Args:
        ablation: a name from `keras_mta.models.variants.ABLATIONS` (None
            and `""` mean `"full"`).
        teacher: the teacher (set to None by `"sft_only"`).
        mta_weight: float >= 0 (0 with `"kd_only"`).
        use_kd, use_dsa, use_hra: bools.
        units: a name from `UNIT_MODES`.
        alignment_losses: the custom losses (dropped by `"sft_only"`).
    """

    def __init__(
        self,
        ablation,
        teacher,
        mta_weight,
        use_kd,
        use_dsa,
        use_hra,
        units,
        alignment_losses,
    ):
        if ablation in (None, ""):
            ablation = "full"
        if ablation not in ABLATIONS:
            raise ValueError(
                f"Unknown ablation {ablation!r}; choose one of {ABLATIONS}."
            )
        if ablation == "kd_only":
            mta_weight = 0.0
        elif ablation == "sft_only":
            teacher = None
            # CE alone: the custom losses go too.
            alignment_losses = None
        elif ablation == "dsa_only":
            use_hra = False
        elif ablation == "hra_only":
            use_dsa = False
        elif ablation == "word_units_only":
            units = "word"
        elif ablation == "phrase_units_only":
            units = "phrase"
        if units not in UNIT_MODES:
            raise ValueError(
                f"`units` must be one of {UNIT_MODES}, got {units!r}."
            )
        check_non_negative("mta_weight", mta_weight)
        self.teacher = teacher
        self.mta_weight = float(mta_weight)
        self.use_kd = bool(use_kd)
        self.use_dsa = bool(use_dsa)
        self.use_hra = bool(use_hra)
        self.units = units
        self.alignment_losses = check_alignment_losses(
            alignment_losses, teacher
        )

    @property
    def needs(self):
        """What the terms of these switches read of the teacher."""
        if self.teacher is None:
            return set()
        needs = {"logits"} if self.use_kd else set()
        if self.mta_enabled or self.alignment_losses:
            needs.add("hidden_states")
        return needs

    @property
    def mta_enabled(self):
        return (
            self.teacher is not None
            and self.mta_weight > 0.0
            and (self.use_dsa or self.use_hra)
        )


def check_alignment_losses(alignment_losses, teacher):
    """The `alignment_losses` argument as a checked list of layers."""
    if alignment_losses is None:
        return []
    if isinstance(alignment_losses, AlignmentLoss):
        alignment_losses = [alignment_losses]
    if not isinstance(alignment_losses, (list, tuple)):
        raise TypeError(
            "`alignment_losses` must be a list of keras_mta.layers."
            "AlignmentLoss layers (each layer's `name` is its metric name "
            "and its `loss_weight` its weight), got "
            f"{type(alignment_losses).__name__}."
        )
    layers = list(alignment_losses)
    for layer in layers:
        if not isinstance(layer, AlignmentLoss):
            raise TypeError(
                "Every entry of `alignment_losses` must be a subclass "
                "instance of keras_mta.layers.AlignmentLoss, got "
                f"{type(layer).__name__}."
            )
    if layers and teacher is None:
        raise ValueError(
            "`alignment_losses` compare teacher and student hidden states, "
            "but there is no teacher (teacher=None). Pass a teacher, or "
            "leave out `alignment_losses` for supervised fine-tuning."
        )
    names = [layer.name for layer in layers]
    for name in names:
        pair_metric = name.split("_")[0] in ("dsa", "hra") and (
            name.split("_")[-1].isdigit()
        )
        if name in RESERVED_NAMES or pair_metric:
            raise ValueError(
                f"An alignment loss is named {name!r}, a name the model "
                f"uses for its own metrics ({', '.join(RESERVED_NAMES)}, "
                "dsa_k, hra_k). Give the layer another `name=`."
            )
    return layers


def default_terms(
    switches,
    divergence,
    kd_ratio,
    plan,
    pair_metrics,
    teacher_dims,
    student_dims,
):
    """The list of terms of the short constructor.

    Args:
        switches: a `Switches`.
        divergence: the KD divergence (a `keras.losses.Loss`).
        kd_ratio: float in `[0, 1]`.
        plan: the `AlignmentPlan` (None without a teacher).
        pair_metrics: bool, report `dsa_k` / `hra_k`.
        teacher_dims, student_dims: hidden sizes at the plan's pairs (only
            read when MTA is on).

    Returns:
        A list of `LossTerm`s.
    """
    if switches.teacher is None:
        return [CrossEntropyTerm(weight=1.0)]
    terms = [CrossEntropyTerm(weight=1.0 - kd_ratio)]
    if switches.use_kd:
        terms.append(KDTerm(divergence, weight=kd_ratio))
    if switches.mta_enabled:
        word_pairs = {
            "mixed": plan.word_pairs,
            "word": plan.num_pairs,
            "phrase": 0,
        }[switches.units]
        with keras.name_scope(ALIGNMENT_SCOPE):
            loss = TrajectoryAlignmentLoss(
                teacher_dims=teacher_dims,
                # Without HRA the layer creates no projector.
                student_dims=student_dims,
                word_pairs=word_pairs,
                hra_scale=plan.hra_scale,
                use_dsa=switches.use_dsa,
                use_hra=switches.use_hra,
                loss_weight=switches.mta_weight,
                name=ALIGNMENT_SCOPE,
            )
        terms.append(
            TrajectoryAlignmentTerm(
                loss,
                weight=kd_ratio * switches.mta_weight,
                pair_metrics=pair_metrics,
                entropy_weighting=plan.entropy_weighting,
            )
        )
    for layer in switches.alignment_losses:
        terms.append(AlignmentTerm(layer, weight=kd_ratio * layer.loss_weight))
    return terms


def resolve_divergence(divergence, temperature):
    """The KD divergence: a name made at `temperature`, or a
    `keras.losses.Loss` whose own temperature must not conflict."""
    if isinstance(divergence, str):
        return get_divergence(divergence, temperature=temperature)
    divergence = get_divergence(divergence)
    own = getattr(divergence, "temperature", None)
    if float(temperature) != 1.0 and own is not None:
        if float(own) != float(temperature):
            raise ValueError(
                f"`temperature={temperature}` conflicts with the "
                f"divergence's own temperature={own}; set it on the "
                "divergence object only."
            )
    return divergence
