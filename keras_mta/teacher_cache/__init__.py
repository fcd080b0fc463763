"""The teacher cache: run a teacher once, train from its stored signals.

- `store` (`TeacherCache`): NumPy chunk files on disk and their tf.data
  stream; knows nothing about models (TensorFlow is imported only when a
  dataset is built).
- `integrity` (`DamagedChunkError`, `DamagedCacheError`): the checks of
  the manifest and of each chunk's size, checksum and arrays.
- `keys` and `signals` (`TeacherSignals`): what is computed from a teacher
  (keras.ops) and the input names it is stored under.
- `builder` (`build_teacher_cache`): runs the teacher over a dataset and
  writes the store.
- `cached_teacher` (`CachedTeacher`): the teacher source a
  `DistillationModel` trains from, reading the signals from its inputs.
- `cached_cross_tokenizer_teacher` (`CachedCrossTokenizerTeacher`): the
  same for a teacher with its own tokenizer (signals on its own tokens,
  paired with the student's through the inputs), and `tokenizer_identity`,
  the teacher tokenizer such a cache is built for.
"""

from keras_mta.teacher_cache.builder import build_teacher_cache
from keras_mta.teacher_cache.cached_cross_tokenizer_teacher import (
    CachedCrossTokenizerTeacher,
)
from keras_mta.teacher_cache.cached_teacher import CachedTeacher
from keras_mta.teacher_cache.integrity import DamagedCacheError
from keras_mta.teacher_cache.integrity import DamagedChunkError
from keras_mta.teacher_cache.signals import TeacherSignals
from keras_mta.teacher_cache.store import TeacherCache
from keras_mta.teacher_cache.tokenizer_identity import tokenizer_identity
