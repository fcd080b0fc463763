import math

import numpy as np
import pytest

from keras_mta.layers import AlignmentLoss
from keras_mta.models import AlignmentPlan
from keras_mta.utils.checks import check_non_negative

pytestmark = pytest.mark.once


@pytest.mark.parametrize("value", [0, 0.0, 2, 1.5, np.float32(3.0)])
def test_finite_non_negative_numbers_pass(value):
    check_non_negative("weight", value)


@pytest.mark.parametrize("value", [-1e-9, -2, math.inf, -math.inf, math.nan])
def test_negative_and_non_finite_numbers_are_refused(value):
    with pytest.raises(ValueError, match=r"`weight` must be >= 0 and finite"):
        check_non_negative("weight", value)


def test_the_hint_follows_the_message():
    with pytest.raises(ValueError, match=r"got -1\.0\. Leave it out\.$"):
        check_non_negative("weight", -1.0, "Leave it out.")


def test_constructors_use_it():
    with pytest.raises(ValueError, match=r"`hra_scale` must be >= 0"):
        AlignmentPlan([1], [1], hra_scale=math.nan)
    with pytest.raises(ValueError, match="do not pass it to the model"):
        AlignmentLoss(loss_weight=-1.0)
