"""keras-mta: Multi-Granular Trajectory Alignment distillation for Keras 3.

`import keras_mta`, the model, the layers and the losses need keras,
keras-hub and one backend only. The other names load on first use
(`keras_mta.imports.lazy_exports`): the input pipelines (`preprocessing`,
`data`) import TensorFlow, tensorflow-text and spaCy when they are used.
"""

import os as _os
import sys as _sys

# The `keras-mta` command (its console script, or `python -m
# keras_mta.cli.main`, while Python imports this package as the parent of
# the module it runs): TensorFlow starts here with its native start-up lines
# filtered out (keras-hub imports TensorFlow when it is installed, so this
# comes before the imports below; see keras_mta/utils/native_logs.py). A
# program that imports keras_mta is left alone.
_COMMAND = ("keras-mta", "keras-mta.exe")
if _sys.argv and (
    _os.path.basename(_sys.argv[0]) in _COMMAND or _sys.argv[0] == "-m"
):
    from keras_mta.utils.native_logs import start_tensorflow_quietly

    start_tensorflow_quietly()

# The model side (keras and keras-hub only) comes with the package, so that
# its serializable classes are registered for `keras.saving` and keras-hub's
# `from_preset` (DistillationModel, the alignment losses, the divergences,
# the tokenizer of presets converted from GGUF) and the cached teacher
# source; the rest loads on first use.
from keras_mta import models as models  # noqa: E402 (after the above)
from keras_mta import teacher_cache as teacher_cache  # noqa: E402
from keras_mta.imports import lazy_exports as _lazy_exports  # noqa: E402

__version__ = "0.1.0.dev0"

_EXPORTS = {
    # Subpackages.
    "analysis": "keras_mta.analysis",
    "data": "keras_mta.data",
    "evaluation": "keras_mta.evaluation",
    "generation": "keras_mta.generation",
    "layers": "keras_mta.layers",
    "losses": "keras_mta.losses",
    "models": "keras_mta.models",
    "preprocessing": "keras_mta.preprocessing",
    "recipe": "keras_mta.recipe",
    "teacher_cache": "keras_mta.teacher_cache",
    # Models.
    "AlignmentPlan": "keras_mta.models.alignment_plan",
    "CachedTeacher": "keras_mta.teacher_cache.cached_teacher",
    "DistillationModel": "keras_mta.models.distillation_model",
    "NonFiniteError": "keras_mta.models.nonfinite_guard",
    # Preprocessing.
    "DistillationPreprocessor": (
        "keras_mta.preprocessing.distillation_preprocessor"
    ),
    "PhraseChunker": "keras_mta.preprocessing.chunking",
    "PreprocessingStatistics": (
        "keras_mta.preprocessing.preprocessing_statistics"
    ),
    "SpanCache": "keras_mta.preprocessing.cache",
    "SpanMasker": "keras_mta.preprocessing.span_masker",
    "SpanStatistics": "keras_mta.preprocessing.statistics",
    "build_span_cache": "keras_mta.preprocessing.cache",
    # Teacher cache.
    "TeacherCache": "keras_mta.teacher_cache.store",
    "build_teacher_cache": "keras_mta.teacher_cache.builder",
    # Training on the student's own outputs.
    "GenerationSchedule": "keras_mta.generation.generation_schedule",
    "ReplayBuffer": "keras_mta.generation.replay_buffer",
    "StudentGeneratedDataset": (
        "keras_mta.generation.student_generated_dataset"
    ),
    # Recipes.
    "Recipe": "keras_mta.recipe",
    "load_recipe": "keras_mta.recipe",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
