"""A stand-in for the student responder: batches of the ground-truth
structure whose token ids say which call made them."""

import numpy as np

LENGTH, WORDS, PHRASES = 6, 3, 2


def examples(count, vocabulary=32):
    """`(x, y, sample_weight)` of `count` examples and their prompts; the
    token ids of example `i` are `i % vocabulary`."""
    ids = (np.arange(count)[:, None] % vocabulary) * np.ones((1, LENGTH))
    x = {
        "token_ids": ids.astype("int32"),
        "padding_mask": np.ones((count, LENGTH), "bool"),
        "word_units": np.tile(
            np.array([[0, 2], [2, 4], [4, 6]], "int32"), (count, 1, 1)
        ),
        "phrase_units": np.tile(
            np.array([[0, 3], [3, 6]], "int32"), (count, 1, 1)
        ),
    }
    y = np.roll(x["token_ids"], -1, axis=1)
    sample_weight = np.zeros((count, LENGTH), "float32")
    sample_weight[:, 2:] = 1.0
    prompts = [f"prompt {i}" for i in range(count)]
    return (x, y, sample_weight), prompts


class FakeResponder:
    """`generate_batch(prompts)`: the `n`-th call's token ids are all
    `vocabulary - 1 - n % 8` (never an example's own id, if the data has
    fewer than `vocabulary - 8` examples); keeps every call's prompts,
    counts its `draws` and calls `on_generate()` first, if given."""

    def __init__(self, vocabulary=32, on_generate=None):
        self.vocabulary = vocabulary
        self.on_generate = on_generate
        self.calls = []
        self.submitted = []
        self.draws = 0

    def generate_batch(self, prompts):
        self.draws += 1
        if self.on_generate is not None:
            self.on_generate()
        value = self.vocabulary - 1 - len(self.calls) % 8
        self.calls.append(list(prompts))
        (x, y, sample_weight), _ = examples(len(prompts))
        x["token_ids"][:] = value
        x["padding_mask"][:, -1] = False
        y[:] = value
        return x, y, sample_weight

    def submit(self, prompts):
        """`generate_batch` now, its result behind a handle."""
        self.submitted.append(list(prompts))
        return Handle(self.generate_batch(prompts))


def tiny_model(vocabulary=32):
    """A compiled KD + MTA `DistillationModel` of two tiny GPT-2s whose
    inputs are `examples`' batches."""
    import keras

    from keras_mta import AlignmentPlan
    from keras_mta import DistillationModel
    from tests.models.fixtures import gpt2

    keras.utils.set_random_seed(0)
    model = DistillationModel(
        gpt2(2, 8, vocab=vocabulary),
        gpt2(1, 8, vocab=vocabulary),
        plan=AlignmentPlan(teacher_layers=[2], student_layers=[1]),
        mta_weight=1.0,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def tiny_language_model(vocabulary=32):
    """A compiled one-layer `keras.Model` on `examples`' batches (reads
    `token_ids`; no teacher): `fit` runs in about a second."""
    import keras

    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.embedding = keras.layers.Embedding(vocabulary, 4)
            self.head = keras.layers.Dense(vocabulary)

        def call(self, x):
            return self.head(self.embedding(x["token_ids"]))

    keras.utils.set_random_seed(0)
    model = Tiny()
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


class Handle:
    """What `FakeResponder.submit` returns: the batch, made at submit."""

    def __init__(self, batch):
        self.batch = batch

    def result(self):
        return self.batch
