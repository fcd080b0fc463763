"""The cross-entropy of a causal LM on validation responses."""

from keras_mta.models.distillation_model import DistillationModel


def validation_model(causal_lm):
    """A compiled `DistillationModel` that scores `causal_lm`'s
    cross-entropy on responses (supervised fine-tuning loss, no teacher);
    it shares `causal_lm`'s weights, so it can be kept and evaluated again
    as they train."""
    model = DistillationModel(None, causal_lm, ablation="sft_only")
    model.compile(optimizer="adam")
    return model


def validation_loss(causal_lm, valid_ds, model=None):
    """Cross-entropy of a model on the validation responses.

    Args:
        causal_lm: a keras-hub `CausalLM`.
        valid_ds: the validation batches `(x, y, sample_weight)`.
        model: optional `validation_model(causal_lm)` to reuse (one
            compile for many evaluations).
    """
    model = model or validation_model(causal_lm)
    logs = model.evaluate(valid_ds, return_dict=True, verbose=0)
    return float(logs["loss"])
