import keras
import numpy as np
import pytest

from keras_mta.models import get_backbone
from keras_mta.models import hidden_states_model
from keras_mta.models import num_hidden_layers
from tests.models import fixtures as F


def _inputs():
    x, _, _ = F.make_batch(seed=3)
    return {"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]}


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_gpt2_indices_follow_hf_convention():
    model = F.gpt2(3, 16)
    F.set_numpy_weights(model, 0)
    x = _inputs()
    view = hidden_states_model(model, [0, 1, 2, 3])
    out = view(x)
    assert len(out["hidden_states"]) == 4
    want_hidden, want_logits = F.gpt2_reference(
        model, x["token_ids"], x["padding_mask"]
    )
    real = x["padding_mask"].astype(bool)
    for got, want in zip(out["hidden_states"], want_hidden):
        np.testing.assert_allclose(_np(got)[real], want[real], atol=1e-4)
    # Index L is the final-norm output, and the logits are the CausalLM's.
    np.testing.assert_array_equal(
        _np(out["hidden_states"][3]), _np(model.backbone(x))
    )
    np.testing.assert_array_equal(_np(out["logits"]), _np(model(x)))
    np.testing.assert_allclose(
        _np(out["logits"])[real], want_logits[real], atol=1e-4
    )


def test_only_mapped_layers_and_no_new_weights():
    model = F.gpt2(3, 16)
    view = hidden_states_model(model, [2])
    out = view(_inputs())
    assert len(out["hidden_states"]) == 1
    assert out["hidden_states"][0].shape == (F.BATCH, F.SEQ_LEN, 16)
    assert {id(w) for w in view.weights} <= {id(w) for w in model.weights}
    logits_only = hidden_states_model(model)
    assert logits_only(_inputs())["hidden_states"] == []


def test_accepts_a_backbone():
    model = F.gpt2(2, 8)
    view = hidden_states_model(model.backbone, [1])
    out = view(_inputs())
    assert out["logits"].shape == (F.BATCH, F.SEQ_LEN, F.VOCAB)
    assert num_hidden_layers(model.backbone) == 2
    assert get_backbone(model) is model.backbone


def test_qwen():
    model = F.qwen(2, 16)
    x = _inputs()
    view = hidden_states_model(model, [0, 1, 2])
    out = view(x)
    assert num_hidden_layers(model) == 2
    np.testing.assert_allclose(
        _np(out["logits"]), _np(model(x)), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        _np(out["hidden_states"][2]), _np(model.backbone(x)), atol=1e-6
    )
    assert [h.shape[-1] for h in out["hidden_states"]] == [16, 16, 16]


def test_index_out_of_range():
    model = F.gpt2(2, 8)
    with pytest.raises(ValueError, match=r"valid indices 0 \.\. 2"):
        hidden_states_model(model, [3])
    with pytest.raises(ValueError, match="out of range"):
        hidden_states_model(model, [-1])


def test_backbone_without_transformer_layers():
    inputs = keras.Input((None,), dtype="int32")
    plain = keras.Model(inputs, keras.layers.Embedding(10, 4)(inputs))
    with pytest.raises(ValueError, match="exposes no `transformer_layers`"):
        hidden_states_model(plain, [0])

    class FakeCausalLM:
        backbone = plain
        name = "fake"

    with pytest.raises(ValueError, match="exposes no `transformer_layers`"):
        num_hidden_layers(FakeCausalLM())
