"""The commands: `run_distill`, `run_teacher_cache`, `run_train_teacher`
and `run_evaluate`."""

import dataclasses
import json
import os
import time

import keras
import numpy as np

from keras_mta.analysis.paired_differences import variant_differences
from keras_mta.analysis.results import format_table
from keras_mta.analysis.results import paired_rows
from keras_mta.analysis.results import results_rows
from keras_mta.analysis.results import write_results
from keras_mta.evaluation.datasets import evaluation_sets
from keras_mta.evaluation.datasets import rouge_scores
from keras_mta.evaluation.protocol import evaluate_rouge
from keras_mta.models.gguf import save_tied_preset
from keras_mta.models.lora import count_weights
from keras_mta.models.lora import lora_summary
from keras_mta.models.lora import lora_variables
from keras_mta.models.variants import ABLATION_TERMS
from keras_mta.recipe import validate_table
from keras_mta.runner.compiled_variants import CompiledVariants
from keras_mta.runner.models import load_model
from keras_mta.runner.plots import measure_trajectory
from keras_mta.runner.plots import write_plots
from keras_mta.runner.setup import Settings
from keras_mta.runner.setup import output_dir_of
from keras_mta.runner.setup import setup_run
from keras_mta.runner.setup import timed
from keras_mta.runner.teacher_caches import build_teacher_caches
from keras_mta.runner.training import EARLY_STOPPING_MONITOR
from keras_mta.runner.training import ablation_of
from keras_mta.runner.training import distill_variant
from keras_mta.runner.training import train_teacher
from keras_mta.runner.training import validation_loss
from keras_mta.runner.training_seeds import SeedStarts
from keras_mta.runner.training_seeds import training_seeds
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


# Greedy decoding through the protocol's top-p sampler: a nucleus this
# small keeps the most probable token alone (the sampler always keeps the
# first), so the sampling seed does not matter.
GREEDY_TOP_P = 1e-9
GREEDY_SEED = 0


def greedy_rouge(ev, causal_lm, sets, label):
    """`{dataset: ROUGE-L}` of one model with greedy decoding (the
    protocol's prompts and lengths, one deterministic pass)."""
    scores = {}
    for name, examples in sets.items():
        result = evaluate_rouge(
            causal_lm,
            examples,
            dataset=name,
            seeds=(GREEDY_SEED,),
            max_new_tokens=ev.max_new_tokens,
            batch_size=ev.batch_size,
            top_p=GREEDY_TOP_P,
        )
        say(f"  {label} (greedy): {result}")
        scores[name] = result.mean
    return scores


def _seed_run(
    recipe, student, datasets, sets, seed, history, seconds, label, compiled
):
    """What one trained student of one training seed scores."""
    rouge = rouge_scores(recipe.evaluation, student, sets, label)
    watched = history.get(EARLY_STOPPING_MONITOR) or history.get("val_loss")
    return {
        "seed": seed,
        "valid_loss": validation_loss(
            student, datasets.valid, model=compiled.validation()
        ),
        "rouge_l": rouge,
        "rouge_l_greedy": greedy_rouge(recipe.evaluation, student, sets, label),
        "epochs": len(history.get("loss", [])),
        "best_epoch": int(np.argmin(watched)) + 1 if watched else None,
        "wall_time_s": seconds,
    }


def _student_entry(name, variant, student, seed_runs):
    """A variant's table entry over its training seeds: means over the
    seeds, and each seed's figures in `per_seed` (what the paired
    differences read). ROUGE-L `std` is over training seeds (each the mean
    of the sampling seeds) when there are several, else over the sampling
    seeds."""
    first = seed_runs[0]
    rouge = {}
    for dataset, result in first["rouge_l"].items():
        runs = [run["rouge_l"][dataset] for run in seed_runs]
        means = [run["mean"] for run in runs]
        rouge[dataset] = dict(
            result,
            scores=[float(v) for v in np.mean([r["scores"] for r in runs], 0)],
            mean=float(np.mean(means)),
            std=float(np.std(means) if len(runs) > 1 else result["std"]),
            training_seed_means=means,
        )
    entry = _model_entry(
        name,
        variant,
        student,
        float(np.mean([run["valid_loss"] for run in seed_runs])),
        float(sum(run["wall_time_s"] for run in seed_runs)),
        rouge,
    )
    entry["rouge_l_greedy"] = {
        dataset: float(
            np.mean([r["rouge_l_greedy"][dataset] for r in seed_runs])
        )
        for dataset in first["rouge_l_greedy"]
    }
    entry["per_seed"] = [
        dict(run, rouge_l={k: v["mean"] for k, v in run["rouge_l"].items()})
        for run in seed_runs
    ]
    return entry


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
            history, teacher_seconds = train_teacher(
                recipe, teacher, run.teacher_data
            )
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
                validation_loss(teacher, run.teacher_data.valid),
                teacher_seconds,
                rouge_scores(recipe.evaluation, teacher, sets, "teacher"),
            )
        )
        entries[-1]["rouge_l_greedy"] = greedy_rouge(
            recipe.evaluation, teacher, sets, "teacher"
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
        # The trajectory compares the two models on one tokenization: not
        # measured across tokenizers (issue 21).
        trajectory = "mta" in recipe.distillation.compare
        if trajectory and datasets.cross_tokenizer:
            trajectory = False
            say(
                "trajectory not measured: teacher and student tokenize "
                "differently"
            )
        if trajectory:
            tables.append(
                measure_trajectory(teacher, student, datasets, plan, "before")
            )
        seeds = training_seeds(recipe.training)
        starts = SeedStarts(recipe.student, student)
        # Each variant compiled once, for all seeds (issue 22).
        compiled = CompiledVariants(student)
        runs = {variant: [] for variant in recipe.distillation.compare}
        for index, seed in enumerate(seeds):
            say(f"training seed {seed} ({index + 1} of {len(seeds)})")
            for variant in recipe.distillation.compare:
                # Same start, same data order for every variant of a seed:
                # the differences between variants are paired. (Not
                # `set_random_seed` here: it clears TensorFlow's kernel
                # cache, destroying the tf-text tokenizer resources that
                # live pipelines use.)
                student.set_weights(starts.weights(index))
                _, history, seconds = distill_variant(
                    recipe,
                    variant,
                    teacher,
                    student,
                    plan,
                    datasets,
                    caches,
                    seed=seed,
                    # Issue 20: a generating variant resumes from here.
                    backup_dir=os.path.join(
                        output_dir, "backup", f"{variant}-seed{seed}"
                    ),
                    compiled=compiled,
                )
                name = f"student ({variant.upper()})"
                label = name if index == 0 else f"{name} seed {seed}"
                histories[label] = history
                terms[label] = ABLATION_TERMS[ablation_of(recipe, variant)]
                runs[variant].append(
                    _seed_run(
                        recipe,
                        student,
                        datasets,
                        sets,
                        seed,
                        history,
                        seconds,
                        label,
                        compiled,
                    )
                )
                if variant == "mta" and index == len(seeds) - 1:
                    if trajectory:
                        tables.append(
                            measure_trajectory(
                                teacher, student, datasets, plan, "after MTA"
                            )
                        )
                    preset = os.path.join(output_dir, "mta_student")
                    save_tied_preset(student, preset)
                    merged = " (LoRA merged)" if lora_summary(student) else ""
                    say(
                        "MTA student saved as a keras-hub preset"
                        f"{merged}: {preset}"
                    )
        for variant, seed_runs in runs.items():
            entries.append(
                _student_entry(
                    f"student ({variant.upper()})",
                    variant,
                    student,
                    seed_runs,
                )
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
        "training_seeds": seeds,
        # KD - SFT and MTA - KD over the training seeds (issue 22).
        "paired_differences": variant_differences(entries),
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
    if results["paired_differences"]:
        print(flush=True)
        print(format_table(paired_rows(results)), flush=True)
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
