"""A run's training on the student's own outputs
(`training.student_generation`): the data source and its callbacks."""

import numpy as np

from keras_mta.generation import AdaptiveGenerationCallback
from keras_mta.generation import GenerationMetrics
from keras_mta.generation import GenerationSchedule
from keras_mta.generation import StudentGeneratedDataset
from keras_mta.generation.generation_schedule import GENERATE
from keras_mta.generation.generation_schedule import GROUND_TRUTH
from keras_mta.generation.generation_schedule import REPLAY
from keras_mta.generation.generation_schedule import SOURCES

# How the run's summary names each source of a batch.
SOURCE_WORDS = {
    GENERATE: "generated",
    REPLAY: "replayed",
    GROUND_TRUTH: "ground truth",
}


def make_responder(recipe, datasets, student, seed):
    """The recipe's sampler of student responses (a
    `keras_mta.generation.StudentResponses` on the run's preprocessor),
    its draws seeded by the run's training `seed`."""
    from keras_mta.generation.student_responses import StudentResponses

    generation = recipe.training.student_generation
    return StudentResponses(
        student,
        datasets.preprocessor,
        temperature=generation.temperature,
        top_k=generation.top_k,
        top_p=generation.top_p,
        seed=seed,
        n_process=generation.n_process,
    )


def student_generation(
    recipe,
    datasets,
    student,
    total_steps,
    seed=None,
    mode=None,
    examples=0,
    validation=None,
):
    """The training data and callbacks of a run that trains on the
    student's own outputs.

    Args:
        recipe: the run's `keras_mta.Recipe` (its
            `training.student_generation` holds the settings).
        datasets: the run's `Datasets` (NumPy arrays of the training
            examples, their prompts, the validation pipeline).
        student: the student CausalLM (it samples the responses).
        total_steps: batches of the whole training.
        seed: the run's training seed (default `training.seed`): the
            schedule's draws, the data order and the responses' sampling,
            so that each of `training.seeds` is its own paired run.
        mode: `"adaptive"` or `"on_policy"` (default
            `training.student_generation.mode`; a variant's `+adaptive` /
            `+on_policy` suffix gives it).
        examples: the students' share (`training.student_examples`): > 0
            keeps the first `examples` training rows and their prompts,
            the rows the ground-truth pipeline trains on (0: all).
        validation: optional `validation_model` of the student (the
            run's, compiled once) with which the adaptive mode measures
            the validation loss; None: the callback builds its own.

    Returns:
        `(dataset, callbacks, responder)`: the `StudentGeneratedDataset`
        for `fit`, its `GenerationMetrics` and (adaptive mode)
        `AdaptiveGenerationCallback`, and the responder (to close after
        training, when it has `close`).
    """
    generation = recipe.training.student_generation
    seed = recipe.training.seed if seed is None else seed
    mode = mode or generation.mode
    prompts = [example.prompt for example in datasets.train_examples]
    arrays = datasets.train_arrays
    rows = len(np.asarray(arrays[1]))
    if rows != len(prompts):
        raise ValueError(
            f"The training data has {rows} preprocessed rows but "
            f"{len(prompts)} prompts: student generation needs one prompt "
            "per row."
        )
    if examples and int(examples) < rows:
        prompts, arrays = _first_rows(prompts, arrays, int(examples))
    schedule = GenerationSchedule(
        mode=mode,
        total_steps=total_steps,
        init_threshold=generation.init_threshold,
        loss_eps=generation.loss_eps,
        capacity=generation.capacity,
        replay_ratio=generation.replay_ratio,
        on_policy_fraction=generation.on_policy_fraction,
        seed=seed,
    )
    responder = make_responder(recipe, datasets, student, seed)
    dataset = StudentGeneratedDataset(
        arrays,
        prompts,
        datasets.batch_size,
        responder,
        schedule,
        seed=seed,
    )
    callbacks = [GenerationMetrics(dataset)]
    if schedule.measures_validation_loss:
        callbacks.append(
            AdaptiveGenerationCallback(
                dataset,
                datasets.valid,
                eval_interval=generation.eval_interval,
                evaluator=validation,
            )
        )
    return dataset, callbacks, responder


def _first_rows(prompts, arrays, count):
    """The first `count` prompts and rows of `(x, y, sample_weight)`."""
    x, y, sample_weight = arrays
    x = {key: np.asarray(value)[:count] for key, value in x.items()}
    rows = (x, np.asarray(y)[:count], np.asarray(sample_weight)[:count])
    return prompts[:count], rows


def generation_summary(dataset):
    """One line on the batches a `StudentGeneratedDataset` gave the steps
    trained (after `fit`: the steps before its `initial_step`): how many
    were generated, replayed and ground truth (with their fractions), and
    the threshold and replay buffer at the end."""
    counts = {source: 0 for source in SOURCES}
    # After `fit`, `initial_step` is the first step not trained: batches
    # made past it (TensorFlow's prefetching, let go when training ends)
    # do not count.
    for step, source in dataset.sources.items():
        if step < dataset.initial_step:
            counts[source] += 1
    total = max(sum(counts.values()), 1)
    parts = [
        f"{counts[source]} {SOURCE_WORDS[source]} "
        f"({counts[source] / total:.0%})"
        for source in SOURCES
    ]
    line = f"{sum(counts.values())} batches: " + ", ".join(parts)
    if dataset.schedule.uses_buffer:
        line += (
            f"; generation threshold {dataset.schedule.threshold:g}, "
            f"replay buffer {len(dataset.buffer)}/{dataset.buffer.capacity}"
        )
    return line
