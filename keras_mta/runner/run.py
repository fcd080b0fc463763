"""The commands: `run_distill`, `run_teacher_cache`, `run_train_teacher`
and `run_evaluate`."""

import dataclasses
import json
import os
import time

import keras

from keras_mta.analysis.results import format_table
from keras_mta.analysis.results import results_rows
from keras_mta.analysis.results import write_results
from keras_mta.evaluation.datasets import evaluation_sets
from keras_mta.evaluation.datasets import rouge_scores
from keras_mta.models.gguf import save_tied_preset
from keras_mta.models.lora import count_weights
from keras_mta.models.lora import lora_summary
from keras_mta.models.lora import lora_variables
from keras_mta.models.variants import ABLATION_TERMS
from keras_mta.recipe import validate_table
from keras_mta.runner.models import load_model
from keras_mta.runner.plots import measure_trajectory
from keras_mta.runner.plots import write_plots
from keras_mta.runner.setup import Settings
from keras_mta.runner.setup import output_dir_of
from keras_mta.runner.setup import setup_run
from keras_mta.runner.setup import timed
from keras_mta.runner.teacher_caches import build_teacher_caches
from keras_mta.runner.training import ablation_of
from keras_mta.runner.training import distill_variant
from keras_mta.runner.training import train_teacher
from keras_mta.runner.training import validation_loss
from keras_mta.utils import atomic_write
from keras_mta.utils import say

# How to fix a field of `run_evaluate`'s protocol (`keras-mta evaluate`).
EVALUATE_FIX = "with keras-mta evaluate's flag of that name (`_` as `-`)"


def _model_entry(name, role, model, valid_loss, seconds, rouge):
    return {
        "model": name,
        "role": role,
        # The model's own weights: a LoRA student's factors are not
        # counted (its preset holds them merged).
        "parameters": int(model.count_params())
        - count_weights(lora_variables(model)),
        "valid_loss": valid_loss,
        "wall_time_s": seconds,
        "rouge_l": rouge,
    }


def run_distill(recipe, tiny=False, output_dir=None):
    """Run a recipe end to end (what `keras-mta distill` does).

    Args:
        recipe: a `keras_mta.Recipe` (see `keras_mta.load_recipe`).
        tiny: build the models from their architectures with tiny widths
            (tests, dry runs); presets are not loaded.
        output_dir: overrides `training.output_dir`.

    Returns:
        The results dict, also written to `results.json` / `results.md`
        with plots in the output directory.
    """
    start = time.perf_counter()
    recipe.validate(check_files=True)  # before any stage runs
    output_dir = output_dir or output_dir_of(recipe)
    say(f"recipe {recipe.name} -> {output_dir}")
    with Settings(recipe.training):
        run = setup_run(recipe, tiny=tiny, output_dir=output_dir)
        teacher, student, plan = run.teacher, run.student, run.plan
        datasets, stages = run.datasets, dict(run.stages)
        sets = evaluation_sets(
            recipe.evaluation.datasets,
            datasets.valid_examples,
            limit=recipe.evaluation.max_examples,
            on_error=recipe.data.on_error,
            data=recipe.data,
            test_examples=run.test,
        )
        histories, terms, entries, tables = {}, {}, [], []

        teacher_seconds = 0.0
        if recipe.training.teacher_epochs:
            history, teacher_seconds = train_teacher(recipe, teacher, datasets)
            histories["teacher (SFT)"] = history
            terms["teacher (SFT)"] = ABLATION_TERMS["sft_only"]
            save_tied_preset(
                teacher, os.path.join(output_dir, "teacher_preset")
            )
        entries.append(
            _model_entry(
                "teacher",
                "teacher",
                teacher,
                validation_loss(teacher, datasets.valid),
                teacher_seconds,
                rouge_scores(recipe.evaluation, teacher, sets, "teacher"),
            )
        )

        caches = None
        if recipe.distillation.teacher_cache:
            caches, stages["teacher_cache"] = timed(
                build_teacher_caches,
                recipe,
                teacher,
                plan,
                datasets,
                output_dir,
            )
        initial = student.get_weights()
        if "mta" in recipe.distillation.compare:
            tables.append(
                measure_trajectory(teacher, student, datasets, plan, "before")
            )
        for variant in recipe.distillation.compare:
            # Same start, same data order. (Not `set_random_seed` here: it
            # clears TensorFlow's kernel cache, destroying the tf-text
            # tokenizer resources that live pipelines use.)
            student.set_weights(initial)
            _, history, seconds = distill_variant(
                recipe, variant, teacher, student, plan, datasets, caches
            )
            name = f"student ({variant.upper()})"
            histories[name] = history
            terms[name] = ABLATION_TERMS[ablation_of(recipe, variant)]
            entries.append(
                _model_entry(
                    name,
                    variant,
                    student,
                    validation_loss(student, datasets.valid),
                    seconds,
                    rouge_scores(recipe.evaluation, student, sets, name),
                )
            )
            if variant == "mta":
                tables.append(
                    measure_trajectory(
                        teacher, student, datasets, plan, "after MTA"
                    )
                )
                preset = os.path.join(output_dir, "mta_student")
                save_tied_preset(student, preset)
                merged = " (LoRA merged)" if lora_summary(student) else ""
                say(
                    f"MTA student saved as a keras-hub preset{merged}: {preset}"
                )

    results = {
        "recipe": recipe.name,
        "description": recipe.description,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "plan": {
            "teacher_layers": list(plan.teacher_layers),
            "student_layers": list(plan.student_layers),
            "word_pairs": plan.word_pairs,
        },
        "evaluation_datasets": list(sets),
        # What trained in the students when `student.lora_rank > 0`.
        "student_lora": lora_summary(student),
        "models": entries,
        "histories": histories,
        "data": {
            "train_report": str(run.reports["train"]),
            "valid_report": str(run.reports["valid"]),
            **datasets.statistics(),
        },
        "stages_s": stages,
        "recipe_fields": recipe.to_dict(),
    }
    for table in tables:
        slug = table.label.lower().replace(" ", "_")
        table.save(os.path.join(output_dir, f"trajectory_{slug}.json"))
    results["wall_time_s"] = time.perf_counter() - start
    json_path, md_path = write_results(results, output_dir)
    results["plots"] = write_plots(
        results, histories, tables, output_dir, terms=terms
    )
    # The table is the run's result, printed even when progress is quiet.
    print(format_table(results_rows(results)), flush=True)
    say(f"results: {json_path}, {md_path}")
    say(f"total wall time {results['wall_time_s']:.0f} s")
    return results


def run_teacher_cache(recipe, tiny=False, output_dir=None):
    """Run a recipe's teacher once over its data and store the signals
    (`keras-mta teacher-cache`): the caches `keras-mta distill` trains
    from when `distillation.teacher_cache` is set.

    Returns `{"train": TeacherCache, "valid": TeacherCache}`.
    """
    recipe.validate(check_files=True)  # before any stage runs
    with Settings(recipe.training):
        run = setup_run(recipe, tiny=tiny, output_dir=output_dir)
        caches = build_teacher_caches(
            recipe, run.teacher, run.plan, run.datasets, run.output_dir
        )
    for split, cache in caches.items():
        say(f"{split}: {cache}")
    return caches


def run_train_teacher(recipe, tiny=False, output_dir=None):
    """Supervised fine-tuning of a recipe's teacher (`keras-mta
    train-teacher`); saves it as a keras-hub preset in
    `output_dir/teacher_preset` and returns a results dict."""
    recipe.validate(check_files=True)  # before any stage runs
    epochs = recipe.training.teacher_epochs or recipe.training.epochs
    recipe = dataclasses.replace(
        recipe,
        training=dataclasses.replace(recipe.training, teacher_epochs=epochs),
    )
    with Settings(recipe.training):
        run = setup_run(recipe, tiny=tiny, output_dir=output_dir, student=False)
        history, seconds = train_teacher(recipe, run.teacher, run.datasets)
        preset = os.path.join(run.output_dir, "teacher_preset")
        save_tied_preset(run.teacher, preset)
        loss = validation_loss(run.teacher, run.datasets.valid)
    say(f"teacher saved as a keras-hub preset: {preset}")
    say(f"validation loss {loss:.4f}, {seconds:.0f} s")
    return {
        "preset": preset,
        "valid_loss": loss,
        "history": history,
        "wall_time_s": seconds,
    }


def run_evaluate(preset, datasets, protocol, output=None):
    """The ROUGE-L protocol on one saved model (`keras-mta evaluate`).

    Args:
        preset: any handle `load_model` accepts (preset directory or name,
            `hf://` handle, `gguf:NAME`, a `.gguf` path).
        datasets: evaluation sets (paths or names, see
            `keras_mta.evaluation.evaluation_sets`).
        protocol: a `keras_mta.recipe.EvaluationSpec` (seeds, lengths,
            sampling, `max_examples`).
        output: optional JSON path for the results (with the first seed's
            responses).

    Returns:
        `{dataset: EvaluationResult.to_dict()}`.
    """
    validate_table(protocol, "evaluation", fix=EVALUATE_FIX)
    model = load_model(preset)
    sets = evaluation_sets(datasets, limit=protocol.max_examples)
    results = rouge_scores(protocol, model, sets, preset)
    if output:
        atomic_write(
            output, json.dumps({"preset": preset, "results": results}, indent=1)
        )
        say(f"results: {output}")
    return results
