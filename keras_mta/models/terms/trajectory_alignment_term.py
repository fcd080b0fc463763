"""`TrajectoryAlignmentTerm`: the MTA loss (DSA + HRA over all pairs)."""

import keras

from keras_mta.layers.trajectory_alignment_loss import TrajectoryAlignmentLoss
from keras_mta.models.terms.alignment_term import AlignmentTerm


@keras.saving.register_keras_serializable(package="keras_mta")
class TrajectoryAlignmentTerm(AlignmentTerm):
    """`L_MTA` of a `TrajectoryAlignmentLoss`, as a term (named `mta`).

    Reports the metrics `dsa` and `hra` (means over pairs, `hra` before
    `hra_scale`) and, with `pair_metrics`, `dsa_k` and `hra_k` for every
    pair `k`. `compute_losses` also returns `pair_dsa` and `pair_hra`,
    `(num_pairs,)` vectors. The teacher's token importance (and, with
    `entropy_weighting`, its entropy weights) is passed to the loss as
    `teacher_signals`.

    Args:
        loss: a `keras_mta.layers.TrajectoryAlignmentLoss`.
        weight: float >= 0; defaults to the layer's `loss_weight`.
        name: defaults to `"mta"`.
        pair_metrics: bool, also report `dsa_k` and `hra_k`.
        entropy_weighting: bool, weight tokens by the teacher's entropy
            weights (`AlignmentPlan.entropy_weighting`).

    Examples:

    ```python
    loss = keras_mta.layers.TrajectoryAlignmentLoss(
        teacher_dims=[1600, 1600], student_dims=[768, 768], loss_weight=2.0)
    TrajectoryAlignmentTerm(loss, weight=0.5 * 2.0)
    ```
    """

    def __init__(
        self,
        loss,
        weight=None,
        name="mta",
        pair_metrics=False,
        entropy_weighting=False,
    ):
        if not isinstance(loss, TrajectoryAlignmentLoss):
            raise TypeError(
                "A TrajectoryAlignmentTerm needs a keras_mta.layers."
                f"TrajectoryAlignmentLoss, got {type(loss).__name__}."
            )
        super().__init__(loss, weight=weight, name=name)
        self.pair_metrics = bool(pair_metrics)
        self.entropy_weighting = bool(entropy_weighting)

    @property
    def needs(self):
        needs = ("hidden_states", "importance")
        if self.entropy_weighting:
            needs += ("entropy_weights",)
        return needs

    @property
    def unit_keys(self):
        keys = []
        if self.loss.word_pairs > 0:
            keys.append("word_units")
        if self.loss.word_pairs < self.loss.num_pairs:
            keys.append("phrase_units")
        return tuple(keys)

    @property
    def metric_names(self):
        names = ["dsa", "hra"]
        if self.pair_metrics:
            for k in range(self.loss.num_pairs):
                names += [f"dsa_{k}", f"hra_{k}"]
        return tuple(names)

    def values(self, out):
        return {
            self.name: out["loss"],
            "dsa": out["dsa"],
            "hra": out["hra"],
            "pair_dsa": out["pair_dsa"],
            "pair_hra": out["pair_hra"],
        }

    def metric_values(self, values):
        metrics = {"dsa": values["dsa"], "hra": values["hra"]}
        if self.pair_metrics:
            for k in range(self.loss.num_pairs):
                metrics[f"dsa_{k}"] = values["pair_dsa"][k]
                metrics[f"hra_{k}"] = values["pair_hra"][k]
        return metrics

    def get_config(self):
        config = super().get_config()
        config["pair_metrics"] = self.pair_metrics
        config["entropy_weighting"] = self.entropy_weighting
        return config
