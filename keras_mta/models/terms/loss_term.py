"""`LossTerm`: one weighted term of the distillation objective."""

import collections

from keras_mta.utils.checks import check_non_negative

# What every term sees of one batch (built by `DistillationModel`):
# - `inputs`: the input dict; `targets`: next-token ids `(batch, seq_len)`;
# - `token_weights`: float32 `(batch, seq_len)`, the per-token weights
#   (`sample_weight`, 1 on response tokens);
# - `student`: `{"logits", "hidden_states"}` of the student (states at the
#   plan's student layers);
# - `teacher`: the dict of `TeacherSource.outputs` (None without a teacher);
# - `teacher_source`: the `TeacherSource` (None without a teacher).
TermInputs = collections.namedtuple(
    "TermInputs",
    [
        "inputs",
        "targets",
        "token_weights",
        "student",
        "teacher",
        "teacher_source",
    ],
)


class LossTerm:
    """Base class of a term of `DistillationModel`'s objective.

    The model's loss is `sum_i term_i.weight * term_i(batch)[term_i.name]`,
    as `keras.distillation.Distiller` sums its `distillation_losses` with
    their weights. Each term reports its metrics (`metric_names`) under
    names unique in the model.

    A subclass implements `call(batch)` (a `TermInputs`) and returns a dict
    of float32 tensors holding at least `name` (the scalar that is
    weighted); other entries are reported by `compute_losses` too. It lists
    in `needs` what it reads of the teacher (names of
    `keras_mta.models.teacher_source.OUTPUTS`) and in `unit_keys` the
    input keys of the unit tensors it needs.

    Args:
        weight: float >= 0, the term's weight in the loss.
        name: str, the term's name (its key in `compute_losses` and its
            metric name).

    Examples:

    ```python
    terms = [CrossEntropyTerm(weight=0.5), KDTerm("forward_kl", weight=0.5)]
    model = keras_mta.DistillationModel(teacher, student, terms=terms)
    ```
    """

    needs = ()

    def __init__(self, weight=1.0, name=None):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"`weight` must be a float, got {weight!r}.")
        check_non_negative("weight", weight, f"(Term {name!r}.)")
        self.weight = float(weight)
        self.name = str(name)

    @property
    def layers(self):
        """Keras layers the term owns (trained and saved with the model)."""
        return []

    @property
    def unit_keys(self):
        """Input keys of the unit tensors the term reads."""
        return ()

    @property
    def metric_names(self):
        """The names of the metrics the term reports."""
        return (self.name,)

    def metric_values(self, values):
        """`{metric name: scalar}` from the values `call` returned."""
        return {self.name: values[self.name]}

    def __call__(self, batch):
        return self.call(batch)

    def call(self, batch):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `call(batch)` and return "
            f"a dict with the scalar {self.name!r}."
        )

    def build(self, student_dims, teacher_dims, teacher_source):
        """Create the term's weights and check it against the teacher
        source, at the model's construction (`student_dims`,
        `teacher_dims`: the hidden sizes at the plan's pairs). Nothing by
        default."""

    def get_config(self):
        return {"weight": self.weight, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, weight={self.weight})"


def check_terms(terms):
    """`terms` as a list of `LossTerm`s with unique metric names."""
    if not isinstance(terms, (list, tuple)) or not all(
        isinstance(term, LossTerm) for term in terms
    ):
        raise TypeError(
            "`terms` must be a list of keras_mta.models.terms.LossTerm "
            f"objects, got {terms!r}."
        )
    names = [name for term in terms for name in term.metric_names]
    for name in names:
        if names.count(name) > 1 or name == "loss":
            raise ValueError(
                f"Two loss terms report the metric {name!r} (or it is "
                "`loss`, the total); metric names must be unique. Give "
                "each term (or alignment loss layer) its own `name=`."
            )
    return list(terms)


def teacher_needs(terms):
    """What `terms` read of the teacher (names of `TeacherSource.OUTPUTS`)."""
    return {need for term in terms for need in term.needs}
