"""The runner across tokenizers (issue 21): a student with its own
tokenizer (`data.student_tokenizer`), the two-tokenizer `Datasets`, the
`CrossTokenizerTeacher` of each variant, and the run-time refusals.

Tiny models built from architectures at tiny widths, SentencePiece
tokenizers trained on a few sentences, a whitespace chunker instead of
spaCy. The runs of the shipped recipes are
`tests/runner/test_cross_tokenizer_runs.py` (the full tier); the
`Datasets` test here is in the full tier too (minutes of tf.data tracing).
"""

import re

import numpy as np
import pytest

from keras_mta.data.loaders import Example
from keras_mta.models import CrossTokenizerTeacher
from keras_mta.recipe import RecipeError
from keras_mta.recipe import cross_tokenizer_conflicts
from keras_mta.recipe import recipe_from_dict
from keras_mta.runner import datasets as runner_datasets
from keras_mta.runner.datasets import Datasets
from keras_mta.runner.models import load_models
from keras_mta.runner.models import make_plan
from keras_mta.runner.models import teacher_source_of
from keras_mta.runner.setup import cross_tokenizer_data
from keras_mta.runner.training import build_variant_model

LLAMA = {
    "class": "LlamaBackbone",
    "num_layers": 2,
    "num_query_heads": 2,
    "num_key_value_heads": 1,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "vocabulary_size": 1,
}
WORDS = (
    "the cat sat on a mat while birds sang above green hills and rivers "
    "ran through quiet valleys where people walked slowly home at night"
).split()


def _examples(count=12):
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        prompt = f"### Instruction:\nSay {' '.join(rng.choice(WORDS, 4))}.\n"
        response = " ".join(rng.choice(WORDS, 8)) + "."
        out.append(Example(prompt, response, (response,), f"test:{i}"))
    return out


class _WhitespaceChunker:
    """Words and two-word phrases from whitespace (no spaCy)."""

    def chunk(self, texts):
        out = []
        for text in texts:
            words = [m.span() for m in re.finditer(r"\S+", text)]
            phrases = [
                (words[i][0], words[i + 1][1])
                for i in range(0, len(words) - 1, 2)
            ]
            out.append({"words": words, "phrases": phrases})
        return out


def _recipe(**data):
    fields = {
        "tokenizer": "sentencepiece:56",
        "student_tokenizer": "sentencepiece:44",
        "sequence_length": 32,
        "max_prompt_length": 16,
        "max_word_units": 12,
        "max_phrase_units": 6,
        **data,
    }
    return recipe_from_dict(
        {
            "teacher": {"architecture": LLAMA},
            "student": {"architecture": LLAMA},
            "data": fields,
            "plan": {"teacher_layers": [1, 2], "student_layers": [1, 2]},
            "distillation": {"divergence": "uld", "compare": ["mta"]},
            "training": {"batch_size": 4, "steps_per_epoch": 1},
        }
    )


@pytest.fixture(scope="module")
def cross_run(tmp_path_factory):
    recipe = _recipe()
    examples = _examples()
    teacher, student = load_models(
        recipe, examples, str(tmp_path_factory.mktemp("run"))
    )
    return recipe, examples, teacher, student


@pytest.mark.once
def test_the_student_gets_its_own_tokenizer(cross_run, tmp_path):
    recipe, _, teacher, student = cross_run
    shared = (teacher, student)
    sizes = [m.preprocessor.tokenizer.vocabulary_size() for m in shared]
    assert sizes == [56, 44]
    assert teacher.backbone.vocabulary_size == 56
    assert student.backbone.vocabulary_size == 44
    # The runner's teacher of every variant reads its own tokens.
    source = teacher_source_of(teacher, student)
    assert isinstance(source, CrossTokenizerTeacher)
    plan = make_plan(recipe, teacher, student)
    model = build_variant_model(recipe, "mta", teacher, student, plan, 1)
    assert isinstance(model.teacher_source, CrossTokenizerTeacher)
    assert {"teacher_token_ids", "teacher_positions"} <= set(model.input_keys)
    # Without data.student_tokenizer both read the same tokens, as before.
    recipe = _recipe(student_tokenizer="")
    shared = load_models(recipe, _examples(), str(tmp_path))
    assert teacher_source_of(*shared) is shared[0]


# Minutes on a busy 2-core machine (four tokenizations traced by
# tf.data): the full tier, beside the recipes' runs.
@pytest.mark.large
@pytest.mark.once
def test_datasets_pair_the_teachers_tokens(cross_run, monkeypatch):
    recipe, examples, teacher, student = cross_run
    # Under tensorflow, the suite's `clear_session` after every test deleted
    # the tf-text SentencePiece resources of the module's tokenizers (see
    # tests/preprocessing/offline_tokenizers.py): keras-hub makes them anew.
    for model in (teacher, student):
        model.preprocessor.tokenizer._sentence_piece = None
    monkeypatch.setattr(
        runner_datasets, "span_cache_of", lambda recipe: _WhitespaceChunker()
    )
    datasets = Datasets(recipe, examples, examples[:4], student, teacher)
    assert datasets.cross_tokenizer
    x = datasets.train_arrays[0]
    assert {
        "teacher_token_ids",
        "teacher_padding_mask",
        "teacher_word_units",
        "teacher_phrase_units",
        "teacher_positions",
    } <= set(x)
    assert x["teacher_token_ids"].max() < 56 and x["token_ids"].max() < 44
    assert (x["teacher_positions"] >= 0).any()
    # The teacher alone: its own tokens, no teacher_* inputs.
    alone = Datasets(recipe, examples, examples[:4], teacher)
    assert not alone.cross_tokenizer
    assert "teacher_token_ids" not in alone.train_arrays[0]
    # Every input the variant models read is in the arrays.
    plan = make_plan(recipe, teacher, student)
    model = build_variant_model(recipe, "mta", teacher, student, plan, 1)
    assert set(model.input_keys) <= set(x)


@pytest.mark.once
def test_two_presets_that_tokenize_differently_need_a_cross_vocabulary_kd():
    # Two presets with their own tokenizers (no data.student_tokenizer):
    # refused when the data is built, before any training.
    recipe = _recipe(student_tokenizer="", tokenizer="")
    recipe.distillation.divergence = "forward_kl"
    with pytest.raises(RecipeError, match="'uld'"):
        cross_tokenizer_data(recipe, [], [], teacher=None)
    # A teacher cache is no reason to refuse (the teacher is cached on its
    # own tokens): nothing is left to object to.
    recipe.distillation.divergence = "uld"
    recipe.distillation.teacher_cache = "cache"
    assert not cross_tokenizer_conflicts(recipe, "they differ", "share")
