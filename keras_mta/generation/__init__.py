"""keras_mta.generation: training on the student's own outputs.

Names load on first use (`keras_mta.imports.lazy_exports`).
"""

from keras_mta.imports import lazy_exports as _lazy_exports

_EXPORTS = {
    "StudentResponses": "keras_mta.generation.student_responses",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
