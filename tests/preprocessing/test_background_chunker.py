import os

import pytest

from keras_mta.preprocessing.background_chunker import BackgroundChunker
from keras_mta.preprocessing.background_chunker import _split
from tests.preprocessing.test_distillation_preprocessor import WhitespaceChunker

# Worker processes (spaCy in each) are checked in the full tier:
# tests/generation/test_student_responses.py::
# test_worker_processes_give_the_spans_of_one_process.


@pytest.mark.once
def test_parts_are_contiguous_even_and_in_order():
    assert _split(list("abcde"), 2) == [list("abc"), list("de")]
    assert _split(list("abcdef"), 3) == [list("ab"), list("cd"), list("ef")]
    assert _split(list("ab"), 4) == [["a"], ["b"]]
    assert _split([], 3) == [[]]


@pytest.mark.once
def test_thread_gives_the_chunkers_spans():
    chunker = WhitespaceChunker()
    texts = ["one two three", "four five"]
    with BackgroundChunker(chunker) as background:
        assert background.processes == 0
        assert background.submit(texts).result() == chunker.chunk(texts)
        assert background.chunk(texts) == chunker.chunk(texts)
    assert background._thread is None  # closed


@pytest.mark.once
def test_settings_are_checked():
    assert BackgroundChunker(WhitespaceChunker(), 3).processes == 3
    assert BackgroundChunker(WhitespaceChunker(), -1).processes == (
        0 if (os.cpu_count() or 1) == 1 else os.cpu_count()
    )
    assert BackgroundChunker(WhitespaceChunker(), 2).get_config() == {
        "n_process": 2,
        "start_method": None,
    }
    with pytest.raises(TypeError, match="chunk"):
        BackgroundChunker(object())
    for n_process in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n_process"):
            BackgroundChunker(WhitespaceChunker(), n_process)
