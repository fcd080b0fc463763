import keras
import pytest

from keras_mta.data import Example
from keras_mta.evaluation import DEFAULT_SEEDS
from keras_mta.evaluation import EvaluationResult
from keras_mta.evaluation import evaluate_rouge
from keras_mta.evaluation import generate_responses
from keras_mta.evaluation.protocol import _SWAPS
from keras_mta.evaluation.protocol import _cut
from tests.tiny_models import tiny_gpt2_causal_lm


@pytest.fixture(scope="module")
def causal_lm():
    keras.utils.set_random_seed(0)
    return tiny_gpt2_causal_lm(sequence_length=48)


PROMPTS = ["Name a color.\n", "Say hi:", "A much longer prompt than the rest."]


def test_generation_is_seeded_and_bounded(causal_lm):
    a = generate_responses(
        causal_lm,
        PROMPTS,
        seed=10,
        max_new_tokens=5,
        batch_size=2,
        progress=False,
    )
    b = generate_responses(
        causal_lm,
        PROMPTS,
        seed=10,
        max_new_tokens=5,
        batch_size=2,
        progress=False,
    )
    c = generate_responses(
        causal_lm,
        PROMPTS,
        seed=20,
        max_new_tokens=5,
        batch_size=2,
        progress=False,
    )
    assert a == b
    assert a != c
    for text in a:
        assert isinstance(text, str)
        # Byte-level tokens: 5 tokens are at most 10 bytes, each at most one
        # character (invalid UTF-8 decodes to one replacement character).
        assert len(text) <= 10


def test_seeds_share_one_compiled_generate_function(causal_lm):
    # A fresh sampler for seed 20 (nothing cached for this model) ...
    _SWAPS.pop(causal_lm, None)
    fresh = generate_responses(
        causal_lm, PROMPTS[:1], seed=20, max_new_tokens=3, progress=False
    )
    swap = _SWAPS[causal_lm][(1.0, 1.0)]
    compiled = swap.generate_function
    assert compiled is not None
    # ... draws what the shared sampler, reseeded after another seed, draws,
    # through the same compiled function (no compile per seed).
    generate_responses(
        causal_lm, PROMPTS[:1], seed=10, max_new_tokens=3, progress=False
    )
    again = generate_responses(
        causal_lm, PROMPTS[:1], seed=20, max_new_tokens=3, progress=False
    )
    assert again == fresh
    assert _SWAPS[causal_lm][(1.0, 1.0)] is swap
    assert swap.generate_function is compiled


def test_long_responses_are_cut_to_max_new_tokens(causal_lm):
    tokenizer = causal_lm.preprocessor.tokenizer
    assert _cut(tokenizer, "abcdefgh", 5) == "abcde"
    assert _cut(tokenizer, "abc", 5) == "abc"


def test_sampler_is_restored(causal_lm):
    sampler = causal_lm.sampler
    generate_responses(
        causal_lm, PROMPTS[:1], seed=1, max_new_tokens=2, progress=False
    )
    assert causal_lm.sampler is sampler


def test_evaluate_rouge_over_seeds(causal_lm):
    examples = [Example(p, "blue", ("blue", "red")) for p in PROMPTS]
    result = evaluate_rouge(
        causal_lm,
        examples,
        dataset="toy",
        seeds=(10, 20),
        max_new_tokens=4,
        progress=False,
    )
    assert isinstance(result, EvaluationResult)
    assert result.seeds == (10, 20)
    assert len(result.scores) == 2
    assert len(result.predictions) == 3
    assert 0.0 <= result.mean <= 100.0
    summary = result.to_dict()
    assert summary["num_prompts"] == 3 and summary["dataset"] == "toy"
    assert "toy: ROUGE-L" in str(result)
    assert DEFAULT_SEEDS == (10, 20, 30, 40, 50)


def test_requires_a_preprocessor():
    lm = tiny_gpt2_causal_lm()
    lm.preprocessor = None
    with pytest.raises(ValueError, match="preprocessor"):
        generate_responses(lm, ["x"], seed=1, progress=False)
