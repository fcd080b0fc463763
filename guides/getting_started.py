"""
Title: Getting started with keras-mta
Author: keras-mta team
Date created: 2026/11/28
Last modified: 2026/12/01
Description: Distill a small causal LM from a larger one with `model.fit`.
Accelerator: None
"""

"""
## Introduction

keras-mta distills a large language model (the **teacher**) into a smaller
one (the **student**) with *Multi-Granular Trajectory Alignment* (MTA):
besides the usual loss on the logits, the student's hidden states are
aligned with the teacher's at a few mapped layer pairs, on **word** units
low in the network and **phrase** units higher up.

This guide runs the whole loop on a CPU. Under jax on 2 quiet cores it
took 3 min 48 s (the guide's earlier version, with batches of 16 and
longer training, took 12 min on the same machine), with the same figures
every run:

1. make a small English instruction dataset and a tokenizer for it;
2. build a tiny keras-hub teacher and student;
3. turn prompt + response examples into the inputs of MTA with
   `keras_mta.DistillationPreprocessor`;
4. fine-tune the teacher, then `compile`, `fit` and `evaluate` a
   `keras_mta.DistillationModel`, each until its validation loss stops
   improving or for a few epochs at most;
5. generate responses with the student, score them with ROUGE-L and save
   the student as a keras-hub preset.

With real models nothing changes but the two `from_preset` lines (see the
guide *Bring your own models*).

## Setup

The guide runs under any backend; set `KERAS_BACKEND` before importing
Keras. `KERAS_MTA_GUIDE_SMALL=1` shrinks the sizes (the test suite runs
every guide that way) and `KERAS_MTA_GUIDE_OUTPUT` picks the folder where
files are written.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import tensorflow as tf

import keras_mta
import keras_mta.analysis
from keras_mta.data import train_sentencepiece_tokenizer
from keras_mta.data import write_toy_dataset

SMALL = os.environ.get("KERAS_MTA_GUIDE_SMALL") == "1"
OUTPUT = os.environ.get("KERAS_MTA_GUIDE_OUTPUT", "guide_outputs")
OUTPUT = os.path.join(OUTPUT, "getting_started")
NUM_TRAIN = 64 if SMALL else 1200
NUM_VALID = 8 if SMALL else 100
# Caps on the epochs: each model trains until its validation loss stops
# improving (early stopping), or for this many epochs at most.
TEACHER_EPOCHS = 1 if SMALL else 5
EPOCHS = 2 if SMALL else 4
BATCH_SIZE = 4
SEEDS = [10] if SMALL else [10, 20, 30, 40, 50]
keras.utils.set_random_seed(42)

"""
## Data

`keras_mta.data.toy_world.write_toy_dataset` writes a small instruction
dataset made by the project itself (facts about animals, asked and
answered in full sentences), in the Dolly JSONL schema. `load_examples`
reads any such file and formats each prompt with the usual instruction
template.
"""

train_path, valid_path = write_toy_dataset(
    os.path.join(OUTPUT, "data"), num_train=NUM_TRAIN, num_valid=NUM_VALID
)
train, _ = keras_mta.data.load_examples(train_path)
valid, _ = keras_mta.data.load_examples(valid_path)
print(train[0].prompt + train[0].response)

"""
## Teacher and student

Both models share one tokenizer: a small SentencePiece tokenizer trained
on the data. With BPE and 640 pieces nearly every word of the toy world is
one token, so the models learn facts rather than spelling (SentencePiece's
default unigram model stops at about 300 pieces on this text and spells
the rarer words piece by piece). The teacher is a 4-block Llama of width
128, the student a 2-block Llama of width 64.
"""

tokenizer = train_sentencepiece_tokenizer(
    [example.text for example in train],
    vocabulary_size=640,
    model_type="bpe",
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
        tokenizer=tokenizer, sequence_length=96
    )
    return keras_hub.models.LlamaCausalLM(backbone, preprocessor)


teacher = llama(num_layers=4, hidden_dim=128, heads=4)
student = llama(num_layers=2, hidden_dim=64, heads=2)
"""
## Inputs of MTA

`DistillationPreprocessor` wraps the student's `CausalLMPreprocessor`. For
every example it finds word and phrase spans with spaCy
(`keras_mta.PhraseChunker`), maps them onto token ranges and returns
`(x, y, sample_weight)`: token ids, padding mask, word and phrase units,
next-token targets, and weights that train on the response only.

It counts what it cannot keep and says so in a `TruncationWarning`: here
nothing is cut and no unit is over `max_word_units` or `max_phrase_units`
(set above the data's largest counts), but about one word in eight covers
no token of its own (it shares a BPE piece with its neighbour), and MTA
leaves such words out.
"""

preprocessor = keras_mta.DistillationPreprocessor(
    student.preprocessor,
    max_word_units=64,
    max_phrase_units=40,
    chunker=keras_mta.PhraseChunker(),
)
train_ds = preprocessor.prepare_dataset(
    train, batch_size=BATCH_SIZE, shuffle=True
)
valid_ds = preprocessor.prepare_dataset(valid, batch_size=BATCH_SIZE)

"""
## Fine-tune the teacher

A student learns only what its teacher knows, so the teacher is trained
first, with keras-hub's own `fit`: it takes raw strings and trains on
every token, prompts included (on this data that teaches it far more per
epoch than the responses alone). A `tf.data` pipeline shuffles the texts
again each epoch; Keras's own `shuffle` does not apply to a
`tf.data.Dataset`, hence `shuffle=False`.

Each model trains until its validation loss stops improving, or for
`TEACHER_EPOCHS` / `EPOCHS` at most: `keras.callbacks.EarlyStopping` ends
the training when the validation loss has not improved for 2 epochs and
puts back the weights of the best epoch.

Batches are small (4 examples). On a CPU a step of such small models
costs about in proportion to its examples, so smaller batches give more
updates for the same time: the teacher reached a validation loss of 0.12
in 4 epochs with batches of 4 and in 10 epochs with batches of 16, each
epoch taking about as long.
"""


def texts(examples):
    return tf.data.Dataset.from_tensor_slices(
        [example.text for example in examples]
    )


teacher.compile(optimizer=keras.optimizers.AdamW(2e-3))
teacher.fit(
    texts(train).shuffle(len(train), seed=42).batch(BATCH_SIZE),
    validation_data=texts(valid).batch(BATCH_SIZE),
    epochs=TEACHER_EPOCHS,
    shuffle=False,
    callbacks=[
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=2, restore_best_weights=True
        )
    ],
)

"""
The same validation batches as the student's measure the teacher on the
responses alone (its `val_loss` above also counts the prompts' tokens): a
`DistillationModel` without a teacher is plain supervised fine-tuning, and
its `ce` is the cross-entropy on the response tokens.
"""

teacher_alone = keras_mta.DistillationModel(None, teacher)
teacher_alone.compile(optimizer="adam")
teacher_loss = teacher_alone.evaluate(valid_ds, return_dict=True)["ce"]

"""
## Distill

The `AlignmentPlan` maps teacher layers to student layers (index `L` is the
output after the final norm, 0 the embeddings). Here teacher layers 2 and 4
align with student layers 1 and 2; the lower pair aligns word units, the
upper one phrase units. The loss is

`(1 - kd_ratio) * CE + kd_ratio * (KD + mta_weight * L_MTA)`,

and `fit` reports every term: `ce`, `kd` (forward KL), `dsa` (structure of
the units) and `hra` (the projected hidden states).

The student, too, stops early, on `val_ce`: its own cross-entropy on the
validation responses, since the total `val_loss` also holds the terms
that measure how close the student is to the teacher. Keras cannot tell
which way a metric it does not know should go, hence `mode="min"`.

`fit` stops at the first NaN or infinite loss, term or gradient with a
`keras_mta.NonFiniteError` that names the terms and the step, and the
model keeps the weights of the last good step (the bad one is not
applied); `DistillationModel(..., nonfinite="ignore")` trains on instead.
"""

plan = keras_mta.AlignmentPlan.default(4, 2, num_pairs=2)
print(plan)
model = keras_mta.DistillationModel(
    teacher, student, plan=plan, kd_ratio=0.5, mta_weight=2.0
)
model.compile(optimizer=keras.optimizers.AdamW(2e-3))
history = model.fit(
    train_ds,
    validation_data=valid_ds,
    epochs=EPOCHS,
    callbacks=[
        keras.callbacks.EarlyStopping(
            monitor="val_ce", mode="min", patience=2, restore_best_weights=True
        )
    ],
)
student_loss = model.evaluate(valid_ds, return_dict=True)["ce"]

"""
The training curves, saved as an image:
"""

keras_mta.analysis.plot_training_curves(
    {"MTA student": history.history},
    os.path.join(OUTPUT, "training_curves.png"),
    metrics=["loss", "ce", "kd", "dsa", "hra"],
)

"""
![training curves](guide_outputs/getting_started/training_curves.png)

## Generate, score, save

The student is a plain keras-hub `CausalLM`: `compile(sampler="greedy")`
and `generate` work as usual. Its greedy answers to the validation
prompts, scored with ROUGE-L (the longest common subsequence with the
reference answer, 0 to 100), next to the teacher's:
"""

prompts = [example.prompt for example in valid]
references = [example.references for example in valid]
for name, causal_lm, loss in (
    ("teacher", teacher, teacher_loss),
    ("student", student, student_loss),
):
    causal_lm.compile(sampler="greedy")
    answers = causal_lm.generate(prompts, max_length=128, strip_prompt=True)
    rouge = keras_mta.evaluation.mean_rouge_l(answers, references)
    print(f"{name}: validation loss {loss:.3f}, greedy ROUGE-L {rouge:.2f}")
for prompt, answer in list(zip(prompts, answers))[:4]:
    instruction = prompt.split("### Instruction:")[-1].split("###")[0]
    print(instruction.strip(), "->", answer)

"""
Measured under jax (two runs, the same figures in both): both caps bind
(the teacher trained 5 epochs, the student 4, each keeping its last and
best epoch; more epochs would still help a little, at about 20 s each).
On the validation responses the student's loss is 0.153 against the
teacher's 0.202, its greedy ROUGE-L 79.98 against 71.24: the student
learns from the data's own targets too (`kd_ratio=0.5`), and here it ends
above its short-trained teacher. Its first answers:

```
Tell me where the busy bee lives. -> The busy bee lives in the flower
garden.
Describe the sleepy koala. -> The sleepy koala is a small grey animal. It
lives in the eucalyptus trees and eats eucalyptus leaves.
Write a short description of the sleepy koala. -> The sleepy koala is a
small grey animal. It lives in the eucalyptus trees and eats eucalyptus
leaves.
What does the wild horse eat? -> The wild horse eats dry hay.
```

The questions come from the validation split, but the toy world is small
and the same facts are in the training data: the answers show that the
student learned them, not that it generalises.

`evaluate_rouge` runs the field's ROUGE-L protocol: one sampled response
per prompt and seed, the mean and spread over seeds (the paper uses seeds
10, 20, 30, 40, 50), and keeps the responses of the first seed. Measured:
70.20 +- 1.80 on the 100 validation prompts; sampled answers score below
greedy ones.
"""

result = keras_mta.evaluation.evaluate_rouge(
    student, valid, dataset="valid", seeds=SEEDS, max_new_tokens=40
)
print(result)
student.save_to_preset(os.path.join(OUTPUT, "student_preset"))

"""
The student is an ordinary keras-hub model again: reload it with
`keras_hub.models.CausalLM.from_preset("guide_outputs/getting_started/
student_preset")`.

## Next steps

- *Bring your own models*: keras-hub presets, layer pairs, hidden sizes.
- *Switching backends*: the same script under jax, torch or tensorflow.
- *Reproducing the paper's runs*: the recipes and the `keras-mta` command.
- *Writing your own alignment loss*: extend MTA with your own term.
"""
