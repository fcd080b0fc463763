"""A Keras callback that draws the trajectory while a student trains."""

import os

import keras

from keras_mta.analysis.plots import plot_trajectory_heatmaps
from keras_mta.analysis.plots import plot_trajectory_lines
from keras_mta.analysis.trajectory import trajectory


class TrajectoryCallback(keras.callbacks.Callback):
    """Measure the teacher/student trajectory every `every` epochs.

    On a fixed validation sample, computes `keras_mta.analysis.trajectory`
    before training and after every `every`-th epoch, saves each table as
    JSON, draws its heatmaps and a line chart of all checkpoints so far,
    and (with `log_dir`) logs the agreement of the plan's pairs as
    TensorBoard scalars (`trajectory/word_pair_0`, ...).

    Args:
        teacher: the teacher `CausalLM`.
        student: the student `CausalLM` being trained.
        dataset: a small, fixed iterable of batches with units (re-read at
            each checkpoint).
        output_dir: where JSON tables and PNG plots are written.
        plan: optional `AlignmentPlan` (pairs marked and logged).
        every: int, epochs between checkpoints.
        log_dir: optional TensorBoard log directory.
        max_batches: optional cap on the batches read per checkpoint.

    Attributes:
        tables: the `TrajectoryTable`s measured so far.
    """

    def __init__(
        self,
        teacher,
        student,
        dataset,
        output_dir,
        plan=None,
        every=1,
        log_dir=None,
        max_batches=None,
    ):
        super().__init__()
        if every < 1:
            raise ValueError(f"`every` must be >= 1, got {every}.")
        self.teacher = teacher
        self.student = student
        self.dataset = dataset
        self.output_dir = output_dir
        self.plan = plan
        self.every = every
        self.log_dir = log_dir
        self.max_batches = max_batches
        self.tables = []
        self._writer = None

    def _measure(self, label, step):
        table = trajectory(
            self.teacher,
            self.student,
            self.dataset,
            plan=self.plan,
            max_batches=self.max_batches,
            label=label,
            progress=False,
        )
        self.tables.append(table)
        stem = label.replace(" ", "_")
        table.save(os.path.join(self.output_dir, f"trajectory_{stem}.json"))
        plot_trajectory_heatmaps(
            table, os.path.join(self.output_dir, f"trajectory_{stem}.png")
        )
        plot_trajectory_lines(
            self.tables, os.path.join(self.output_dir, "trajectory_lines.png")
        )
        if self.log_dir and table.plan_pairs:
            self._log(table, step)

    def _log(self, table, step):
        # TensorBoard event files are written with tf.summary, as Keras's
        # own TensorBoard callback does; this is logging, not model code.
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for granularity in table.agreement:
                values = table.pair_agreement(granularity)
                for k, value in enumerate(values):
                    tf.summary.scalar(
                        f"trajectory/{granularity}_pair_{k}", value, step=step
                    )
        self._writer.flush()

    def on_train_begin(self, logs=None):
        self._measure("before", step=0)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self._measure(f"epoch {epoch + 1}", step=epoch + 1)
