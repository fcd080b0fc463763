"""`CachedTeacher`: a teacher read from stored signals.

`keras_mta.build_teacher_cache` runs a teacher once over a dataset and
stores its signals (`keras_mta.teacher_cache.signals`); `CachedTeacher`
describes the stored teacher, and a `DistillationModel` given a
`CachedTeacher` in place of the teacher model reads the signals from its
inputs (`TeacherCache.dataset` puts them there) and never runs a teacher.
"""

import keras
from keras import ops

from keras_mta.models.hidden_states import get_backbone
from keras_mta.models.hidden_states import hidden_state_tensor
from keras_mta.models.teacher_source import TeacherSource
from keras_mta.teacher_cache.keys import ENTROPY_WEIGHTS
from keras_mta.teacher_cache.keys import LOG_REST
from keras_mta.teacher_cache.keys import TOP_K_INDICES
from keras_mta.teacher_cache.keys import TOP_K_LOG_PROBS
from keras_mta.teacher_cache.keys import hidden_key
from keras_mta.teacher_cache.keys import importance_key
from keras_mta.teacher_cache.tokenizer_identity import describe_identity
from keras_mta.teacher_cache.tokenizer_identity import teacher_side
from keras_mta.teacher_cache.tokenizer_identity import tokenizer_identity


@keras.saving.register_keras_serializable(package="keras_mta")
class CachedTeacher(TeacherSource):
    """A teacher source whose signals were computed ahead.

    Pass it as the `teacher` of a `DistillationModel` to train from a
    teacher cache (`keras_mta.TeacherCache.dataset` puts the signals into
    the inputs); `CachedTeacher.from_cache(cache)` reads it from the cache
    that `keras_mta.build_teacher_cache` returns. No teacher runs: its
    hidden states, token importance and entropy weights are read from the
    inputs (keys in `keras_mta.teacher_cache.keys`), and KD uses the
    divergence's top-k form (`divergence.top_k`) on the cached top-k
    log-probabilities. The cache was built on the student's `token_ids`
    (same tokenizer and vocabulary); the cache of a teacher with its own
    tokenizer gives a `CachedCrossTokenizerTeacher` (`from_cache`).

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

    def layer_widths(self, layers):
        return [self.hidden_dim(i) for i in layers]

    def default_plan(self, student_num_layers):
        raise ValueError(
            "Training from a teacher cache needs the plan it was built "
            f"with: pass `plan=` (the cache's teacher layers are "
            f"{self.layers})."
        )

    def prepare(self, layers):
        absent = [i for i in layers if i not in self.layers]
        if absent:
            raise ValueError(
                f"The plan aligns teacher layers {list(layers)}, but the "
                f"teacher cache holds layers {self.layers}, not {absent}. "
                "Train with a plan whose teacher layers the cache holds (all "
                "of them, or some: ablations of the number of pairs reuse "
                "one cache), or build a cache for this plan."
            )

    def check_divergence(self, divergence):
        if not callable(getattr(divergence, "top_k", None)):
            raise ValueError(
                "Training from a teacher cache needs the top-k form of the "
                f"divergence, which {type(divergence).__name__} does not "
                "have. Use one of keras_mta's divergences (forward_kl, "
                "reverse_kl, jensen_shannon, total_variation, "
                "skew_forward_kl, skew_reverse_kl), or `use_kd=False`."
            )
        # A divergence whose top-k form needs enough cached tokens (ULD:
        # only its truncated form, with m <= top_k) says so.
        reads_top_k = getattr(divergence, "reads_top_k", None)
        if reads_top_k is not None and not reads_top_k(self.top_k):
            raise ValueError(
                f"{type(divergence).__name__} with truncation="
                f"{getattr(divergence, 'truncation', None)} cannot be "
                f"computed from the teacher cache of {self.name!r}, which "
                f"keeps its top {self.top_k} tokens: the exact form needs "
                "every probability. Use UniversalLogitDistillation("
                f"truncation=m) with m <= {self.top_k} (a recipe's "
                "distillation.uld_truncation), or train with the live "
                "teacher."
            )
        self.check_temperature(divergence)

    def check_temperature(self, divergence):
        """Raise unless `divergence` runs at the cache's temperature."""
        own = float(getattr(divergence, "temperature", 1.0))
        if own != self.temperature:
            raise ValueError(
                f"The divergence's temperature is {own}, but the teacher "
                "cache holds log-probabilities at temperature "
                f"{self.temperature}. Train at the cache's temperature, or "
                "build a cache at this one."
            )

    def _slots(self, layers):
        # Where each aligned layer sits in the cache (a plan may use some
        # of the cached layers).
        return [self.layers.index(i) for i in layers]

    def input_keys(self, layers, needs):
        keys = []
        if "logits" in needs:
            keys += [TOP_K_LOG_PROBS, TOP_K_INDICES, LOG_REST]
        slots = self._slots(layers)
        if "hidden_states" in needs:
            keys += [hidden_key(k) for k in slots]
        if "importance" in needs:
            keys += [importance_key(k) for k in slots]
        if "entropy_weights" in needs:
            keys.append(ENTROPY_WEIGHTS)
        return tuple(keys)

    missing_inputs_hint = (
        " This model trains from a teacher cache: stream the inputs with "
        "`TeacherCache.dataset((x, y, sample_weight), batch_size)`, which "
        "adds the teacher's signals."
    )

    def padding_mask(self, inputs):
        """The padding mask of the tokens the signals lie on (the
        student's: one tokenizer)."""
        return inputs["padding_mask"]

    def outputs(self, inputs, layers, needs):
        slots = self._slots(layers)
        importance = None
        if "importance" in needs:
            importance = [inputs[importance_key(k)] for k in slots]
        weights = None
        if "entropy_weights" in needs:
            mask = ops.cast(self.padding_mask(inputs), "float32")
            weights = ops.stop_gradient(
                ops.cast(inputs[ENTROPY_WEIGHTS], "float32") * mask
            )
        return {
            # Only the top-k form is kept (see `kd`).
            "logits": None,
            "hidden_states": [
                ops.stop_gradient(ops.cast(inputs[hidden_key(k)], "float32"))
                for k in slots
            ],
            "importance": importance,
            "entropy_weights": weights,
        }

    def kd(self, divergence, outputs, inputs, student_logits, sample_weight):
        return divergence.top_k(
            ops.stop_gradient(ops.cast(inputs[TOP_K_LOG_PROBS], "float32")),
            ops.cast(inputs[TOP_K_INDICES], "int32"),
            ops.stop_gradient(ops.cast(inputs[LOG_REST], "float32")),
            student_logits,
            sample_weight=sample_weight,
        )

    def serialize(self):
        return keras.saving.serialize_keras_object(self)

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

    def check_preprocessor(self, preprocessor):
        """Raise when `preprocessor` makes inputs this cache cannot teach
        from: here (a cache on the student's tokens) a
        `DistillationPreprocessor` whose teacher has its own tokenizer."""
        if teacher_side(preprocessor) is not None:
            raise ValueError(
                f"The teacher cache of {self.name!r} was built on the "
                "student's tokens (one tokenizer), but the preprocessor "
                "tokenizes the teacher's side with its own tokenizer "
                f"({describe_identity(tokenizer_identity(preprocessor))}). "
                "Build a cache for this pairing: "
                "`build_teacher_cache(CrossTokenizerTeacher(teacher), plan, "
                "x, directory, preprocessor=preprocessor)`."
            )

    @classmethod
    def from_cache(cls, cache, preprocessor=None):
        """The teacher described in a `keras_mta.TeacherCache`.

        A cache built for a teacher with its own tokenizer gives a
        `CachedCrossTokenizerTeacher`.

        Args:
            cache: a `keras_mta.TeacherCache`.
            preprocessor: optional `keras_mta.DistillationPreprocessor`
                (or the teacher's keras-hub preprocessor) that makes the
                inputs the model trains on: checked against the tokenizer
                the cache was built for (`check_preprocessor`).
        """
        metadata = getattr(cache, "metadata", None) or {}
        config = metadata.get("teacher")
        if config is None:
            raise ValueError(
                f"{cache!r} holds no teacher description (metadata "
                "'teacher'); build it with keras_mta.build_teacher_cache."
            )
        if metadata.get("teacher_class") == "CachedCrossTokenizerTeacher":
            # Imported here: the sibling class derives from this one.
            from keras_mta.teacher_cache import cached_cross_tokenizer_teacher

            cls = cached_cross_tokenizer_teacher.CachedCrossTokenizerTeacher
        teacher = cls.from_config(config)
        if preprocessor is not None:
            teacher.check_preprocessor(preprocessor)
        return teacher

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
