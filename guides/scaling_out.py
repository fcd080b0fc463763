"""
Title: Scaling out
Author: keras-mta team
Date created: 2026/11/28
Last modified: 2026/11/28
Description: Data parallelism and a model-parallel teacher with `keras.distribution` under JAX; several GPUs under torch; sizing batch and sequence.
Accelerator: GPU
"""

"""
## Introduction

A `DistillationModel` is a `keras.Model` whose step is Keras's own
`train_step`, so Keras's distribution API applies unchanged:

- **data parallelism** (`keras.distribution.DataParallel`): every device
  holds the teacher and the student and gets a slice of each batch;
- **model parallelism** (`keras.distribution.ModelParallel` with a
  `LayoutMap`): large kernels are sharded over a `"model"` axis of a
  device mesh; for distillation, the frozen teacher is the natural
  candidate, since it is usually several times larger than the student.

`keras.distribution` drives JAX. This guide runs on whatever devices JAX
sees: one CPU here (a 1-device mesh), GPUs or TPUs elsewhere. To try a
multi-device mesh on a CPU, start Python with
`XLA_FLAGS=--xla_force_host_platform_device_count=4`.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import numpy as np

import keras_mta

SMALL = os.environ.get("KERAS_MTA_GUIDE_SMALL") == "1"
BACKEND = keras.backend.backend()


def gpt2(num_layers, hidden_dim):
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=64,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=4 * hidden_dim,
        max_sequence_length=64,
    )
    return keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)


rng = np.random.default_rng(0)
BATCH, SEQ = 8, 32
ids = rng.integers(1, 64, (BATCH, SEQ)).astype("int32")
x = {
    "token_ids": ids,
    "padding_mask": np.ones((BATCH, SEQ), "int32"),
    "word_units": np.array([[[k, k + 1] for k in range(SEQ)]] * BATCH),
    "phrase_units": np.array([[[k, k + 4] for k in range(0, SEQ, 4)]] * BATCH),
}
y = np.roll(ids, -1, axis=1)

"""
## Data parallelism

Create the models, the `DistillationModel` and the optimizer inside the
distribution's scope; `fit` then splits each batch over the devices (the
global batch must divide by the number of devices).
"""

if BACKEND == "jax":
    devices = keras.distribution.list_devices()
    print("devices:", devices)
    data_parallel = keras.distribution.DataParallel(devices=devices)
    with data_parallel.scope():
        model = keras_mta.DistillationModel(
            gpt2(4, 64),
            gpt2(2, 32),
            plan=keras_mta.AlignmentPlan([2, 4], [1, 2]),
        )
        model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        model.fit(x, y, batch_size=BATCH, epochs=2)
else:
    print(f"keras.distribution drives JAX; under {BACKEND} see below.")

"""
## A model-parallel teacher

Variable paths decide the layout. Built inside
`keras.name_scope("teacher")` and `keras.name_scope("student")`, every
teacher variable path starts with `teacher/` and every student path with
`student/`, so a `LayoutMap` can shard the teacher's attention and
feed-forward kernels over the `"model"` axis and leave the student
replicated (it then trains data-parallel over the `"batch"` axis).
"""

if BACKEND == "jax":
    mesh = keras.distribution.DeviceMesh(
        shape=(1, len(devices)), axis_names=["batch", "model"], devices=devices
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["teacher/.*(query|key|value)/kernel"] = (None, "model", None)
    layout_map["teacher/.*attention_output/kernel"] = ("model", None, None)
    layout_map["teacher/.*feedforward_intermediate_dense/kernel"] = (
        None,
        "model",
    )
    layout_map["teacher/.*feedforward_output_dense/kernel"] = ("model", None)
    model_parallel = keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    )
    with model_parallel.scope():
        with keras.name_scope("teacher"):
            teacher = gpt2(4, 64)
        with keras.name_scope("student"):
            student = gpt2(2, 32)
        model = keras_mta.DistillationModel(
            teacher, student, plan=keras_mta.AlignmentPlan([2, 4], [1, 2])
        )
        model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        model.fit(x, y, batch_size=BATCH, epochs=2)
    kernel = teacher.backbone.transformer_layers[0]._self_attention_layer
    kernel = kernel._query_dense.kernel
    print(kernel.path, "sharded as", kernel.value.sharding)

"""
On 8 GPUs, `shape=(2, 4)` gives 2-way data parallelism and 4-way sharding
of the teacher. For keras-hub presets, Keras also offers
`keras_hub.models.XXXBackbone.get_layout_map(mesh)` with the layouts the
keras-hub authors chose; prefix its keys with `teacher/` to shard the
teacher only.

## Several GPUs under torch

`keras.distribution` does not drive the torch backend. With torch, run one
process per GPU and wrap the training loop in
`torch.nn.parallel.DistributedDataParallel`, as in Keras's guide
*Multi-GPU distributed training with PyTorch*: build the
`DistillationModel` in every process, shard the `tf.data` dataset with
`dataset.shard(world_size, rank)`, and launch with

```bash
torchrun --nproc_per_node=4 train.py
```

Since the teacher is frozen, only the student's and the projectors'
gradients are all-reduced.

## Sizing batch and sequence for a GPU

Memory per device, roughly:

- weights: teacher `P_T` and student `P_S` parameters at 2 bytes each in
  bfloat16 (4 in float32);
- optimizer: AdamW keeps 2 float32 slots per *student* parameter (the
  teacher has none): `8 * P_S` bytes, plus the float32 master weights;
- activations: kept for the student only (the teacher runs under
  `stop_gradient`, its activations are freed as it goes), about
  `batch * seq * hidden * layers * ~34` bytes in bfloat16 for a GPT-style
  block, plus the logits `batch * seq * vocab * 4` bytes for each model in
  float32 (the divergence is computed in float32).

The logits dominate for large vocabularies: GPT-2 (50,257 tokens) at batch
16 and 512 tokens needs 1.6 GB per model for them alone. Start from the
paper's settings (batch 16, sequence 512 for GPT-2 1.5B to 120M on one
80 GB GPU) and halve the batch while it does not fit, keeping the
effective batch with gradient accumulation
(`keras.optimizers.AdamW(..., gradient_accumulation_steps=k)`).
"""


def memory_gb(teacher_params, student_params, batch, seq, vocab):
    weights = 2 * (teacher_params + student_params)
    optimizer = 12 * student_params
    logits = 2 * batch * seq * vocab * 4
    return (weights + optimizer + logits) / 1e9


print(
    "GPT-2 1.5B -> 120M, batch 16 x 512, without the student's "
    f"activations: {memory_gb(1.56e9, 124e6, 16, 512, 50257):.1f} GB"
)
