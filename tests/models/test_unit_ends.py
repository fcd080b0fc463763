"""`fit` on NumPy arrays refuses units that end past the sequence (issue 18,
item 5): inside a compiled step they would make DSA and HRA 0 quietly."""

import numpy as np
import pytest

from keras_mta import DistillationModel
from keras_mta.losses.units import check_units_in_sequence
from tests.models import fixtures as F
from tests.models.test_distillation_model import PLAN


@pytest.mark.once
def test_check_units_in_sequence_names_the_unit():
    units = np.zeros((2, 3, 2), "int32")
    units[1, 2] = [4, 9]
    check_units_in_sequence(units, 9)
    with pytest.raises(ValueError, match=r"`units`\[1, 2\] = \[4, 9\]"):
        check_units_in_sequence(units, 8)


# Building the model is cheapest under torch (0.4 s, 13 s under jax).
@pytest.mark.once(backend="torch")
def test_fit_refuses_numpy_units_past_the_sequence_end():
    teacher, student = F.teacher_student()
    model = DistillationModel(teacher, student, plan=PLAN)
    model.compile(optimizer="sgd")
    x, y, sw = F.make_batch()
    x["phrase_units"][2, 0] = [5, x["token_ids"].shape[1] + 1]
    with pytest.raises(ValueError, match=r"`phrase_units`\[2, 0\]"):
        model.fit(x, y, sample_weight=sw, epochs=1, verbose=0)
