"""`CachedTeacher`: a teacher read from stored signals.

`keras_mta.build_teacher_cache` runs a teacher once over a dataset and
stores its signals (`keras_mta.teacher_cache.signals`); `CachedTeacher`
describes the stored teacher, and a `DistillationModel` given a
`CachedTeacher` in place of the teacher model reads the signals from its
inputs (`TeacherCache.dataset` puts them there) and never runs a teacher.
"""

import keras

from keras_mta.models.hidden_states import get_backbone
from keras_mta.models.hidden_states import hidden_state_tensor


@keras.saving.register_keras_serializable(package="keras_mta")
class CachedTeacher:
    """The description of a teacher whose signals were computed ahead.

    Pass it as the `teacher` of a `DistillationModel` to train from a
    teacher cache (`keras_mta.TeacherCache.dataset` puts the signals into
    the inputs); `CachedTeacher.from_cache(cache)` reads it from the cache
    that `keras_mta.build_teacher_cache` returns.

    Args:
        name: the teacher's name (for messages).
        num_layers: int, the teacher's number of transformer blocks.
        vocabulary_size: int.
        layers: list of the cached hidden-state indices (the plan's
            teacher layers, HF convention).
        hidden_dims: list of the hidden sizes at `layers`.
        top_k: int, the number of cached most-likely tokens per position.
        temperature: float, the temperature the log-probabilities were
            computed at (the KD temperature of training must match).

    Examples:

    ```python
    cache = keras_mta.build_teacher_cache(teacher, plan, x, "cache/")
    model = keras_mta.DistillationModel(
        keras_mta.CachedTeacher.from_cache(cache), student, plan=plan)
    model.compile(optimizer="adamw")
    model.fit(cache.dataset((x, y, sample_weight), batch_size=8))
    ```
    """

    def __init__(
        self,
        name,
        num_layers,
        vocabulary_size,
        layers,
        hidden_dims,
        top_k,
        temperature=1.0,
    ):
        layers = [int(i) for i in layers]
        hidden_dims = [int(d) for d in hidden_dims]
        if len(layers) != len(hidden_dims):
            raise ValueError(
                f"CachedTeacher has {len(layers)} layers but "
                f"{len(hidden_dims)} hidden sizes; give one per layer."
            )
        if not 1 <= int(top_k) <= int(vocabulary_size):
            raise ValueError(
                f"`top_k` must lie in [1, {vocabulary_size}], got {top_k}."
            )
        self.name = str(name)
        self.num_layers = int(num_layers)
        self.vocabulary_size = int(vocabulary_size)
        self.layers = layers
        self.hidden_dims = hidden_dims
        self.top_k = int(top_k)
        self.temperature = float(temperature)

    def hidden_dim(self, index):
        """Hidden size of cached layer `index`; a clear error when the
        layer was not cached."""
        if index not in self.layers:
            raise ValueError(
                f"The cached teacher {self.name!r} stores hidden states of "
                f"layers {self.layers}, not of layer {index}. Train with the "
                "plan the cache was built with, or build a cache for this "
                "plan."
            )
        return self.hidden_dims[self.layers.index(index)]

    def get_config(self):
        return {
            "name": self.name,
            "num_layers": self.num_layers,
            "vocabulary_size": self.vocabulary_size,
            "layers": list(self.layers),
            "hidden_dims": list(self.hidden_dims),
            "top_k": self.top_k,
            "temperature": self.temperature,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_cache(cls, cache):
        """The teacher described in a `keras_mta.TeacherCache`."""
        config = (getattr(cache, "metadata", None) or {}).get("teacher")
        if config is None:
            raise ValueError(
                f"{cache!r} holds no teacher description (metadata "
                "'teacher'); build it with keras_mta.build_teacher_cache."
            )
        return cls.from_config(config)

    def __repr__(self):
        return (
            f"CachedTeacher({self.name!r}, layers={self.layers}, "
            f"top_k={self.top_k}, temperature={self.temperature})"
        )


def describe_teacher(teacher, layers, top_k, temperature=1.0):
    """The `CachedTeacher` of a keras-hub teacher cached at `layers`."""
    backbone = get_backbone(teacher)
    return CachedTeacher(
        name=teacher.name,
        num_layers=len(backbone.transformer_layers),
        vocabulary_size=backbone.token_embedding.input_dim,
        layers=list(layers),
        hidden_dims=[
            int(hidden_state_tensor(backbone, i).shape[-1]) for i in layers
        ],
        top_k=top_k,
        temperature=temperature,
    )
