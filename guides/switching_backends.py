"""
Title: Switching backends
Author: keras-mta team
Date created: 2026/11/28
Last modified: 2026/11/28
Description: One script under JAX, PyTorch and TensorFlow; what differs, and how to check the loss agrees.
Accelerator: None
"""

"""
## Introduction

keras-mta is written with `keras.ops` only, so the same script runs under
the JAX, PyTorch and TensorFlow backends of Keras 3. Pick the backend with
an environment variable, before Keras is imported:

```bash
KERAS_BACKEND=jax python guides/switching_backends.py
KERAS_BACKEND=torch python guides/switching_backends.py
KERAS_BACKEND=tensorflow python guides/switching_backends.py
```

What differs between them:

| | JAX | PyTorch | TensorFlow |
|---|---|---|---|
| `fit` step | compiled with XLA (`jit`) | eager by default | compiled with `tf.function` (XLA with `jit_compile=True`) |
| first step | slow (compilation, seconds) | fast | slow (tracing) |
| later steps, CPU | fastest (tiny models: about 20 ms) | about 3x slower | close to JAX |
| GPU | XLA, `keras.distribution` for several devices | CUDA; DDP for several GPUs | XLA / `tf.distribute` |
| mixed precision | `mixed_bfloat16` | `mixed_bfloat16` / `mixed_float16` | `mixed_bfloat16` |

Under any backend and any dtype policy, the divergences and alignment
losses compute in float32 (the models themselves run in the policy's
compute dtype). To train in bfloat16 on a GPU:

```python
keras.config.set_dtype_policy("mixed_bfloat16")
```

The input pipeline (`DistillationPreprocessor`, tokenizers) is always
`tf.data`, whatever the backend: Keras feeds its batches to the backend.

## Setup
"""

import json
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import numpy as np

import keras_mta
import keras_mta.analysis

SMALL = os.environ.get("KERAS_MTA_GUIDE_SMALL") == "1"
OUTPUT = os.environ.get("KERAS_MTA_GUIDE_OUTPUT", "guide_outputs")
OUTPUT = os.path.join(OUTPUT, "switching_backends")
os.makedirs(OUTPUT, exist_ok=True)
BACKEND = keras.backend.backend()
print("backend:", BACKEND)

"""
## The same numbers under every backend

To compare backends, nothing may depend on a backend's random number
generator: the weights and the batch come from NumPy with a fixed seed.
"""


def gpt2(num_layers, hidden_dim, seed):
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=64,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        dropout=0.0,
        max_sequence_length=32,
    )
    model = keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        noise = rng.normal(scale=0.3, size=weight.shape)
        if weight.path.endswith("gamma"):
            noise += 1.0
        weight.assign(noise.astype(weight.dtype))
    return model


teacher, student = gpt2(3, 32, seed=1), gpt2(2, 16, seed=2)
model = keras_mta.DistillationModel(
    teacher, student, plan=keras_mta.AlignmentPlan([2, 3], [1, 2])
)
rng = np.random.default_rng(3)
for weight in model.alignment.weights:  # the HRA projectors
    weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))

ids = rng.integers(1, 64, (4, 16)).astype("int32")
x = {
    "token_ids": ids,
    "padding_mask": np.ones((4, 16), "int32"),
    "word_units": np.array([[[k, k + 1] for k in range(16)]] * 4, "int32"),
    "phrase_units": np.array([[[k, k + 4] for k in range(0, 16, 4)]] * 4),
}
y = np.roll(ids, -1, axis=1)
sample_weight = np.ones((4, 16), "float32")
sample_weight[:, :4] = 0.0  # the "prompt"
sample_weight[:, -1] = 0.0

terms = model.compute_losses(x, y, sample_weight=sample_weight)
terms = {
    k: float(keras.ops.convert_to_numpy(v))
    for k, v in terms.items()
    if k in ("loss", "ce", "kd", "dsa", "hra")
}
print(BACKEND, terms)
with open(os.path.join(OUTPUT, f"loss_{BACKEND}.json"), "w") as f:
    json.dump(terms, f)

"""
Run the same file under the two other backends (in their own processes:
the backend is fixed per process) and compare. Float32 arithmetic is
ordered differently by each backend, so agreement is to about 1e-5
relative.
"""

if not SMALL:
    for other in {"jax", "torch", "tensorflow"} - {BACKEND}:
        env = dict(os.environ, KERAS_BACKEND=other, KERAS_MTA_GUIDE_SMALL="1")
        env["KERAS_MTA_GUIDE_OUTPUT"] = os.path.dirname(OUTPUT)
        subprocess.run([sys.executable, __file__], env=env, check=True)

for name in sorted(os.listdir(OUTPUT)):
    if name.startswith("loss_") and name.endswith(".json"):
        with open(os.path.join(OUTPUT, name)) as f:
            other = json.load(f)
        worst = max(
            abs(other[k] - terms[k]) / max(abs(terms[k]), 1e-12) for k in terms
        )
        print(
            f"{name[5:-5]:>10}: loss {other['loss']:.6f}, "
            f"largest relative difference to {BACKEND}: {worst:.1e}"
        )
        assert worst < 1e-4, (name, other, terms)

"""
## Training

Training is the same call everywhere; only the speed differs. A few epochs
on the batch above, with the curves saved as an image:
"""

model.compile(optimizer=keras.optimizers.Adam(3e-3))
history = model.fit(
    x, y, sample_weight=sample_weight, batch_size=4, epochs=8, verbose=2
)
keras_mta.analysis.plot_training_curves(
    {BACKEND: history.history},
    os.path.join(OUTPUT, "training_curves.png"),
    metrics=["loss", "ce", "kd", "dsa", "hra"],
)

"""
![training curves](guide_outputs/switching_backends/training_curves.png)

## When a backend misbehaves

- Run the test suite under all three backends (`bash scripts/test.sh`,
  or `KERAS_BACKEND=... pytest tests` once per backend).
- JAX and torch need every weight to exist before `fit`: build extra
  layers (e.g. your own alignment losses) at construction, which
  `DistillationModel` does for you.
- Under torch, every variable needs a distinct path;
  `DistillationModel` puts the teacher's under `teacher/`, the student's
  under `student/` and the projectors' under `alignment/`.
"""
