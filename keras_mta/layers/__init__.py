"""Keras layers of keras-mta: the alignment losses (and, in preprocessing,
the span masker)."""

from keras_mta.layers.alignment_loss import AlignmentLoss
from keras_mta.layers.hidden_alignment_loss import HiddenAlignmentLoss
from keras_mta.layers.span_masker import SpanMasker
from keras_mta.layers.structural_alignment_loss import StructuralAlignmentLoss
from keras_mta.layers.trajectory_alignment_loss import TrajectoryAlignmentLoss
