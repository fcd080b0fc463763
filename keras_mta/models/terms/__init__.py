"""The terms of `DistillationModel`'s objective, each with its weight and
metric name (as `keras.distillation.Distiller` takes
`distillation_losses`): cross-entropy, KD, alignment losses (MTA and your
own `AlignmentLoss` layers)."""

from keras_mta.models.terms.alignment_term import AlignmentTerm
from keras_mta.models.terms.cross_entropy_term import CrossEntropyTerm
from keras_mta.models.terms.default_terms import Switches
from keras_mta.models.terms.default_terms import default_terms
from keras_mta.models.terms.kd_term import KDTerm
from keras_mta.models.terms.loss_term import LossTerm
from keras_mta.models.terms.loss_term import TermInputs
from keras_mta.models.terms.trajectory_alignment_term import (
    TrajectoryAlignmentTerm,
)
