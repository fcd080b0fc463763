"""PreprocessingStatistics: dataset-wide counts, and the check that every
unit kind the alignment reads keeps some unit."""

import keras_hub
import pytest

from keras_mta.preprocessing import DistillationPreprocessor
from keras_mta.preprocessing import PreprocessingStatistics
from keras_mta.preprocessing import TruncationWarning
from tests.preprocessing import offline_tokenizers as ot
from tests.preprocessing.test_distillation_preprocessor import PROMPT
from tests.preprocessing.test_distillation_preprocessor import RESPONSE
from tests.preprocessing.test_distillation_preprocessor import WhitespaceChunker
from tests.preprocessing.test_distillation_preprocessor import dataset

LONG_RESPONSE = " ".join([RESPONSE] * 12)


@pytest.fixture
def preprocessor():
    llama = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer=ot.llama_tokenizer(), sequence_length=64
    )
    return DistillationPreprocessor(llama, chunker=WhitespaceChunker())


def counts(units, kept, overflow=0, truncation=0, empty=0):
    return {
        "units": units,
        "kept": kept,
        "dropped_overflow": overflow,
        "dropped_truncation": truncation,
        "dropped_empty": empty,
        "clipped": 0,
    }


def test_check_units_names_the_kind_the_counts_and_the_fixes():
    stats = PreprocessingStatistics(
        examples=3, sequence_length=64, max_word_units=64, max_phrase_units=8
    )
    stats.update(
        {
            "word_units/units": [4, 4, 4],
            "word_units/kept": [4, 3, 4],
            "word_units/dropped_truncation": [0, 1, 0],
            "phrase_units/units": [2, 2, 1],
            "phrase_units/kept": [0, 0, 0],
            "phrase_units/dropped_truncation": [2, 1, 1],
            "phrase_units/dropped_empty": [0, 1, 0],
        }
    )
    stats.check_units(["word_units"])
    stats.check_units([])
    with pytest.raises(ValueError) as error:
        stats.check_units(("word_units", "phrase_units"), name="train")
    message = str(error.value)
    for part in (
        "'train'",
        "`phrase_units`",
        "3 examples",
        "5 units found",
        "0 over max_units=8",
        "4 cut off by truncation to sequence_length=64",
        "1 covering no token",
        "span preprocessing",
        "mta_weight=0",
        "units='word'",
    ):
        assert part in message, (part, message)


def test_check_units_wants_counted_statistics():
    with pytest.raises(ValueError, match="compute_statistics"):
        PreprocessingStatistics().check_units(["word_units"])
    stats = PreprocessingStatistics()
    stats.units["phrase_units"] = counts(units=0, kept=0)
    with pytest.raises(ValueError, match="0 units found"):
        stats.check_units(["phrase_units"])


def test_a_normal_dataset_keeps_every_unit_kind(preprocessor):
    examples = [{"prompt": PROMPT, "response": RESPONSE}] * 3
    preprocessor.prepare_dataset(examples, batch_size=2)
    preprocessor.statistics.check_units(("word_units", "phrase_units"))


def test_a_dataset_whose_phrases_are_all_cut_off_raises(preprocessor):
    # Every phrase lies at the end of a response that truncation cuts off.
    text = PROMPT + LONG_RESPONSE
    chunked = WhitespaceChunker().chunk([text])[0]
    examples = [
        {
            "prompt": PROMPT,
            "response": LONG_RESPONSE,
            "word_spans": chunked["words"],
            "phrase_spans": chunked["phrases"][-2:],
        }
    ] * 4
    with pytest.warns(UserWarning, match="truncated"):
        preprocessor.prepare_dataset(examples, batch_size=2, name="toy")
    stats = preprocessor.statistics
    assert stats.units["phrase_units"]["kept"] == 0
    assert stats.units["phrase_units"]["dropped_truncation"] == 8
    stats.check_units(["word_units"])  # units="word" trains
    with pytest.raises(ValueError, match="phrase_units") as error:
        stats.check_units(("word_units", "phrase_units"), name="toy")
    assert "8 cut off by truncation" in str(error.value)


@pytest.mark.once
def test_units_covering_no_token_alone_warn():
    stats = PreprocessingStatistics(examples=1, sequence_length=64)
    stats.update({"word_units/units": [2], "word_units/kept": [1]})
    assert not stats.has_losses()
    stats.update({"word_units/dropped_empty": [1]})
    assert stats.has_losses()
    with pytest.warns(TruncationWarning, match="1 cover no token"):
        stats.report()


@pytest.mark.once
def test_a_text_the_tokenizer_alters_is_counted_and_warned():
    # keras-hub's byte-pair tokenizer turns its placeholder "ĴA" into
    # `<|endoftext|>`: no token lies in the text, the response keeps only
    # the end token as target and no unit.
    gpt2 = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=ot.gpt2_tokenizer(), sequence_length=64
    )
    preprocessor = DistillationPreprocessor(gpt2)
    pairs = [("Q: Name one.\nA: ", "Fine ĴA"), ("Q: Two?\nA: ", "Apples.")]
    # compute_statistics: one trace (prepare_dataset adds the map's).
    with pytest.warns(TruncationWarning, match="could not be located"):
        stats = preprocessor.compute_statistics(dataset(pairs))
    assert stats.unaligned_examples == 1
    assert stats.teacher_unaligned_examples == 0
    # Every word of the altered text (prompt included) covers no token.
    assert stats.units["word_units"]["dropped_empty"] == 6
    assert "1 examples whose tokens could not be located" in str(stats)
