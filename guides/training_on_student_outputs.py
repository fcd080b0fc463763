"""
Title: Training on the student's own outputs
Author: keras-mta team
Date created: 2026/11/30
Last modified: 2026/11/30
Description: DistiLLM's adaptive off-policy schedule and on-policy distillation in `model.fit`: the schedule, replay, the live teacher, the metrics, resuming, and the recipe switches.
Accelerator: None
"""

"""
## Introduction

A student distilled on the data's own responses only learns what the
teacher thinks of text the student never writes. At generation time it
conditions on its *own* earlier tokens, and its mistakes compound. Two
published methods let the student train on its own samples, scored by the
teacher:

- **DistiLLM's adaptive off-policy schedule** (Ko et al., ICML 2024), the
  base the MTA paper's own scripts run on: a threshold, raised each time
  the validation loss rises, decides at every step whether the batch is
  the data's (ground truth), freshly sampled by the student, or replayed
  from a buffer of earlier samples.
- **On-policy distillation** (GKD, Agarwal et al., ICLR 2024): a fixed
  fraction of the batches is freshly sampled at every step.

In keras-mta both live in `keras_mta.generation` and run inside a plain
`model.fit`, under jax, torch and tensorflow. This guide builds the
pieces by hand on a tiny teacher and student, on a CPU in a few minutes,
and ends with the recipe switches that do the same in `keras-mta
distill`.

## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub

import keras_mta
import keras_mta.analysis
from keras_mta.data import train_sentencepiece_tokenizer
from keras_mta.data import write_toy_dataset
from keras_mta.generation import AdaptiveGenerationCallback
from keras_mta.generation import GenerationBackupAndRestore
from keras_mta.generation import GenerationMetrics
from keras_mta.generation import GenerationSchedule
from keras_mta.generation import StudentGeneratedDataset
from keras_mta.generation import StudentResponses
from keras_mta.generation import require_live_teacher

SMALL = os.environ.get("KERAS_MTA_GUIDE_SMALL") == "1"
OUTPUT = os.environ.get("KERAS_MTA_GUIDE_OUTPUT", "guide_outputs")
OUTPUT = os.path.join(OUTPUT, "training_on_student_outputs")
NUM_TRAIN = 48 if SMALL else 320
NUM_VALID = 8 if SMALL else 48
EPOCHS = 2 if SMALL else 4
STEPS_PER_EPOCH = 2 if SMALL else 8
SEQUENCE_LENGTH = 128
BATCH = 8
keras.utils.set_random_seed(42)

"""
## The schedule, on its own

`GenerationSchedule` is pure Python: it only decides. At step `t` of
`total_steps`, with `r ~ U(0, 1)` drawn from a generator seeded by
`(seed, t)` and the **replay ratio** `s`:

- `"decreasing"` (the reference's): `s = threshold * (1 - t / total_steps)`,
- `"constant"`: `s = threshold * 0.5`,
- `"increasing"`: `s = threshold * t / total_steps`,

the batch is **generated** if `r < s`, or if `r < threshold` while the
replay buffer holds fewer than `capacity` batches; **replayed** if
`r < threshold` otherwise; **ground truth** otherwise. The threshold
starts at `init_threshold` (0.0 in the reference) and rises by 0.1
(capped at 1.0) whenever a validation loss is at least `loss_eps` (0.1)
above the last recorded one.

Over many steps at a threshold of 0.6, with a full buffer, the three
replay ratios split the batches like this:
"""

for ratio in ("decreasing", "constant", "increasing"):
    schedule = GenerationSchedule(
        total_steps=2000, init_threshold=0.6, replay_ratio=ratio, seed=0
    )
    kinds = [schedule.decide(t, buffer_size=1000) for t in range(2000)]
    shares = {k: kinds.count(k) / len(kinds) for k in set(kinds)}
    print(ratio, {k: round(v, 2) for k, v in sorted(shares.items())})

"""
The threshold moves only on a rise of the validation loss:
"""

schedule = GenerationSchedule(total_steps=100, seed=0)
for loss in (2.0, 1.9, 2.05, 2.15, 2.1):
    rose = schedule.record_validation_loss(loss)
    print(
        f"validation loss {loss}: rose={rose}, threshold {schedule.threshold}"
    )

"""
On-policy mode needs no buffer and no validation loss:
`GenerationSchedule(mode="on_policy", on_policy_fraction=0.5)` generates
each batch with probability 0.5 (GKD's lambda).

## Data, teacher and student

As in *Getting started*: the project's toy instruction data, a
SentencePiece tokenizer trained on it, a 4-block Llama teacher and a
2-block student. The teacher is briefly fine-tuned so that its opinion
of the student's text means something.
"""

train_path, valid_path = write_toy_dataset(
    os.path.join(OUTPUT, "data"), num_train=NUM_TRAIN, num_valid=NUM_VALID
)
train, _ = keras_mta.data.load_examples(train_path)
valid, _ = keras_mta.data.load_examples(valid_path)
tokenizer = train_sentencepiece_tokenizer(
    [example.text for example in train], vocabulary_size=200
)


def llama(num_layers, hidden_dim, heads):
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=num_layers,
        num_query_heads=heads,
        num_key_value_heads=heads // 2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
    )
    preprocessor = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    return keras_hub.models.LlamaCausalLM(backbone, preprocessor)


teacher = llama(num_layers=4, hidden_dim=128, heads=4)
student = llama(num_layers=2, hidden_dim=64, heads=2)
teacher.compile(optimizer=keras.optimizers.AdamW(3e-3))
teacher.fit([e.text for e in train], batch_size=16, epochs=1 if SMALL else 4)

"""
`StudentGeneratedDataset` takes the training data as NumPy arrays (one
row per example) and the prompt of each row: it cuts batches from them
itself, step by step.
"""

preprocessor = keras_mta.DistillationPreprocessor(
    student.preprocessor,
    max_word_units=24,
    max_phrase_units=12,
    chunker=keras_mta.PhraseChunker(),
)
arrays = next(
    preprocessor.prepare_dataset(
        train, batch_size=len(train)
    ).as_numpy_iterator()
)
valid_ds = preprocessor.prepare_dataset(valid, batch_size=BATCH)
prompts = [example.prompt for example in train]

"""
## The responder: the student's samples, with their units

`StudentResponses` asks the student `CausalLM` for one response per
prompt with keras-hub's `generate` and a keras-hub sampler (the
reference's settings are the defaults: temperature 1.0, top-k off,
top-p 1.0, one beam), seeded per draw, then finds the word and phrase
units of the new text with spaCy and packs a batch with exactly the
keys, shapes and dtypes of the ground-truth batches.

spaCy is the slow part (about 200 ms per batch of 16 on one core). With
`n_process=2` or more, `responder.submit(prompts)` samples on the calling
thread and chunks in worker processes while the training step runs
(`StudentGeneratedDataset(..., overlap=True)` uses it: the student then
samples with the weights of one step earlier). Here one process does it
all.
"""

responder = StudentResponses(student, preprocessor, seed=0, n_process=1)
x, y, sample_weight = responder.generate_batch(prompts[:BATCH])
print({key: value.shape for key, value in x.items()})
text = tokenizer.detokenize(x["token_ids"][0][x["padding_mask"][0]])
print("a prompt and the student's response:", str(text)[-200:])

"""
## The live teacher

A teacher cache (`keras-mta teacher-cache`, `keras_mta.CachedTeacher`)
holds the teacher's signals for the data's own responses only, so it
cannot score the student's new text: generation needs a live teacher.
`GenerationMetrics` and `AdaptiveGenerationCallback` check it when `fit`
starts (`require_live_teacher`), and a recipe that asks for both is
refused before anything runs.
"""

try:
    require_live_teacher(keras_mta.DistillationModel(None, student))
except ValueError as error:
    print("refused:", str(error)[:110], "...")

"""
## Adaptive off-policy training

The dataset, its metrics callback (the fractions of generated, replayed
and ground-truth batches in `fit`'s logs and progress bar, plus the
threshold) and the adaptive callback (the student's validation loss,
measured before training and after every epoch, or every `eval_interval`
steps). The threshold starts at 0.3 here and the buffer holds 2 batches,
so that a short run shows all three kinds of batches.
"""

total_steps = EPOCHS * STEPS_PER_EPOCH
plan = keras_mta.AlignmentPlan.default(4, 2, num_pairs=2)


def distillation_model():
    model = keras_mta.DistillationModel(
        teacher, student, plan=plan, kd_ratio=0.5, mta_weight=2.0
    )
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    return model


start = student.get_weights()
adaptive_dataset = StudentGeneratedDataset(
    arrays,
    prompts,
    BATCH,
    responder,
    GenerationSchedule(
        total_steps=total_steps, init_threshold=0.3, capacity=2, seed=1
    ),
    seed=1,
)
model = distillation_model()
history = model.fit(
    adaptive_dataset,
    epochs=EPOCHS,
    steps_per_epoch=STEPS_PER_EPOCH,
    callbacks=[
        GenerationMetrics(adaptive_dataset),
        AdaptiveGenerationCallback(adaptive_dataset, valid_ds, verbose=True),
    ],
    verbose=2,
)
adaptive = history.history
for name in (
    "generated_fraction",
    "replayed_fraction",
    "ground_truth_fraction",
):
    print(name, [round(v, 2) for v in adaptive[name]])
print("generation threshold", adaptive["generation_threshold"])
print("replay buffer:", adaptive_dataset.buffer)
print("responder:", responder.statistics)

"""
The generated batches trained every term: `kd`, `dsa` and `hra` are
finite on them, with the units spaCy found on the student's own text.

## On-policy training

The same model from the same start, with half of the batches freshly
sampled at every step:
"""

student.set_weights(start)
on_policy_dataset = StudentGeneratedDataset(
    arrays,
    prompts,
    BATCH,
    responder,  # its compiled sampling is reused
    GenerationSchedule(mode="on_policy", on_policy_fraction=0.5, seed=1),
    seed=1,
)
model = distillation_model()
on_policy = model.fit(
    on_policy_dataset,
    epochs=EPOCHS,
    steps_per_epoch=STEPS_PER_EPOCH,
    callbacks=[GenerationMetrics(on_policy_dataset)],
    verbose=2,
).history
print(
    "generated_fraction", [round(v, 2) for v in on_policy["generated_fraction"]]
)

keras_mta.analysis.plot_training_curves(
    {"adaptive": adaptive, "on-policy": on_policy},
    os.path.join(OUTPUT, "fractions.png"),
    metrics=["loss", "kd", "generated_fraction", "replayed_fraction"],
)

"""
![fractions](guide_outputs/training_on_student_outputs/fractions.png)

## Reproducible and resumable

Every draw of step `t` (the decision, the replayed batch, the data order
of a pass, the sampler's seed) is seeded by `(seed, t)`, so a run
repeats. `GenerationBackupAndRestore(dataset, backup_dir)` is Keras'
`BackupAndRestore` that also saves the dataset's state after each epoch
(threshold, reference loss, replay buffer, responder draws): after an
interruption, the same `fit` call resumes at the last epoch with the
same draws. Put it first among the callbacks.
"""

backup = GenerationBackupAndRestore(
    on_policy_dataset, os.path.join(OUTPUT, "backup")
)
print(backup.state_path(3))

"""
## From a recipe

`keras-mta distill` does all of the above from a recipe. Its table
`[training.student_generation]` holds the settings (`mode`,
`init_threshold`, `loss_eps`, `capacity`, `replay_ratio`,
`on_policy_fraction`, the sampler's `temperature`, `top_k`, `top_p`,
`eval_interval` and `n_process`); `mode` switches every variant with a
teacher, and a `+adaptive` or `+on_policy` suffix in
`distillation.compare` switches one variant, so that one run compares
them from the same start:

```toml
[distillation]
compare = ["sft", "kd", "kd+adaptive", "kd+on_policy", "mta", "mta+adaptive"]
```

The shipped `tiny-cpu-student-generation` recipe does that on the toy
data in minutes on a CPU, and the three paper recipes set `mode =
"adaptive"` with the reference's settings. The log says how many batches
of each kind every student trained on, a generating variant backs up
into `output_dir/backup/` after every epoch (rerun the same command to
resume it), and `keras-mta plan` counts the sampling's key/value cache
and logits and the replay buffer's host memory.
"""

print(keras_mta.load_recipe("tiny-cpu-student-generation").distillation.compare)
