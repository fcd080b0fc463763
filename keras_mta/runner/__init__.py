"""Run a recipe end to end: data, teacher, students, evaluation, results.

`run_distill(recipe)` is what `keras-mta distill` calls, and what a Python
user calls with a `keras_mta.load_recipe(...)` result:

1. data: load (or, for `builtin:toy-world`, write) the JSONL files;
2. models: teacher and student from presets or architectures, with the
   recipe's tokenizer (trained on the training text for `sentencepiece:N`);
   with `student.lora_rank > 0` the student trains through LoRA adapters;
3. spans and tokens: chunk every text once (span cache), tokenize and map
   units once into arrays that `tf.data` shuffles and batches per epoch;
4. teacher: optional supervised fine-tuning (`training.teacher_epochs`);
   with `distillation.teacher_cache` set, the teacher then runs once over
   the training and validation data and its signals are stored
   (`keras_mta.build_teacher_cache`, reused when already there);
5. students: every variant of `distillation.compare` (e.g. SFT, KD, MTA),
   each from the same initial student weights, seed and schedule (from the
   teacher cache when there is one);
6. evaluation: validation loss and the ROUGE-L protocol for the teacher
   and every student;
7. results: `results.json`, `results.md`, training-curve and table plots,
   the before/after trajectory plot, the MTA student saved as a keras-hub
   preset (a LoRA student with its adapters merged).

One concept per module: `data` (JSONL, prompts), `models` (the one model
loader, teacher and student, plan), `datasets` (the tf.data pipelines,
built once), `setup` (Keras settings and `setup_run`, shared by every
recipe command), `training` (optimizer, divergence, the compiled model of
a variant, fit), `teacher_caches`, `plots` and `run` (the commands).
"""

from keras_mta.analysis.results import format_table
from keras_mta.analysis.results import results_rows
from keras_mta.analysis.results import write_results
from keras_mta.evaluation.datasets import EVALUATION_DATASETS
from keras_mta.evaluation.datasets import evaluation_sets
from keras_mta.evaluation.datasets import resolve_evaluation_dataset
from keras_mta.evaluation.datasets import rouge_scores
from keras_mta.models.variants import VARIANTS
from keras_mta.runner.data import TOY_WORLD
from keras_mta.runner.data import load_data
from keras_mta.runner.data import span_cache_of
from keras_mta.runner.data import truncate_prompts
from keras_mta.runner.datasets import Datasets
from keras_mta.runner.models import apply_student_lora
from keras_mta.runner.models import load_model
from keras_mta.runner.models import load_models
from keras_mta.runner.models import make_plan
from keras_mta.runner.plots import measure_trajectory
from keras_mta.runner.plots import write_plots
from keras_mta.runner.run import run_distill
from keras_mta.runner.run import run_evaluate
from keras_mta.runner.run import run_teacher_cache
from keras_mta.runner.run import run_train_teacher
from keras_mta.runner.run_plan import RunPlan
from keras_mta.runner.run_plan import plan_run
from keras_mta.runner.setup import RunSetup
from keras_mta.runner.setup import Settings
from keras_mta.runner.setup import output_dir_of
from keras_mta.runner.setup import setup_run
from keras_mta.runner.setup import timed
from keras_mta.runner.teacher_caches import build_teacher_caches
from keras_mta.runner.teacher_caches import teacher_cache_dir
from keras_mta.runner.training import ablation_of
from keras_mta.runner.training import build_variant_model
from keras_mta.runner.training import distill_variant
from keras_mta.runner.training import divergence_of
from keras_mta.runner.training import fit
from keras_mta.runner.training import make_optimizer
from keras_mta.runner.training import train_teacher
from keras_mta.runner.training import validation_loss
