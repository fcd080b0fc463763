"""`StudentGeneratedDataset`: ground-truth, freshly generated or replayed
batches, step by step, for `model.fit`."""

import sys
import threading
import time
import weakref

import keras
import numpy as np

from keras_mta.generation.generation_schedule import GENERATE
from keras_mta.generation.generation_schedule import REPLAY
from keras_mta.generation.replay_buffer import ReplayBuffer

# Batches kept after they were made, so that a batch asked for twice
# (TensorFlow's `fit` reads the first two to learn the input signature,
# then reads them again) is the same batch and is generated once.
MEMO_STEPS = 4
# How long a batch waits for a validation measure before it is an error
# (a wait this long means the training loop will not reach the measure:
# an error with the step names the problem instead of a silent hang).
DECISION_WAIT_S = 600.0

# The datasets in a `fit` (between `begin_fit` and `end_fit`): a fit that
# begins on a thread ends the fits that thread left by an exception, whose
# prefetching threads would otherwise wait for a measure forever.
_IN_FIT = weakref.WeakSet()


def _describe(batch):
    x, y, sample_weight = batch
    parts = {f"x[{k!r}]": v for k, v in sorted(x.items())}
    parts["y"] = y
    parts["sample_weight"] = sample_weight
    return {
        k: f"shape {tuple(np.shape(v))} {np.asarray(v).dtype}"
        for k, v in parts.items()
    }


def check_same_structure(batch, reference, step):
    """Raise a `ValueError` unless `batch` (from the responder) has the
    keys, static shapes and dtypes of the ground-truth `reference`."""
    if not (isinstance(batch, tuple) and len(batch) == 3) or not isinstance(
        batch[0], dict
    ):
        raise ValueError(
            f"Step {step}: the responder's `generate_batch` must return an "
            "`(x, y, sample_weight)` tuple with `x` a dict, got "
            f"{type(batch).__name__}."
        )
    got, want = _describe(batch), _describe(reference)
    if got != want:
        wrong = sorted(
            k for k in set(got) | set(want) if got.get(k) != want.get(k)
        )
        details = "; ".join(
            f"{k}: got {got.get(k, 'missing')}, want {want.get(k, 'none')}"
            for k in wrong
        )
        raise ValueError(
            f"Step {step}: the student-generated batch does not match the "
            f"ground-truth batches ({details}). The responder must make "
            "batches with the same keys, static shapes and dtypes as the "
            "DistillationPreprocessor that made the training data (same "
            "sequence_length, max_word_units, max_phrase_units)."
        )


class StudentGeneratedDataset(keras.utils.PyDataset):
    """Batches for `model.fit`: the data's own, the student's fresh
    samples, or replayed ones, as a `GenerationSchedule` decides.

    At each step the dataset asks `schedule.decide(step, len(buffer))`:
    `"ground_truth"` yields the step's batch of the data;
    `"generate"` asks `responder.generate_batch(prompts)` for a batch of
    the student's own responses to the same prompts (and pushes it into
    the replay buffer in the adaptive mode); `"replay"` draws a batch
    from the buffer. Every batch is the usual `(x, y, sample_weight)` of
    NumPy arrays with the ground-truth batches' static shapes. The
    source of every step is kept in `sources` (`GenerationMetrics` turns
    them into the fractions of `fit`'s logs).

    Steps are counted over the whole training: `fit` reads the batches in
    order, and the dataset is endless (`num_batches` is None), so give
    `fit` a `steps_per_epoch`. The ground-truth batches go through the
    data in passes of `len(prompts) // batch_size` batches, each pass in
    the order of a permutation seeded by `(seed, pass)` (with `shuffle`);
    every draw of a step is seeded by `(seed, step)`, so that a run
    restarted at a step (`set_state`) continues with the same batches.

    Batches are made in step order (`workers` must be 1). A validation
    loss measured after step `t` (`AdaptiveGenerationCallback`) decides
    the batches from step `t + 1` on, on every backend: jax and torch ask
    for each batch when its step runs; TensorFlow's prefetching thread
    makes batches ahead up to the next measuring step and waits there
    (`hold_from`) until the measure is in. (TensorFlow reads the first two
    batches before training to learn their signature: with a measure
    after every single step, the second batch was decided before it.)
    A batch to be generated is sampled on the training thread when its
    step begins (`GenerationMetrics` makes it there, having said so with
    `begin_fit(..., makes_generated=True)`), so that the student samples
    it with the weights of exactly the steps before it on every backend:
    TensorFlow's prefetching thread, which reads ahead while a step
    trains, makes the ground-truth and replayed batches ahead and waits
    for the generated ones. Seeded runs are thus reproducible on the
    three backends.
    The generation callbacks tell the dataset when a `fit` begins and ends
    (`begin_fit`, `end_fit`): a batch that the prefetching thread asks for
    after the last step is never trained on, so it is not made (nothing
    is generated, drawn or recorded), and a thread still waiting for a
    measure of a fit that ended, or raised, stops waiting.

    Args:
        arrays: `(x, y, sample_weight)` of the ground-truth examples,
            NumPy arrays with the examples on the first axis (`x` a dict),
            as `DistillationPreprocessor.prepare_dataset` makes them.
        prompts: list of str, the prompt of each example (what the
            student answers), one per row of `arrays`.
        batch_size: int, examples per batch (the last incomplete batch of
            a pass is dropped).
        responder: an object with `generate_batch(prompts) -> (x, y,
            sample_weight)` (NumPy arrays of the ground-truth batches'
            keys, shapes and dtypes; prompts kept, responses sampled from
            the student, units found on the new text), e.g.
            `keras_mta.generation.StudentResponses`.
        schedule: a `GenerationSchedule`.
        buffer: a `ReplayBuffer` (default: one of `schedule.capacity`
            batches seeded by `seed`, in the adaptive mode; the on-policy
            mode uses none).
        seed: int, the seed of the data order.
        shuffle: bool, a new seeded order of the examples at every pass.
        initial_step: int, the global step of the first batch (a resumed
            run; `set_state` sets it).
        overlap: bool, when the next step's batch is to be generated (known
            for certain unless a validation measure comes first), ask
            `responder.submit(prompts)` for it as soon as this step's batch
            is made, so that its units are found while this step trains;
            the student then samples it with the weights of one step
            earlier. Default False: each batch is sampled when its step
            comes, with the current weights.
        **kwargs: `keras.utils.PyDataset` arguments (`max_queue_size`);
            `workers` must stay 1 and `use_multiprocessing` False.

    Examples:

    ```python
    schedule = GenerationSchedule(total_steps=epochs * steps, seed=42)
    dataset = StudentGeneratedDataset(
        (x, y, sample_weight), prompts, batch_size=16,
        responder=responder, schedule=schedule, seed=42)
    model.fit(
        dataset, epochs=epochs, steps_per_epoch=steps,
        callbacks=[GenerationMetrics(dataset),
                   AdaptiveGenerationCallback(schedule, valid)])
    ```
    """

    def __init__(
        self,
        arrays,
        prompts,
        batch_size,
        responder,
        schedule,
        buffer=None,
        seed=0,
        shuffle=True,
        initial_step=0,
        overlap=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if self.workers != 1 or self.use_multiprocessing:
            raise ValueError(
                "StudentGeneratedDataset makes its batches in step order on "
                f"one thread (workers=1, use_multiprocessing=False), got "
                f"workers={self.workers}, use_multiprocessing="
                f"{self.use_multiprocessing}: the replay buffer and the "
                "seeded draws depend on the order of the steps. Generation "
                "runs off the training thread inside the responder."
            )
        x, y, sample_weight = arrays
        if not isinstance(x, dict):
            raise ValueError(
                "`arrays` must be `(x, y, sample_weight)` with `x` a dict "
                f"of arrays, got x of type {type(x).__name__}."
            )
        rows = {len(np.asarray(v)) for v in (*x.values(), y, sample_weight)}
        if len(rows) != 1 or rows != {len(prompts)}:
            raise ValueError(
                f"`arrays` and `prompts` must have one row per example: got "
                f"{len(prompts)} prompts and arrays of {sorted(rows)} rows."
            )
        if len(prompts) < int(batch_size):
            raise ValueError(
                f"{len(prompts)} examples are fewer than one batch of "
                f"batch_size={batch_size}: lower the batch size or give "
                "more examples."
            )
        if schedule.uses_buffer and buffer is None:
            buffer = ReplayBuffer(capacity=schedule.capacity, seed=seed)
        self.arrays = (
            {k: np.asarray(v) for k, v in x.items()},
            np.asarray(y),
            np.asarray(sample_weight),
        )
        self.prompts = list(prompts)
        self.batch_size = int(batch_size)
        self.responder = responder
        self.schedule = schedule
        self.buffer = buffer
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.initial_step = int(initial_step)
        self.overlap = bool(overlap)
        # `(step, handle)` of a batch submitted ahead (`overlap`).
        self._pending = None
        self.sources = {}
        self._draws_at_start = getattr(responder, "draws", 0)
        self._memo = {}
        self._order = (None, None)
        self._hold = None
        self._training_thread = None
        self._condition = threading.Condition()
        # Held while a batch is made (`end_fit` waits for it); never held
        # while waiting for a measure.
        self._making = threading.Lock()
        # The number of the current fit (`begin_fit`), whether it ended
        # (`end_fit`), and the threads waiting for a measure (`waiting`).
        # Whether the training thread makes the generated batches
        # (`begin_fit(makes_generated=True)`; other threads wait for them).
        self._trainer_generates = False
        self._fit = 0
        self._ended = False
        self._waiting = 0

    @property
    def num_batches(self):
        # Endless: steps are global (see the class docstring).
        return None

    @property
    def batches_per_pass(self):
        """Ground-truth batches in one pass over the examples."""
        return len(self.prompts) // self.batch_size

    def rows(self, step):
        """The example indices of `step`'s ground-truth batch."""
        epoch, position = divmod(int(step), self.batches_per_pass)
        if self._order[0] != epoch:
            count = len(self.prompts)
            order = (
                np.random.default_rng([self.seed, epoch]).permutation(count)
                if self.shuffle
                else np.arange(count)
            )
            self._order = (epoch, order)
        start = position * self.batch_size
        return self._order[1][start : start + self.batch_size]

    def ground_truth(self, step):
        """The data's own batch of `step`."""
        rows = self.rows(step)
        x, y, sample_weight = self.arrays
        return (
            {k: v[rows] for k, v in x.items()},
            y[rows],
            sample_weight[rows],
        )

    def batch(self, step):
        """The batch of global `step` (made once; see `MEMO_STEPS`)."""
        step = int(step)
        if step in self._memo:
            return self._memo[step]
        fit = self._may_make(step)
        if fit is None:
            return self.ground_truth(step)  # never trained: see `end_fit`
        with self._making:
            if step in self._memo:
                return self._memo[step]
            if self._stale(fit):
                return self.ground_truth(step)
            batch = self._make(step)
        if threading.get_ident() == self._training_thread:
            with self._condition:
                self._condition.notify_all()  # a prefetching thread waits
        return batch

    def _make(self, step):
        size = 0 if self.buffer is None else len(self.buffer)
        source = self.schedule.decide(step, size)
        reference = self.ground_truth(step)
        pending = self._pending
        if pending is not None and pending[0] <= step:
            self._pending = None  # this step's, or one never made
        if source == GENERATE:
            if pending is not None and pending[0] == step:
                batch = tuple(pending[1].result())
            else:
                prompts = [self.prompts[i] for i in self.rows(step)]
                batch = tuple(self.responder.generate_batch(prompts))
            check_same_structure(batch, reference, step)
            if self.buffer is not None:
                self.buffer.push(batch, step)
        elif source == REPLAY:
            batch = self.buffer.sample(step)
        else:
            batch = reference
        self.sources[step] = source
        self._memo[step] = batch
        for old in [s for s in self._memo if s < step - MEMO_STEPS]:
            del self._memo[old]
        if self.overlap and not self._trainer_generates:
            # (Otherwise `GenerationMetrics` submits ahead on the training
            # thread, with the weights of the steps before.)
            self.submit_ahead(step + 1)
        return batch

    def submit_ahead(self, step):
        """With `overlap`: submit `step`'s generation to the responder now
        if that step will generate and no validation measure comes before
        it; returns whether it did."""
        if self._pending is not None or step in self._memo:
            return False
        if self._hold is not None and step >= self._hold:
            return False
        if not self.will_generate(step):
            return False
        prompts = [self.prompts[i] for i in self.rows(step)]
        self._pending = (step, self.responder.submit(prompts))
        return True

    def will_generate(self, step):
        """Whether `step`'s batch is (or, made now, would be) freshly
        generated; draws nothing."""
        if step in self.sources:
            return self.sources[step] == GENERATE
        size = 0 if self.buffer is None else len(self.buffer)
        return self.schedule.decide(step, size) == GENERATE

    def hold_from(self, step, training_thread=None):
        """Batches from global `step` on wait until `hold_from` moves on:
        their decisions need a validation loss not measured yet. None
        lets every batch be made at once. `training_thread` (a
        `threading.get_ident()`) never waits: it is the thread that
        measures."""
        with self._condition:
            self._hold = None if step is None else int(step)
            if training_thread is not None:
                self._training_thread = training_thread
            self._condition.notify_all()

    def begin_fit(self, training_thread, makes_generated=False):
        """A `fit` on this dataset begins on `training_thread` (a
        `threading.get_ident()`; the generation callbacks call this in
        `on_train_begin`). A fit this thread left by an exception, on this
        dataset or another, is ended first (`end_fit`).

        `makes_generated=True` (`GenerationMetrics`) says that the
        training thread makes every batch to be generated when its step
        begins (and, with `overlap`, submits the next one): until the end
        of this fit, other threads wait for those batches instead of
        sampling them with whatever weights the student has at the time.
        Another callback's call with False leaves it on."""
        for other in list(_IN_FIT):
            if other is not self and other._training_thread == training_thread:
                other.end_fit()
        with self._condition:
            self._fit += 1  # batches asked for by an earlier fit: stale
            self._ended = False
            self._training_thread = training_thread
            self._trainer_generates = self._trainer_generates or bool(
                makes_generated
            )
            self._condition.notify_all()
        _IN_FIT.add(self)

    def end_fit(self):
        """The `fit` ended (`on_train_end` of the generation callbacks; or
        a later `begin_fit` on its thread, if it raised). Batches that a
        prefetching thread asks for from now on (TensorFlow's input
        pipeline reads ahead of the last step) are never trained on: such
        a thread gets the step's ground-truth batch at once, and nothing
        is drawn, generated, pushed into the buffer or recorded in
        `sources`; one that waits for a validation measure stops waiting.
        A batch being made when the fit ends is finished first, so that
        `start_at` then forgets it. Calls from the training thread itself
        are not affected. Idempotent."""
        with self._condition:
            self._ended = True
            self._hold = None
            self._trainer_generates = False
            self._condition.notify_all()
        with self._making:
            pass  # a batch being made is finished
        _IN_FIT.discard(self)

    @property
    def waiting(self):
        """The number of threads waiting for a validation measure."""
        return self._waiting

    def _stale(self, fit=None):
        """Whether a batch asked for now on this thread (for the fit
        numbered `fit`, default the current one) would never be trained
        on: the fit ended, or a newer one began."""
        if threading.get_ident() == self._training_thread:
            return False
        fit = self._fit if fit is None else fit
        return self._ended or fit != self._fit

    def _training_thread_in_fit(self):
        """Whether the training thread is inside a `fit` call (a frame of
        a function named `fit` on its stack). A `fit` that raised never
        reaches `on_train_end`, and nothing else tells the dataset; its
        prefetching thread must not keep waiting for a measure that will
        not come: TensorFlow would then block the process when it destroys
        that input pipeline, until `DECISION_WAIT_S`."""
        frame = sys._current_frames().get(self._training_thread)
        while frame is not None:
            if frame.f_code.co_name == "fit":
                return True
            frame = frame.f_back
        return False

    def _must_wait(self, step):
        """Whether a thread other than the training thread must wait
        before making `step`'s batch: the validation measure that decides
        it is not in yet (`hold_from`), or it is to be generated and the
        training thread makes it (`begin_fit(makes_generated=True)`)."""
        if self._hold is not None and step >= self._hold:
            return True
        return (
            self._trainer_generates
            and step not in self._memo
            and self.will_generate(step)
        )

    def _may_make(self, step):
        """Waits, on a thread other than the training thread, until the
        decisions before `step` are in (`hold_from`) and, if the training
        thread makes it, until a batch to be generated is made. Returns
        the number of the fit the batch is asked for (a batch made later
        for an older fit is stale), or None when the batch would never be
        trained on (`end_fit`, or the training thread left its `fit`)."""
        if threading.get_ident() == self._training_thread:
            return self._fit
        start = time.monotonic()
        with self._condition:
            fit = self._fit
            self._waiting += 1
            try:
                while not self._stale(fit) and self._must_wait(step):
                    waited = time.monotonic() - start
                    if waited > DECISION_WAIT_S:
                        raise RuntimeError(self._wait_error(step, waited))
                    self._condition.wait(timeout=1.0)
                    if not self._training_thread_in_fit():
                        return None
            finally:
                self._waiting -= 1
            return None if self._stale(fit) else fit

    def _wait_error(self, step, waited):
        if self._hold is not None and step >= self._hold:
            return (
                f"StudentGeneratedDataset: the batch of step {step} waited "
                f"{waited:.0f} s for the validation loss to be measured at "
                f"step {self._hold} (its generation decision depends on it), "
                "and the training loop did not get there. The loop is "
                "waiting for this batch itself, or the "
                "`AdaptiveGenerationCallback` that measures and releases it "
                "is not among the fit's callbacks. Fix: pass the callback "
                "to `fit` with this dataset; if it is there, please report "
                "this with the backend and the log."
            )
        return (
            f"StudentGeneratedDataset: the batch of step {step} is to be "
            f"generated on the training thread, and it waited {waited:.0f} s "
            "for it: the dataset's `GenerationMetrics` is not among this "
            "fit's callbacks (an earlier fit with it raised and this one "
            "has none). Fix: pass `GenerationMetrics(dataset)` to `fit`."
        )

    def __getitem__(self, index):
        return self.batch(self.initial_step + int(index))

    def responder_draws(self, step):
        """The responder's draws (`responder.draws`, its seeded sample
        index) before global `step`."""
        generated = sum(
            1
            for s, source in self.sources.items()
            if s < step and source == GENERATE
        )
        return self._draws_at_start + generated

    def _set_responder_draws(self, draws):
        if hasattr(self.responder, "draws"):
            self.responder.draws = int(draws)

    def start_at(self, step):
        """Let the next `fit` start at global `step`: batches made ahead of
        it (prefetched, never trained on) are forgotten, and taken out of
        the replay buffer."""
        self.initial_step = int(step)
        self._memo.clear()
        self._pending = None
        self._set_responder_draws(self.responder_draws(step))
        for later in [s for s in self.sources if s >= step]:
            del self.sources[later]
        if self.buffer is not None:
            self.buffer.discard_from(step)

    def get_state(self, step):
        """The state to resume training at global `step` (the steps before
        it trained): the schedule's state, the replay buffer's batches
        generated before `step` and the responder's draws before it (its
        `draws`, restored by `set_state` when the responder has one)."""
        state = {
            "step": int(step),
            "schedule": self.schedule.get_state(),
            "responder_draws": self.responder_draws(step),
        }
        if self.buffer is not None:
            state["buffer"] = self.buffer.get_state(before_step=step)
        return state

    def set_state(self, state):
        """Resume from `get_state(step)`: the next `fit` starts at that
        step with the same threshold, buffer and draws."""
        self.schedule.set_state(state["schedule"])
        if self.buffer is not None:
            self.buffer.set_state(state["buffer"])
        self.sources = {}
        self._draws_at_start = int(state.get("responder_draws", 0))
        self.start_at(state["step"])

    def save_state(self, path, step):
        """Write `get_state(step)` to one `.npz` file."""
        state = self.get_state(step)
        last = state["schedule"]["last_loss"]
        flat = {
            "step": np.asarray(state["step"]),
            "threshold": np.asarray(state["schedule"]["threshold"]),
            "last_loss": np.asarray(np.nan if last is None else last),
            "responder_draws": np.asarray(state["responder_draws"]),
        }
        for key, value in state.get("buffer", {}).items():
            flat[f"buffer/{key}"] = value
        np.savez(path, **flat)

    def load_state(self, path):
        """Resume from a file written by `save_state`."""
        with np.load(path) as data:
            last = float(data["last_loss"])
            state = {
                "step": int(data["step"]),
                "responder_draws": int(data["responder_draws"]),
                "schedule": {
                    "threshold": float(data["threshold"]),
                    "last_loss": None if np.isnan(last) else last,
                },
                "buffer": {
                    k[len("buffer/") :]: data[k]
                    for k in data.files
                    if k.startswith("buffer/")
                },
            }
        self.set_state(state)
