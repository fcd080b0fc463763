import keras
import numpy as np
import pytest

from keras_mta.models.validation_loss import validation_loss
from keras_mta.models.validation_loss import validation_model
from tests.generation.fake_responder import examples
from tests.models.fixtures import gpt2


@pytest.mark.once
def test_a_kept_validation_model_follows_the_weights():
    keras.utils.set_random_seed(0)
    student = gpt2(1, 8, vocab=32)
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(examples(4)[0]).batch(2)
    kept = validation_model(student)
    before = validation_loss(student, data, model=kept)
    assert np.isfinite(before)
    assert before == pytest.approx(validation_loss(student, data))
    # The kept model shares the student's weights: it scores them as
    # they are now.
    embedding = student.backbone.token_embedding
    embedding.embeddings.assign(embedding.embeddings * 3.0)
    after = validation_loss(student, data, model=kept)
    assert after != pytest.approx(before)
    assert after == pytest.approx(validation_loss(student, data))
