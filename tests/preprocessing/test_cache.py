import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keras_mta.data import load_examples
from keras_mta.preprocessing import SpanCache
from keras_mta.preprocessing import SpanCacheWarning
from keras_mta.preprocessing import SpanStatistics
from keras_mta.preprocessing import build_span_cache
from keras_mta.preprocessing import cache as cache_module
from keras_mta.preprocessing.chunking import PhraseChunker
from tests.shared_data import shared_file

# Backend-independent (span cache files, spaCy and NumPy only):
# scripts/test.sh runs it under one backend.
pytestmark = pytest.mark.once

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chunker():
    chunker = PhraseChunker()
    chunker.nlp  # load the pipeline once for the module
    # Keep the pipeline out of the per-test `gc.collect` of the suite.
    gc.freeze()
    yield chunker
    gc.unfreeze()


@pytest.fixture(scope="module")
def texts():
    """The first 12 full training texts of the t0 mix (with duplicates)."""
    examples, _ = load_examples(shared_file("t0_mix", "train.jsonl"), limit=10)
    texts = [example.text for example in examples]
    return texts + texts[:2]


@pytest.fixture(scope="module")
def expected(chunker, texts):
    return chunker.chunk(texts)


class CountingChunker(PhraseChunker):
    """A PhraseChunker that counts the texts it chunks; it may crash."""

    def __init__(self, *args, crash_after=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunked = 0
        self.crash_after = crash_after

    def iter_chunk(self, texts):
        for spans in super().iter_chunk(texts):
            if self.crash_after is not None and self.chunked >= (
                self.crash_after
            ):
                raise KeyboardInterrupt("simulated crash")
            self.chunked += 1
            yield spans


def counting(chunker, **kwargs):
    counter = CountingChunker(chunker.nlp, **kwargs)
    assert counter.fingerprint() == chunker.fingerprint()
    return counter


def shard_files(cache):
    return sorted(Path(cache.directory).glob("shard-*.spans"))


def test_first_pass_chunks_then_second_pass_reads(
    chunker, texts, expected, tmp_path
):
    first = SpanCache(tmp_path, chunker=counting(chunker), shard_size=4)
    assert first.get_or_compute(texts) == expected
    assert first.chunker.chunked == 10  # duplicates chunked once
    assert first.statistics.cache_misses == 12
    assert len(shard_files(first)) == 3
    assert (Path(first.directory) / "settings.json").exists()

    second = SpanCache(tmp_path, chunker=counting(chunker))
    assert second.get_or_compute(texts) == expected
    assert second.chunker.chunked == 0
    assert second.statistics.cache_hits == 12
    assert second.statistics.cache_misses == 0
    # Only texts missing from the cache are chunked.
    more = ["A brand new sentence about a cat."]
    assert second.get_or_compute(more + texts[:3])[1:] == expected[:3]
    assert second.chunker.chunked == 1
    assert second.statistics.cache_hits == 3


def test_second_pass_does_not_call_spacy(
    chunker, texts, expected, tmp_path, monkeypatch
):
    SpanCache(tmp_path, chunker=chunker).get_or_compute(texts)
    import spacy

    def fail(*args, **kwargs):
        raise AssertionError("spaCy was called on a complete cache")

    monkeypatch.setattr(spacy, "load", fail)
    monkeypatch.setattr(PhraseChunker, "_local_spans", fail)
    monkeypatch.setattr(PhraseChunker, "_set_nlp", fail)
    fresh = PhraseChunker()  # a new chunker, pipeline not loaded
    assert SpanCache(tmp_path, chunker=fresh).get_or_compute(texts) == (
        expected
    )
    assert SpanCache(tmp_path).get_or_compute(texts) == expected
    with pytest.raises(AssertionError, match="spaCy was called"):
        SpanCache(tmp_path, chunker=fresh).get_or_compute(["Not cached."])


# A fresh interpreter (about a minute under load); everyday,
# test_second_pass_does_not_call_spacy checks that reading a complete cache
# never calls spaCy, and tests/test_imports.py that the package imports
# without it.
@pytest.mark.large
def test_complete_cache_is_read_without_importing_spacy(
    chunker, texts, expected, tmp_path
):
    SpanCache(tmp_path, chunker=chunker).get_or_compute(texts)
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = textwrap.dedent(
        f"""
        import json, sys
        from keras_mta.preprocessing import SpanCache
        texts = json.load(open({str(tmp_path / "texts.json")!r}))
        spans = SpanCache({str(tmp_path)!r}).get_or_compute(texts)
        assert "spacy" not in sys.modules, "spaCy was imported"
        print(json.dumps(spans))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        # A fresh interpreter imports TensorFlow and keras-hub: 20 s quiet,
        # over two minutes beside the other backends' full tier.
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    spans = json.loads(result.stdout.strip().splitlines()[-1])
    assert [
        {k: [tuple(s) for s in v] for k, v in d.items()} for d in spans
    ] == (expected)


@pytest.mark.parametrize(
    "damage",
    ["truncate", "flip", "foreign", "empty", "other_settings", "bad_json"],
)
def test_damaged_shard_is_detected_and_rebuilt(
    chunker, texts, expected, tmp_path, damage
):
    cache = SpanCache(tmp_path, chunker=chunker, shard_size=5)
    cache.get_or_compute(texts)
    victim = shard_files(cache)[0]
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        position = len(data) - 10
        victim.write_bytes(
            data[:position] + bytes([data[position] ^ 1]) + data[position + 1 :]
        )
    elif damage == "foreign":
        victim.write_bytes(b"\x89PNG\r\n\x1a\n not a span cache at all")
    elif damage == "empty":
        victim.write_bytes(b"")
    elif damage == "other_settings":
        entries = cache_module.decode_shard(data, cache.fingerprint)
        victim.write_bytes(cache_module.encode_shard("other", entries))
    elif damage == "bad_json":
        body = b'{"fingerprint": 1, "entries": [["k", [1], []]]}'
        header = cache_module._digest(body), len(body)
        victim.write_bytes(
            f"keras-mta-spans 1 {header[0]} {header[1]}\n".encode() + body
        )

    again = SpanCache(tmp_path, chunker=counting(chunker), shard_size=5)
    with pytest.warns(SpanCacheWarning, match=victim.name):
        assert again.get_or_compute(texts) == expected
    assert 0 < again.chunker.chunked <= 5  # only the damaged shard's texts
    # Rebuilt: a third pass reads everything, silently.
    third = SpanCache(tmp_path, chunker=counting(chunker))
    assert third.get_or_compute(texts) == expected
    assert third.chunker.chunked == 0


def test_interrupted_run_resumes(chunker, texts, expected, tmp_path):
    crashing = counting(chunker, crash_after=6)
    cache = SpanCache(tmp_path, chunker=crashing, shard_size=4)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute(texts)
    assert len(shard_files(cache)) == 1  # the first 4 texts are safe
    assert not list(Path(cache.directory).glob(".tmp-*"))

    resumed = SpanCache(tmp_path, chunker=counting(chunker), shard_size=4)
    assert resumed.get_or_compute(texts) == expected
    assert resumed.chunker.chunked == 6  # 10 distinct texts, 4 were cached
    assert resumed.statistics.cache_hits == 4 + 2  # with the duplicates


def test_crash_while_writing_leaves_no_valid_looking_file(
    chunker, texts, expected, tmp_path, monkeypatch
):
    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(cache_module.os, "replace", crash)
    cache = SpanCache(tmp_path, chunker=chunker, shard_size=4)
    with pytest.raises(OSError, match="disk gone"):
        cache.get_or_compute(texts)
    monkeypatch.undo()
    assert os.listdir(cache.directory) == []  # no shard, no temporary file
    assert SpanCache(tmp_path, chunker=chunker).get_or_compute(texts) == (
        expected
    )


def test_stray_temporary_file_is_ignored(chunker, texts, expected, tmp_path):
    cache = SpanCache(tmp_path, chunker=chunker)
    cache.get_or_compute(texts[:2])
    (Path(cache.directory) / ".tmp-123-abc.partial").write_bytes(b"keras-m")
    again = SpanCache(tmp_path, chunker=counting(chunker))
    assert again.get_or_compute(texts[:2]) == expected[:2]
    assert again.chunker.chunked == 0


def test_settings_change_gives_a_separate_cache(chunker, tmp_path):
    cache = SpanCache(tmp_path, chunker=chunker)
    cache.get_or_compute(["The cat sat on the mat."])

    class OtherRules(PhraseChunker):
        def settings(self):
            return dict(super().settings(), algorithm=-1)

    other = SpanCache(tmp_path, chunker=OtherRules(chunker.nlp))
    assert other.directory != cache.directory
    other.get_or_compute(["The cat sat on the mat."])
    assert other.statistics.cache_misses == 1


def test_build_span_cache_statistics(chunker, texts, expected, tmp_path):
    stats = build_span_cache(texts, tmp_path, chunker=chunker, progress=False)
    assert isinstance(stats, SpanStatistics)
    assert stats.texts == 12
    assert stats.phrases == sum(len(s["phrases"]) for s in expected)
    assert stats.words == sum(len(s["words"]) for s in expected)
    assert stats.phrases_per_text == pytest.approx(stats.phrases / 12)
    assert (stats.cache_hits, stats.cache_misses) == (0, 12)
    again = build_span_cache(texts, tmp_path, chunker=chunker)
    assert (again.cache_hits, again.cache_misses) == (12, 0)
    assert "texts: 12" in str(again)


def test_progress_bar(chunker, tmp_path, capsys):
    cache = SpanCache(tmp_path, chunker=chunker)
    cache.get_or_compute(["One cat.", "Two dogs."], progress=True)
    assert "chunking" in capsys.readouterr().err
    cache.get_or_compute(["One cat.", "Three birds."], progress=None)
    assert "chunking" not in capsys.readouterr().err


def test_unusual_texts_round_trip(chunker, tmp_path):
    odd = ["", " ", "\ud800 lone surrogate", "日本語 😀", "a\x00b", "é" * 50]
    spans = SpanCache(tmp_path, chunker=chunker).get_or_compute(odd)
    again = SpanCache(tmp_path, chunker=counting(chunker))
    assert again.get_or_compute(odd) == spans
    assert again.chunker.chunked == 0


def test_shard_format_round_trip_and_checks():
    entries = {
        "k1": {"phrases": [(0, 3)], "words": [(0, 1), (1, 3)]},
        "k0": {"phrases": [], "words": []},
    }
    data = cache_module.encode_shard("fp", entries)
    assert data.startswith(b"keras-mta-spans 1 ")
    assert cache_module.decode_shard(data, "fp") == entries
    with pytest.raises(ValueError, match="other chunker settings"):
        cache_module.decode_shard(data, "another")
    with pytest.raises(ValueError, match="truncated"):
        cache_module.decode_shard(data[:-1], "fp")
    with pytest.raises(ValueError, match="checksum"):
        cache_module.decode_shard(data.replace(b'"k1"', b'"k2"'), "fp")


def test_default_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_MTA_CACHE_DIR", str(tmp_path))
    assert cache_module.default_cache_dir() == str(tmp_path / "spans")
    monkeypatch.delenv("KERAS_MTA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_module.default_cache_dir() == str(
        tmp_path / "keras-mta" / "spans"
    )


def test_invalid_arguments(chunker, tmp_path):
    with pytest.raises(ValueError, match="shard_size"):
        SpanCache(tmp_path, chunker=chunker, shard_size=0)
    with pytest.raises(TypeError, match="item 0"):
        SpanCache(tmp_path, chunker=chunker).get_or_compute([None])
    with pytest.raises(TypeError, match=r"got bytes: decode it first"):
        SpanCache(tmp_path, chunker=chunker).get_or_compute(b"The cat.")
    with pytest.raises(TypeError, match=r"item 0 is bytes: decode it first"):
        SpanCache(tmp_path, chunker=chunker).get_or_compute([b"The cat."])
