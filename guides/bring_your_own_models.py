"""
Title: Bring your own models
Author: keras-mta team
Date created: 2026/11/28
Last modified: 2026/11/28
Description: Teachers and students from keras-hub presets (GPT-2, OPT, Qwen, Llama, Gemma, Mistral), layer pairs and the word/phrase switch.
Accelerator: None
"""

"""
## Introduction

Any keras-hub decoder-only `CausalLM` can be a teacher or a student. This
guide shows how to pick a pair from keras-hub presets, how to choose the
layer pairs of an `AlignmentPlan` and the word/phrase switch, what the
layer indices mean, and what to do when the two models differ in hidden
size or vocabulary.

With network access, a pair is two lines:

```python
with keras.name_scope("teacher"):
    teacher = keras_hub.models.CausalLM.from_preset("gpt2_extra_large_en")
with keras.name_scope("student"):
    student = keras_hub.models.CausalLM.from_preset("gpt2_base_en")
```

(The name scopes put every variable under `teacher/` or `student/`, which
a `keras.distribution.LayoutMap` can match; see *Scaling out*.)

So that this guide runs anywhere, offline and in seconds, it builds each
model from its **architecture** instead: the real number of blocks, with
tiny widths (`keras_mta.models.tiny_architecture`). The plans, indices and
checks are the same as with the real weights.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np

import keras_mta

SMALL = os.environ.get("KERAS_MTA_GUIDE_SMALL") == "1"
keras.utils.set_random_seed(0)

"""
## Families

For each family, a teacher and a student preset of keras-hub and their
architectures (class and constructor arguments, as in a recipe's
`architecture` table). Mistral has no small sibling in keras-hub: its
student is a new, shallower model with Mistral's tokenizer, initialised
from the teacher (see below).
"""

FAMILIES = {
    "GPT-2": (
        "gpt2_extra_large_en",
        "gpt2_base_en",
        dict(
            {"class": "GPT2Backbone", "vocabulary_size": 50257},
            num_layers=48,
            num_heads=25,
            hidden_dim=1600,
            intermediate_dim=6400,
            max_sequence_length=1024,
        ),
        dict(
            {"class": "GPT2Backbone", "vocabulary_size": 50257},
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            intermediate_dim=3072,
            max_sequence_length=1024,
        ),
    ),
    "OPT": (
        "opt_6.7b_en",
        "opt_1.3b_en",
        dict(
            {"class": "OPTBackbone", "vocabulary_size": 50272},
            num_layers=32,
            num_heads=32,
            hidden_dim=4096,
            intermediate_dim=16384,
            max_sequence_length=2048,
        ),
        dict(
            {"class": "OPTBackbone", "vocabulary_size": 50272},
            num_layers=24,
            num_heads=32,
            hidden_dim=2048,
            intermediate_dim=8192,
            max_sequence_length=2048,
        ),
    ),
    "Qwen": (
        "qwen2.5_3b_en",
        "qwen2.5_0.5b_en",
        dict(
            {"class": "QwenBackbone", "vocabulary_size": 151936},
            num_layers=36,
            num_query_heads=16,
            num_key_value_heads=2,
            hidden_dim=2048,
            intermediate_dim=11008,
        ),
        dict(
            {"class": "QwenBackbone", "vocabulary_size": 151936},
            num_layers=24,
            num_query_heads=14,
            num_key_value_heads=2,
            hidden_dim=896,
            intermediate_dim=4864,
        ),
    ),
    "Llama": (
        "llama3.2_3b",
        "llama3.2_1b",
        dict(
            {"class": "Llama3Backbone", "vocabulary_size": 128256},
            num_layers=28,
            num_query_heads=24,
            num_key_value_heads=8,
            hidden_dim=3072,
            intermediate_dim=8192,
        ),
        dict(
            {"class": "Llama3Backbone", "vocabulary_size": 128256},
            num_layers=16,
            num_query_heads=32,
            num_key_value_heads=8,
            hidden_dim=2048,
            intermediate_dim=8192,
        ),
    ),
    "Gemma": (
        "gemma2_9b_en",
        "gemma2_2b_en",
        dict(
            {"class": "GemmaBackbone", "vocabulary_size": 256000},
            num_layers=42,
            num_query_heads=16,
            num_key_value_heads=8,
            hidden_dim=3584,
            intermediate_dim=28672,
            head_dim=256,
        ),
        dict(
            {"class": "GemmaBackbone", "vocabulary_size": 256000},
            num_layers=26,
            num_query_heads=8,
            num_key_value_heads=4,
            hidden_dim=2304,
            intermediate_dim=18432,
            head_dim=256,
        ),
    ),
    "Mistral": (
        "mistral_7b_en",
        None,  # no smaller Mistral preset: a new 8-block student
        dict(
            {"class": "MistralBackbone", "vocabulary_size": 32000},
            num_layers=32,
            num_query_heads=32,
            num_key_value_heads=8,
            hidden_dim=4096,
            intermediate_dim=14336,
        ),
        dict(
            {"class": "MistralBackbone", "vocabulary_size": 32000},
            num_layers=8,
            num_query_heads=16,
            num_key_value_heads=8,
            hidden_dim=2048,
            intermediate_dim=7168,
        ),
    ),
}

"""
## The index convention

Plans use the Hugging Face `output_hidden_states` convention, so that
mappings published for Hugging Face models carry over unchanged: for a
model with `L` blocks, index `0` is the embedding output, `i` (`1 <= i <
L`) the output of block `i`, and `L` the output after the final norm
(keras-hub: `backbone.output`). `keras_mta.models.hidden_state_tensor`
returns the symbolic tensor of an index; `hidden_states_model` a model that
returns the logits and the chosen hidden states in one pass.
"""

gpt2 = keras_mta.models.build_causal_lm(FAMILIES["GPT-2"][3], tiny=True)
num_layers = keras_mta.models.num_hidden_layers(gpt2)
print("GPT-2 base has", num_layers, "blocks: indices 0 ..", num_layers)
backbone = gpt2.backbone
assert keras_mta.models.hidden_state_tensor(backbone, num_layers) is (
    backbone.output
)
view = keras_mta.models.hidden_states_model(gpt2, [0, 6, num_layers])
x = {
    "token_ids": np.array([[5, 7, 9, 11]], "int32"),
    "padding_mask": np.ones((1, 4), "int32"),
}
out = view(x)
print("logits", out["logits"].shape, [h.shape for h in out["hidden_states"]])

"""
## Choosing the layer pairs

`AlignmentPlan.default(L_T, L_S, num_pairs=3)` spaces `num_pairs` indices
proportionally over the upper half of each model, ending at the final
norm; for GPT-2 XL to GPT-2 base it gives the paper's mapping. The paper's
own plans have names (`AlignmentPlan.gpt2_xl_to_gpt2()`, ...).
`word_pairs` is the word/phrase switch: the lowest `word_pairs` pairs align
word units, the pairs above phrase units. `hra_scale` weighs HRA within a
pair.

Every plan is checked against the models when the `DistillationModel` is
built; the HRA projectors (student width to teacher width) are created
then.
"""

rows, models = [], {}
# At reduced size (KERAS_MTA_GUIDE_SMALL=1) only the first two families.
for family, (t_preset, s_preset, t_arch, s_arch) in list(FAMILIES.items())[
    : 2 if SMALL else None
]:
    with keras.name_scope("teacher"):
        teacher = keras_mta.models.build_causal_lm(t_arch, tiny=True)
    with keras.name_scope("student"):
        student = keras_mta.models.build_causal_lm(s_arch, tiny=True)
    plan = keras_mta.AlignmentPlan.default(
        t_arch["num_layers"], s_arch["num_layers"], num_pairs=3, word_pairs=1
    )
    model = keras_mta.DistillationModel(teacher, student, plan=plan)
    models[family] = model
    rows.append(
        {
            "family": family,
            "teacher": t_preset,
            "student": s_preset or "(8 blocks, new)",
            "teacher layers": str(plan.teacher_layers),
            "student layers": str(plan.student_layers),
            "projectors": len(model.alignment.weights) // 2,
        }
    )
    print(rows[-1])
assert keras_mta.AlignmentPlan.default(48, 12) == (
    keras_mta.AlignmentPlan.gpt2_xl_to_gpt2()
)

"""
Other choices are one argument away:

```python
# More pairs, two of them on word units.
plan = keras_mta.AlignmentPlan.default(48, 12, num_pairs=4, word_pairs=2)
# Exact indices, e.g. a published mapping.
plan = keras_mta.AlignmentPlan([20, 23, 26, 29, 32], [16, 18, 20, 22, 24])
```

A wrong index fails at once, with the valid range and a plan that fits:
"""

gpt2_xl_to_base = models["GPT-2"]
try:
    keras_mta.DistillationModel(
        gpt2_xl_to_base.teacher,
        gpt2_xl_to_base.student,
        plan=keras_mta.AlignmentPlan([24, 36, 48], [6, 9, 13]),
    )
except ValueError as error:
    print("ValueError:", str(error)[:240], "...")

"""
## Different hidden sizes

Nothing to do: DSA compares `U x U` similarity matrices among units, which
have the same size whatever the widths, and HRA projects the student's
states to the teacher's width with one learned `Dense` per pair (trained
with the student, saved under `alignment/`).

## Different vocabularies

Teacher and student read the same `token_ids`, and KD compares their
next-token distributions over one vocabulary, so both must use the same
tokenizer: pick them from one family. The model refuses a pair whose
vocabularies differ:
"""

llama_teacher = keras_mta.models.tiny_architecture(FAMILIES["Llama"][2])
llama_student = dict(llama_teacher, num_layers=2, vocabulary_size=48)
try:
    keras_mta.DistillationModel(
        keras_mta.models.build_causal_lm(llama_teacher),
        keras_mta.models.build_causal_lm(llama_student),
    )
except ValueError as error:
    print("ValueError:", str(error)[:200], "...")

"""
When no small model of the family exists (Mistral above), build a new one
with the teacher's tokenizer: a keras-hub backbone of fewer blocks, with
the teacher's preprocessor, e.g.

```python
teacher = keras_hub.models.CausalLM.from_preset("mistral_7b_en")
student = keras_hub.models.MistralCausalLM(
    backbone=keras_hub.models.MistralBackbone(
        vocabulary_size=32000, num_layers=8, num_query_heads=16,
        num_key_value_heads=8, hidden_dim=2048, intermediate_dim=7168),
    preprocessor=teacher.preprocessor,
)
```

and initialise it from every fourth teacher block
(`keras_mta.models.init_student_from_teacher`) before distilling.

## One training step

The tiny GPT-2 XL and GPT-2 base pair above trains as any other; one step
on random tokens:
"""

model = gpt2_xl_to_base
model.compile(optimizer="adamw")
rng = np.random.default_rng(0)
batch = {
    "token_ids": rng.integers(1, 64, (2, 16)).astype("int32"),
    "padding_mask": np.ones((2, 16), "int32"),
    "word_units": np.array([[[k, k + 1] for k in range(16)]] * 2, "int32"),
    "phrase_units": np.array([[[k, k + 4] for k in range(0, 16, 4)]] * 2),
}
targets = np.roll(batch["token_ids"], -1, axis=1)
print(model.train_on_batch(batch, targets, return_dict=True))

"""
Real batches come from `keras_mta.DistillationPreprocessor` wrapped around
the student's preprocessor (`student.preprocessor`); see *Getting
started*.
"""

"""
## Teachers from another family

A teacher from another family (a Qwen or Llama teacher for a GPT-2 or
SmolLM student) has its own tokenizer and vocabulary. MTA's units are
character spans of the text, so they exist in both tokenizations: wrap the
teacher as `keras_mta.models.CrossTokenizerTeacher` and give the
preprocessor both models' preprocessors:

```python
preprocessor = keras_mta.DistillationPreprocessor(
    student.preprocessor,
    teacher.preprocessor,  # its own tokenizer
    max_word_units=256,
    max_phrase_units=128,
    chunker=keras_mta.preprocessing.SpanCache("spans/"),
)
train_ds = preprocessor.prepare_dataset(examples, batch_size=8)
model = keras_mta.DistillationModel(
    keras_mta.models.CrossTokenizerTeacher(teacher),
    student,
    divergence="uld",  # a cross-vocabulary objective
)
```

What changes, and what does not:

- **Inputs.** The preprocessor adds `teacher_token_ids`,
  `teacher_padding_mask`, `teacher_word_units` and `teacher_phrase_units`
  (the teacher's window is its preprocessor's `sequence_length`, or
  `teacher_sequence_length=`). The units are paired: row `u` is the same
  span on both sides, and a span either side loses (no token, cut by
  truncation, over `max_*_units`) is dropped on both and counted as
  `dropped_unpaired` in `preprocessor.statistics`.
- **DSA** keeps its formula: each side pools its unit vectors from its own
  tokens with its own token importance; the unit-pair weights come from
  the teacher's tokens.
- **HRA** cannot pair tokens, so it pairs units:
  `sum_u W_u (1 - cos(P z^S_u, z^T_u)) / sum_u W_u`, where `z^S_u` and
  `z^T_u` are the importance-pooled unit vectors of each side, `W_u` the
  teacher's unit weight and `P` the pair's projector, as before. `P` maps
  the pooled student vector, as the MTA authors' DSKD v2 port projects
  student unit vectors before comparing; since `P` is affine and pooling a
  weighted mean, this equals pooling the projected tokens, at the cost of
  `max_units` projections instead of `seq_len`.
  `TrajectoryAlignmentLoss(hra_level="auto")` (the default) does this only
  for a teacher with its own tokens; `hra_level="token"` is refused there,
  `hra_level="unit"` asks for unit-level HRA with one tokenizer too.
- **KD** compares the teacher's next-token distribution at the teacher
  position paired with each student position (the int32 input
  `teacher_positions`, -1 where none pairs; those positions weigh 0), over
  two vocabularies: the divergence must declare `cross_vocabulary = True`
  (e.g. `"uld"`, Universal Logit Distillation). `forward_kl` and the other
  same-vocabulary divergences are refused with the names of these, or
  train without KD (`use_kd=False`).
- **One tokenizer stays one.** When both preprocessors tokenize alike the
  preprocessor makes no `teacher_*` inputs: pass the teacher itself, and
  the model keeps the paper's token-level HRA.

**Caching a teacher from another family.** Such a teacher can be run once
and cached like any other: `build_teacher_cache` takes the
`CrossTokenizerTeacher` and the preprocessor, runs the teacher on its own
tokens, and stores there, at every teacher position, its hidden states at
the plan's teacher layers, its token importance and entropy weights (on
`teacher_padding_mask`) and its top-k next-token log-probabilities. The
pairing with the student is not stored: the teacher's units and
`teacher_positions` stay in the inputs, and KD gathers the cached
log-probabilities at the student's positions at each step, so one cache
serves every student of that teacher. The cache's key holds the teacher
tokenizer's identity (class, vocabulary, merges or SentencePiece model,
special tokens, sequence length) and the teacher's tokens;
`CachedTeacher.from_cache(cache, preprocessor=preprocessor)` refuses a
cache built for another teacher tokenizer, naming both. A cross-vocabulary
divergence such as ULD gets the teacher's law rebuilt from the top k (the
rest mass spread over the other tokens): exact with `top_k` equal to the
teacher's vocabulary size, within twice the rest mass per position below
it.

```python
cache = keras_mta.build_teacher_cache(
    keras_mta.models.CrossTokenizerTeacher(teacher), plan, x,
    "teacher_cache/", top_k=teacher_vocabulary_size,
    preprocessor=preprocessor,
)
model = keras_mta.DistillationModel(
    keras_mta.CachedTeacher.from_cache(cache, preprocessor=preprocessor),
    student, plan=plan, divergence="uld",
)
model.fit(cache.dataset((x, y, sample_weight), batch_size=8))
```

**A cheaper ULD: truncation.** Exact ULD sorts the smaller vocabulary
whole and takes the larger one's top of that size at every position; with
vocabularies of thousands of tokens that is most of a step on a CPU
(an MTA step across tokenizers took 1.4x to 2.7x a same-tokenizer MTA
step at 6,000 and 8,000 tokens, depending on the backend; truncated to
the top 64, 0.96x to 1.04x: BENCHMARKS.md). `UniversalLogitDistillation(truncation=m)` (a recipe's
`distillation.uld_truncation = m`) compares only the `m` largest
probabilities of each side, in order, plus the two rest masses:
`ULD_m = sum_{i<m} |p_S,(i) - p_T,(i)| + |rest_S - rest_T|`. It is a lower
bound of ULD and at most `2 min(rest_S, rest_T)` below it per position,
so it is close wherever either model puts almost all its mass on its top
`m` tokens; with `m` at least the smaller vocabulary it is exact ULD.
From a teacher cache with `top_k >= m` it reads the cached top k and rest
mass directly (the live teacher's value, without rebuilding the law over
the teacher's vocabulary).

```python
model = keras_mta.DistillationModel(
    keras_mta.models.CrossTokenizerTeacher(teacher), student,
    divergence=keras_mta.losses.UniversalLogitDistillation(truncation=64),
)
```
"""
