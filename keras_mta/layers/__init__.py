"""Keras layers of keras-mta: the alignment losses.

`SpanMasker` (TensorFlow preprocessing) lives in
`keras_mta.preprocessing`; `keras_mta.layers.SpanMasker` is kept as an
alias of it for compatibility. Names load on first use.
"""

from keras_mta.imports import lazy_exports as _lazy_exports

_EXPORTS = {
    "AlignmentLoss": "keras_mta.layers.alignment_loss",
    "HiddenAlignmentLoss": "keras_mta.layers.hidden_alignment_loss",
    "StructuralAlignmentLoss": "keras_mta.layers.structural_alignment_loss",
    "TrajectoryAlignmentLoss": "keras_mta.layers.trajectory_alignment_loss",
    # Moved to `keras_mta.preprocessing.SpanMasker` (TensorFlow
    # preprocessing, not a `keras.ops` layer); kept as an alias.
    "SpanMasker": "keras_mta.preprocessing.span_masker",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
