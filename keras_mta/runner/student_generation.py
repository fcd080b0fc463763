"""A run's training on the student's own outputs
(`training.student_generation`): the data source and its callbacks."""

import numpy as np

from keras_mta.generation import AdaptiveGenerationCallback
from keras_mta.generation import GenerationMetrics
from keras_mta.generation import GenerationSchedule
from keras_mta.generation import StudentGeneratedDataset


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


def student_generation(recipe, datasets, student, total_steps, seed=None):
    """The training data and callbacks of a run that trains on the
    student's own outputs.

    Args:
        recipe: the run's `keras_mta.Recipe` (its
            `training.student_generation` is on).
        datasets: the run's `Datasets` (NumPy arrays of the training
            examples, their prompts, the validation pipeline).
        student: the student CausalLM (it samples the responses).
        total_steps: batches of the whole training.
        seed: the run's training seed (default `training.seed`): the
            schedule's draws, the data order and the responses' sampling,
            so that each of `training.seeds` is its own paired run.

    Returns:
        `(dataset, callbacks, responder)`: the `StudentGeneratedDataset`
        for `fit`, its `GenerationMetrics` and (adaptive mode)
        `AdaptiveGenerationCallback`, and the responder (to close after
        training, when it has `close`).
    """
    generation = recipe.training.student_generation
    seed = recipe.training.seed if seed is None else seed
    prompts = [example.prompt for example in datasets.train_examples]
    rows = len(np.asarray(datasets.train_arrays[1]))
    if rows != len(prompts):
        raise ValueError(
            f"The training data has {rows} preprocessed rows but "
            f"{len(prompts)} prompts: student generation needs one prompt "
            "per row."
        )
    schedule = GenerationSchedule(
        mode=generation.mode,
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
        datasets.train_arrays,
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
            )
        )
    return dataset, callbacks, responder
