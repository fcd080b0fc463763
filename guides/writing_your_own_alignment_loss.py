"""
Title: Writing your own alignment loss
Author: keras-mta team
Date created: 2026/11/28
Last modified: 2026/11/28
Description: Subclass `keras_mta.layers.AlignmentLoss`, add it to a `DistillationModel`, check it under every backend.
Accelerator: None
"""

"""
## Introduction

MTA's two terms, DSA (structure among semantic units) and HRA (projected
hidden states), are computed at the layer pairs of an `AlignmentPlan`. To
try another term at the same places, subclass
`keras_mta.layers.AlignmentLoss`. The model calls your layer on every batch
with

- `student_hidden`, `teacher_hidden`: lists of the hidden states of the
  plan's pairs, low to high, float32 (the teacher's carry no gradient);
- `word_units`, `phrase_units`: int32 `(batch, units, 2)` token ranges
  `[start, end)` padded with `[0, 0]`;
- `padding_mask`: float32 `(batch, seq_len)`;

and adds `loss_weight` times the scalar you return to the distillation
term, `kd_ratio * (KD + mta_weight * L_MTA + sum_i loss_weight_i * L_i)`.
The value is reported as a metric under the layer's `name`.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import numpy as np
from keras import ops

import keras_mta
import keras_mta.analysis
from keras_mta.data import train_sentencepiece_tokenizer
from keras_mta.data import write_toy_dataset

SMALL = os.environ.get("KERAS_MTA_GUIDE_SMALL") == "1"
OUTPUT = os.environ.get("KERAS_MTA_GUIDE_OUTPUT", "guide_outputs")
OUTPUT = os.path.join(OUTPUT, "writing_your_own_alignment_loss")
NUM_TRAIN = 48 if SMALL else 600
EPOCHS = 2 if SMALL else 4
keras.utils.set_random_seed(0)

"""
## The loss

As an example, a **unit centroid** loss: at each pair, the mean of the
student's states over each unit, projected to the teacher's width by a
learned `Dense`, should point the same way as the teacher's mean over the
same unit. Word units are used at the lowest `word_pairs` pairs and phrase
units above, as in MTA.

Three things make a layer a good citizen of a `DistillationModel`:

- sub-layers are created in `__init__` with `dtype=self.dtype_policy` (the
  loss computes in float32 under any policy) and built in `build()`: the
  model builds every alignment loss when it is constructed, so that the
  optimizer sees their weights before the first step;
- every division is guarded (empty units, padding);
- `get_config()` returns the constructor arguments and the class is
  registered, so that a saved model can be reloaded.
"""


@keras.saving.register_keras_serializable(package="my_project")
class UnitCentroidLoss(keras_mta.layers.AlignmentLoss):
    """`1 - cos(P mean_u(h^S), mean_u(h^T))` averaged over units and pairs.

    Args:
        teacher_dims: list of the teacher's hidden size at each pair.
        word_pairs: how many of the lowest pairs use word units.
        **kwargs: `AlignmentLoss` arguments (`loss_weight`, `name`, ...).
    """

    def __init__(self, teacher_dims, word_pairs=1, **kwargs):
        super().__init__(**kwargs)
        self.teacher_dims = [int(d) for d in teacher_dims]
        self.word_pairs = int(word_pairs)
        self.projectors = [
            keras.layers.Dense(d, dtype=self.dtype_policy, name=f"proj_{k}")
            for k, d in enumerate(self.teacher_dims)
        ]

    def build(self, student_hidden_shape, teacher_hidden_shape):
        for projector, shape in zip(self.projectors, student_hidden_shape):
            projector.build(shape)

    def call(
        self,
        student_hidden,
        teacher_hidden,
        word_units,
        phrase_units,
        padding_mask,
    ):
        total = 0.0
        for k, (student, teacher) in enumerate(
            zip(student_hidden, teacher_hidden)
        ):
            units = word_units if k < self.word_pairs else phrase_units
            # (batch, units, seq_len) membership of tokens in units.
            positions = ops.arange(ops.shape(student)[1])[None, None, :]
            member = ops.logical_and(
                positions >= units[..., :1], positions < units[..., 1:]
            )
            member = ops.cast(member, "float32") * padding_mask[:, None, :]
            count = ops.sum(member, axis=-1)
            s = ops.einsum("but,btd->bud", member, self.projectors[k](student))
            t = ops.einsum("but,btd->bud", member, teacher)
            # Padding units are all-zero vectors. `ops.normalize` has a NaN
            # gradient at zero on every backend (even where the loss masks
            # the unit out, 0 * NaN is NaN), so normalize with a floor on the
            # squared norm: its gradient at zero is 0.
            s = s * ops.rsqrt(
                ops.maximum(ops.sum(s * s, axis=-1, keepdims=True), 1e-12)
            )
            t = t * ops.rsqrt(
                ops.maximum(ops.sum(t * t, axis=-1, keepdims=True), 1e-12)
            )
            distance = 1.0 - ops.sum(s * t, axis=-1)
            real = ops.cast(count > 0, "float32")
            total += ops.sum(distance * real) / ops.maximum(ops.sum(real), 1.0)
        return total / len(student_hidden)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"teacher_dims": self.teacher_dims, "word_pairs": self.word_pairs}
        )
        return config


"""
## Check it alone

Call the layer on NumPy arrays first. Identical states give a loss near
`1 - cos(P h, h)` (the projector is random), states without units give 0
and no NaN.
"""

rng = np.random.default_rng(0)
student_states = [rng.normal(size=(2, 8, 16)).astype("float32")] * 2
teacher_states = [rng.normal(size=(2, 8, 32)).astype("float32")] * 2
units = np.array([[[0, 3], [3, 8]], [[0, 2], [0, 0]]], dtype="int32")
mask = np.ones((2, 8), dtype="float32")
loss = UnitCentroidLoss(teacher_dims=[32, 32], name="unit_centroid")
value = loss(student_states, teacher_states, units, units, mask)
print("loss on random states:", float(ops.convert_to_numpy(value)))
empty = np.zeros_like(units)
value = loss(student_states, teacher_states, empty, empty, mask)
print("loss without units:", float(ops.convert_to_numpy(value)))
assert float(ops.convert_to_numpy(value)) == 0.0

"""
## Add it to a model

A tiny teacher and student on the toy instruction data (see *Getting
started* for each step). The teacher is left untrained here to keep the
guide short; in practice fine-tune it first.
"""

train_path, _ = write_toy_dataset(
    os.path.join(OUTPUT, "data"), num_train=NUM_TRAIN, num_valid=8
)
train, _ = keras_mta.data.load_examples(train_path)
tokenizer = train_sentencepiece_tokenizer(
    [e.text for e in train], vocabulary_size=160
)


def llama(num_layers, hidden_dim):
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=num_layers,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
    )
    preprocessor = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=128
    )
    return keras_hub.models.LlamaCausalLM(backbone, preprocessor)


teacher, student = llama(4, 64), llama(2, 32)
preprocessor = keras_mta.DistillationPreprocessor(
    student.preprocessor,
    max_word_units=48,
    max_phrase_units=24,
    chunker=keras_mta.PhraseChunker(),
)
train_ds = preprocessor.prepare_dataset(train, batch_size=16, shuffle=True)

plan = keras_mta.AlignmentPlan.default(4, 2, num_pairs=2)
unit_centroid = UnitCentroidLoss(
    teacher_dims=[64, 64],
    word_pairs=plan.word_pairs,
    loss_weight=0.5,
    name="unit_centroid",
)
model = keras_mta.DistillationModel(
    teacher, student, plan=plan, alignment_losses=[unit_centroid]
)
print([w.path for w in unit_centroid.weights])
model.compile(optimizer=keras.optimizers.AdamW(3e-3))
history = model.fit(train_ds, epochs=EPOCHS)
keras_mta.analysis.plot_training_curves(
    {"MTA + unit centroid": history.history},
    os.path.join(OUTPUT, "training_curves.png"),
    metrics=["loss", "kd", "dsa", "hra", "unit_centroid"],
)

"""
The progress bar and the history carry `unit_centroid` next to `ce`, `kd`,
`dsa` and `hra`:

![training curves](guide_outputs/writing_your_own_alignment_loss/training_curves.png)

## Your loss is a term in the list

The objective of a `DistillationModel` is a list of loss terms, each with
its weight and metric names (as `keras.distillation.Distiller` takes
`distillation_losses`). The short constructor above built it from
`kd_ratio`, `mta_weight` and `alignment_losses`; your layer became an
`AlignmentTerm` weighted by `kd_ratio * loss_weight`:
"""

for term in model.terms:
    print(f"{term.name:>14}  weight {term.weight:.3f}  {term.metric_names}")

"""
Pass the list yourself to choose exactly what trains: an ablation is which
terms you pass. Here the custom term alone (no CE, KD or MTA), to check
that the gradient reaches the student.

## Check that the gradient reaches the student

Train one batch with your term alone: the student's weights must move,
the teacher's must not. This check uses only Keras, so it runs as is
under jax, torch and tensorflow.
"""

only_custom = keras_mta.DistillationModel(
    llama(4, 64),
    llama(2, 32),
    plan=plan,
    terms=[
        keras_mta.models.terms.AlignmentTerm(
            UnitCentroidLoss([64, 64], name="unit_centroid"), weight=1.0
        ),
    ],
)
only_custom.compile(optimizer=keras.optimizers.SGD(1.0))
before = [w.numpy() for w in (only_custom.student.weights)]
teacher_before = [w.numpy() for w in only_custom.teacher.weights]
x, y, sample_weight = next(train_ds.as_numpy_iterator())
logs = only_custom.train_on_batch(x, y, sample_weight, return_dict=True)
moved = [
    not np.array_equal(b, w.numpy())
    for b, w in zip(before, only_custom.student.weights)
]
print(f"loss {logs['loss']:.4f} = unit_centroid {logs['unit_centroid']:.4f}")
print(f"{sum(moved)} of {len(moved)} student weights moved")
assert any(moved)
assert all(
    np.array_equal(b, w.numpy())
    for b, w in zip(teacher_before, only_custom.teacher.weights)
)

"""
## Save and reload

The layer is part of the model's config, so a whole `DistillationModel`
saves to a `.keras` file and reloads (its class must be registered, as
above):

```python
model.save("distillation.keras")
restored = keras.models.load_model("distillation.keras")
```

A round trip of the layer's config alone:
"""

config = keras.saving.serialize_keras_object(unit_centroid)
clone = keras.saving.deserialize_keras_object(config)
print(type(clone).__name__, clone.name, clone.loss_weight, clone.word_pairs)

"""
## Test it on all three backends

Keras fixes the backend per process, so run your tests once per backend.
A test file for the loss, in your project's `tests/`:

```python
import numpy as np
from my_project.losses import UnitCentroidLoss


def test_no_units_gives_zero():
    loss = UnitCentroidLoss(teacher_dims=[32])
    s = [np.random.normal(size=(2, 8, 16)).astype("float32")]
    t = [np.random.normal(size=(2, 8, 32)).astype("float32")]
    units = np.zeros((2, 3, 2), "int32")
    value = loss(s, t, units, units, np.ones((2, 8), "float32"))
    assert float(np.asarray(value)) == 0.0
```

```bash
for backend in jax torch tensorflow; do
    KERAS_BACKEND=$backend pytest tests/test_unit_centroid_loss.py
done
```

To compare values across backends, seed the layer's weights with NumPy
(`weight.assign(...)`) rather than relying on each backend's initializers,
and check gradients with your backend's own autodiff (keras-mta's
`tests/backend_utils.py` shows one way for jax, torch and tensorflow).

To add a loss to keras-mta itself rather than to your project, see
CONTRIBUTING.md, *Adding a loss*.
"""
