"""
Title: Reproducing the paper's runs
Author: keras-mta team
Date created: 2026/11/28
Last modified: 2026/11/30
Description: Check a paper recipe with `keras-mta plan` on a laptop, then run it on a GPU: the GPT-2 1.5B to 120M recipe on Dolly, the five-seed ROUGE-L protocol, and the ablations.
Accelerator: GPU
"""

"""
## Introduction

A run of keras-mta is described by a **recipe**, a TOML file in
`recipes/`: teacher and student, data, layer plan, loss settings,
training and evaluation. `keras-mta distill RECIPE` runs it end to end and
writes `results.json`, `results.md` and PNG plots; `keras_mta.load_recipe`
and `keras_mta.runner.run_distill` do the same from Python.

The paper's pairs ship as recipes:

| recipe | teacher | student | plan (teacher / student) |
|---|---|---|---|
| `gpt2-1.5b-to-gpt2-120m` | GPT-2 XL (48 blocks) | GPT-2 base (12) | `[24, 36, 48]` / `[6, 9, 12]` |
| `opt-6.7b-to-opt-1.3b` | OPT 6.7B (32) | OPT 1.3B (24) | `[20 .. 32]` / `[16 .. 24]` |
| `qwen1.5-1.8b-to-qwen1.5-0.5b` | Qwen1.5 1.8B (24) | Qwen1.5 0.5B (24) | `[14 .. 24]` / `[14 .. 24]` |

This guide first checks a paper recipe on a laptop with `keras-mta plan`
(no GPU, no network, seconds), then walks through the GPT-2 run. The run's
steps need a GPU and Hub access, so they are shown as commands; the code
that runs at the end of the guide prints a paper recipe's plan and runs
the same pipeline on the embedded `tiny-cpu` recipe, which needs neither.

## 0. Check the recipe first: `keras-mta plan`

Before renting a GPU, print what the recipe will do:

```bash
keras-mta plan opt-6.7b-to-opt-1.3b
keras-mta distill opt-6.7b-to-opt-1.3b --dry-run   # the same, then stops
```

Nothing is loaded or downloaded, no data is read and spaCy does not run.
The plan lists:

- **teacher and student**: where each comes from (a keras-hub preset, an
  `hf://` checkpoint that keras-hub converts from the Transformers layout,
  a GGUF file, a local preset directory), backbone class, blocks, hidden
  size, vocabulary and the exact parameter count, computed from the
  recipe's `architecture` tables without allocating a weight (OPT 6.7B:
  6,658,465,792);
- **the student's start and LoRA**: `random` or `teacher_subset` with its
  teacher blocks; with `student.lora_rank` (the reference trains the OPT
  student with LoRA), the rank, `lora_alpha` and the adapters' trainable
  count;
- **the alignment**: each layer pair with its word or phrase units, the
  `hra_scale`, and the projectors' shapes and weights;
- **the loss**: divergence, CE / KD / MTA weights, the compared variants;
- **the optimizer groups and their peak rates**: the student at
  `training.learning_rate`, the alignment projectors at
  `training.alignment_learning_rate` (the reference's 5e-4 for all three
  pairs; 0 means the student's rate), the schedule, clipping, weight
  decay, and `batch_size x gradient_accumulation_steps` = the effective
  batch (the reference's 8 x 2 = 16 for OPT and Qwen1.5);
- **data and evaluation sets**, whether each file is there (a missing one
  is listed under "When the run starts": the run would refuse it), and
  the output directory;
- **memory on one device**: teacher weights at the precision's variable
  dtype, student weights, its gradients and AdamW's two moments (and
  Keras' gradient accumulators when accumulating) for the trainable
  weights only (the LoRA adapters of a LoRA student), the projectors,
  and a rough activation estimate for one batch x sequence. The counted
  terms are exact for the weights Keras creates; the activation lines
  say they are estimates.

Any `--set FIELD=VALUE` applies to the plan as to the run, so a change is
checked before it costs GPU time:

```bash
keras-mta plan opt-6.7b-to-opt-1.3b \
  --set student.lora_rank=8 --set training.alignment_learning_rate=5e-4 \
  --set training.batch_size=8 --set training.gradient_accumulation_steps=2
```

A recipe with a bad field is refused with the recipe's own message (the
field, the value, what is allowed) before anything is built.

## On the GPU machine, with Hub access

Once the plan reads right, the run itself is one command per step below.
The models are downloaded on first use: keras-hub presets from Kaggle,
`hf://` handles from the Hugging Face Hub (the paper's fine-tuned teachers
where keras-hub can convert their architecture; `recipes/README.md` says
which, and how to fine-tune a teacher where it cannot). Run `keras-mta
plan` there once more: the "When the run starts" section must say that
every file it reads is there.

## 1. Data

The recipes read databricks-dolly-15k (CC BY-SA 3.0) straight from the
Hub (`hf://datasets/databricks/databricks-dolly-15k/...`) and hold out,
with a seeded permutation (`data.holdout_seed = 42`), 1000 validation
examples (`data.holdout_valid`, as MiniLLM / DistiLLM's `--dev-num 1000`)
and 500 test examples (`data.holdout_test`, the size of their Dolly test
set); the rest trains. Which rows the authors held out is not public, so
the split is ours: `recipes/README.md` says which parts are known and
which guessed. The evaluation entry `test` scores the held-out examples.

The second evaluation set is `selfinst`, Self-Instruct's 252
user-oriented instructions, looked up under `$KERAS_MTA_DATA_DIR`
(`selfinst/user_oriented_instructions.jsonl`); `keras-mta plan` says
whether it is there and, if not, where to get it.

## 2. Span cache

MTA's units come from spaCy (noun and verb phrases, words). Chunking
Dolly once takes a few minutes on a few cores and is cached on disk
(atomic, resumable), keyed by the text and the spaCy pipeline;
`keras-mta distill` computes what is missing itself, before training.

## 3. Train

The GPT-2 and Qwen1.5 recipes start from the authors' teachers, already
fine-tuned on Dolly (`hf://MiniLLM/teacher-gpt2-1.5B`,
`hf://VoCuc/Qwen1.5_1.8B_SFT`), so distilling is one command:

```bash
keras-mta distill gpt2-1.5b-to-gpt2-120m
```

keras-hub 0.32 has no converter for OPT: that recipe starts from the base
`opt_6.7b_en` preset, which the reference fine-tunes on Dolly first:

```bash
keras-mta train-teacher opt-6.7b-to-opt-1.3b
keras-mta distill opt-6.7b-to-opt-1.3b \\
  --set teacher.preset=runs/opt-6.7b-to-opt-1.3b/teacher_preset
```

Settings (from the recipes, each field with a comment naming its source):
skew reverse KL (skew 0.1), `kd_ratio = 1`, the alignment projectors at
5e-4 (`training.alignment_learning_rate`), AdamW with a cosine schedule
and no warm-up, weight decay 0.01, clipping 1.0, seed 42; GPT-2: 1e-4,
batch 16, MTA weight 2; OPT: 5e-4, batch 8 x 2 accumulation steps, MTA
weight 3, a LoRA student (rank 16, alpha 64); Qwen1.5: 1e-4, batch 8 x 2.
Student-generated responses (DistiLLM's adaptive off-policy sampling) are
on, `[training.student_generation]` with the reference's settings
(threshold from 0, `loss_eps` 0.1, a replay buffer of 1000 batches, the
decreasing replay ratio, plain sampling at temperature 1); they need the
live teacher (no teacher cache): see the README, "Training on the
student's own outputs". Any field can be overridden with `--set
FIELD=VALUE`; `keras-mta distill --help` lists them all.

What to expect: `keras-mta plan gpt2-1.5b-to-gpt2-120m` gives the
memory per device term by term (under `mixed_bfloat16` Keras keeps the
weights in float32: the teacher's 1.56B weights take 5.8 GiB, the
student's training state 1.4 GiB, the logits and KD about 3 GiB at batch
16 x 256); a single 40 GB GPU holds the run. We have not timed the full
run ourselves; count hours on one GPU (Dolly's 14k training examples, 5
epochs).

## 4. Evaluate: the five-seed ROUGE-L protocol

Every model is scored by sampling one response per prompt with each of
the seeds 10, 20, 30, 40 and 50 (temperature 1, at most 384 new tokens),
ROUGE-L F1 against the references, and the mean and standard deviation
over seeds. `keras-mta distill` does it for the teacher and each student
on the recipe's `evaluation.datasets` and writes the table; a saved
preset alone, on a named set or a JSONL file:

```bash
keras-mta evaluate runs/gpt2-1.5b-to-gpt2-120m/mta_student --data selfinst
```

In Python: `keras_mta.evaluation.evaluate_rouge(causal_lm, examples)`.

## 5. Ablations

Each ablation is one override of the same recipe:

| ablation | override |
|---|---|
| DSA only | `--set distillation.ablation=dsa_only` |
| HRA only | `--set distillation.ablation=hra_only` |
| word units only | `--set distillation.ablation=word_units_only` |
| phrase units only | `--set distillation.ablation=phrase_units_only` |
| KD without MTA | `--set distillation.ablation=kd_only` |
| switch point | `--set plan.word_pairs=2` (0: phrases everywhere) |
| number of pairs | `--set plan.teacher_layers=[36,48] --set plan.student_layers=[9,12]` |

```bash
for ablation in dsa_only hra_only word_units_only phrase_units_only; do
  keras-mta distill recipes/gpt2-1.5b-to-gpt2-120m.toml \\
    --set distillation.ablation=$ablation \\
    --set training.output_dir=runs/gpt2-$ablation
done
```

## The plan and the same pipeline, small, on a CPU

First the plan of the paper's OPT recipe with the reference's LoRA
student, projector rate and 8 x 2 accumulation, as above (offline, in
seconds: nothing is loaded):
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras_mta
import keras_mta.runner

plan = keras_mta.runner.plan_run(
    keras_mta.load_recipe(
        "opt-6.7b-to-opt-1.3b",
        overrides=[
            "student.lora_rank=8",
            "training.alignment_learning_rate=5e-4",
            "training.batch_size=8",
            "training.gradient_accumulation_steps=2",
        ],
    )
)
print(plan)

"""
`plan.student.count`, `plan.pairs`, `plan.memory` (a list of terms, each
marked exact or estimated) and `plan.memory_bytes` hold the same numbers
for a script.

Then the `tiny-cpu` recipe end to end: it writes the project's toy
instruction data, trains a SentencePiece tokenizer, fine-tunes a 4-block
Llama teacher, distills a 2-block student three ways from the same start
(SFT alone, KD, KD + MTA) and scores every model with the ROUGE-L
protocol: `keras-mta distill tiny-cpu`. The same from Python:
"""

SMALL = os.environ.get("KERAS_MTA_GUIDE_SMALL") == "1"
OUTPUT = os.environ.get("KERAS_MTA_GUIDE_OUTPUT", "guide_outputs")
OUTPUT = os.path.join(OUTPUT, "reproducing_the_paper")

overrides = []
if SMALL:
    overrides = [
        "data.max_examples=64",
        "data.tokenizer='sentencepiece:200'",
        "data.sequence_length=64",
        "data.max_prompt_length=48",
        "training.epochs=1",
        "training.teacher_epochs=1",
        "training.steps_per_epoch=2",
        "distillation.compare=['mta']",
        "evaluation.seeds=[10]",
        "evaluation.max_examples=4",
        "evaluation.max_new_tokens=8",
        "training.seeds=[1]",  # one training seed at the test size
    ]
recipe = keras_mta.load_recipe("tiny-cpu", overrides=overrides)
print(recipe.name, "-", recipe.description)
results = keras_mta.runner.run_distill(
    recipe, output_dir=os.path.join(OUTPUT, "run")
)

"""
The run prints the results table and writes it with the training curves:

![training curves](guide_outputs/reproducing_the_paper/run/training_curves.png)

![results table](guide_outputs/reproducing_the_paper/run/results_table.png)

An ablation from Python is the same override:
`keras_mta.load_recipe("tiny-cpu", overrides=["distillation.ablation=dsa_only"])`.
"""

for model in results["models"]:
    print(model)
