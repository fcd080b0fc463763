"""`GenerationBackupAndRestore`: an interrupted `fit` on the student's own
outputs resumes with the same draws."""

import glob
import os

import keras

# The dataset's state after each epoch: `generation-epoch-<epochs done>.npz`.
STATE_PATTERN = "generation-epoch-{epoch}.npz"


class GenerationBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that also backs up the state of
    a `StudentGeneratedDataset`.

    At the end of every epoch it writes the dataset's state
    (`StudentGeneratedDataset.save_state`: the schedule's threshold and
    reference loss, the replay buffer's batches and the responder's
    draws) to `backup_dir/generation-epoch-<epochs done>.npz`, then lets
    `BackupAndRestore` write the model's weights, optimizer state and
    epoch. A `fit` started again with the same `backup_dir` after an
    interruption restores the weights and epoch and then the dataset's
    state of that epoch, so that it trains on the same batches (the same
    decisions, replayed batches and sampling seeds) as a run that was
    never interrupted. The state of the epoch before is kept too: an
    interruption between the two writes resumes from the epoch whose
    weights were written. As with `BackupAndRestore`, the backup is
    deleted when `fit` ends (`delete_checkpoint`), resumes are at epoch
    boundaries, and other callbacks' own state (early stopping's count of
    epochs without improvement) starts afresh.

    Put it before the dataset's `GenerationMetrics` and
    `AdaptiveGenerationCallback` in `callbacks`: they read the resumed
    step when training begins.

    Args:
        dataset: the `StudentGeneratedDataset` that `fit` reads.
        backup_dir: str, the directory of the backup (one per training;
            see `keras.callbacks.BackupAndRestore`).
        delete_checkpoint: bool, delete the backup when `fit` ends.

    Examples:

    ```python
    backup = GenerationBackupAndRestore(dataset, "runs/x/backup")
    callbacks = [backup, GenerationMetrics(dataset), adaptive_callback]
    model.fit(dataset, epochs=5, steps_per_epoch=100, callbacks=callbacks)
    # Interrupted? The same call again continues where the backup is.
    ```
    """

    def __init__(self, dataset, backup_dir, delete_checkpoint=True):
        super().__init__(
            backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint
        )
        self.dataset = dataset
        self.step = dataset.initial_step
        self._epoch_start = self.step
        # The global step a resumed `fit` started at (None: not resumed).
        self.resumed_at = None

    def state_path(self, epoch):
        """The dataset's state after `epoch` epochs."""
        return os.path.join(self.backup_dir, STATE_PATTERN.format(epoch=epoch))

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # weights, optimizer, epoch
        epoch = int(getattr(self.model, "_initial_epoch", None) or 0)
        if epoch:
            path = self.state_path(epoch)
            if not os.path.exists(path):
                raise ValueError(
                    f"The backup in {self.backup_dir} resumes training after "
                    f"epoch {epoch} but holds no state of the student-"
                    f"generated data for it ({path} is missing), so the "
                    "run cannot continue with the same draws. Delete "
                    f"{self.backup_dir} to train from the start."
                )
            self.dataset.load_state(path)
            self.resumed_at = self.dataset.initial_step
        self.step = self._epoch_start = self.dataset.initial_step

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.step

    def on_train_batch_end(self, batch, logs=None):
        self.step = self._epoch_start + int(batch) + 1
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        # The dataset's state first, then the weights: an interruption in
        # between leaves the weights of `epoch` epochs beside the states
        # of `epoch` and `epoch + 1` epochs.
        os.makedirs(self.backup_dir, exist_ok=True)
        done = int(epoch) + 1
        path = self.state_path(done)
        partial = path[: -len(".npz")] + ".partial.npz"
        self.dataset.save_state(partial, self.step)
        os.replace(partial, path)
        keep = {path, self.state_path(done - 1)}
        pattern = os.path.join(self.backup_dir, STATE_PATTERN.format(epoch="*"))
        for old in glob.glob(pattern):
            if old not in keep:
                os.remove(old)
        super().on_epoch_end(epoch, logs)

    def get_config(self):
        return {
            "backup_dir": self.backup_dir,
            "delete_checkpoint": self.delete_checkpoint,
        }
