import json

import pytest

from keras_mta.data import DataError
from keras_mta.data import format_prompt
from keras_mta.data import load_examples
from tests.shared_data import shared_file

# Backend-independent (file readers only):
# scripts/test.sh runs it under one backend.
pytestmark = pytest.mark.once


def _write(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "parts,schema,count",
    [
        (("t0_mix", "train.jsonl"), "dolly", 6641),
        (("t0_mix", "valid.jsonl"), "dolly", 1438),
        (
            ("selfinst", "user_oriented_instructions.jsonl"),
            "self_instruct",
            252,
        ),
        (("seed_tasks.jsonl",), "self_instruct", 175),
    ],
)
def test_reads_every_shared_file(parts, schema, count):
    examples, report = load_examples(shared_file(*parts))
    assert report.schema == schema
    assert report.skipped == 0
    assert len(examples) == count
    for example in examples:
        assert example.prompt.endswith("### Response:\n")
        assert example.response.strip()
        assert example.references[0] == example.response
        assert example.text == example.prompt + example.response


def test_prompt_template():
    plain = format_prompt("Name a color.")
    assert plain == (
        "Below is an instruction that describes a task. Write a response "
        "that appropriately completes the request.\n\n"
        "### Instruction:\nName a color.\n\n### Response:\n"
    )
    with_input = format_prompt("Translate.", "Bonjour")
    assert "### Input:\nBonjour\n\n### Response:\n" in with_input
    assert "paired with an input" in with_input
    assert format_prompt("Name a color.", "   ") == plain


def test_dolly_context_goes_to_input_block(tmp_path):
    path = _write(
        tmp_path,
        [
            {
                "instruction": "Sum.",
                "context": "1 and 2",
                "response": "3",
                "category": "math",
            }
        ],
    )
    (example,), _ = load_examples(path)
    assert example.prompt == format_prompt("Sum.", "1 and 2")
    assert example.source == f"{path}:1"


def test_prompt_completion_schema(tmp_path):
    path = _write(tmp_path, [{"prompt": "Q: 2+2?\nA:", "completion": " 4"}])
    (example,), report = load_examples(path)
    assert report.schema == "prompt_completion"
    assert example.prompt == "Q: 2+2?\nA:"
    assert example.response == " 4"


MALFORMED = [
    ("{not json", "invalid JSON"),
    (
        {"instruction": "x", "context": "", "response": ""},
        "'response' is empty",
    ),
    (
        {"instruction": "x", "context": "", "response": 3},
        "'response' must be a string",
    ),
    ({"instruction": "x", "context": ""}, "missing field 'response'"),
    ([1, 2], "must be a JSON object"),
    # The JSON escape of a lone surrogate: a `str` UTF-8 cannot hold.
    (
        {"instruction": "x", "context": "", "response": "a\ud800b"},
        "'response' holds a lone surrogate",
    ),
    (
        {"instruction": "x", "context": "\udfff", "response": "ok"},
        "'context' holds a lone surrogate",
    ),
]


@pytest.mark.parametrize("bad,message", MALFORMED)
def test_malformed_rows_are_named_with_file_and_line(tmp_path, bad, message):
    good = {"instruction": "Say hi.", "context": "", "response": "Hi."}
    path = _write(tmp_path, [good, bad, good])
    with pytest.raises(DataError, match=f"data.jsonl:2: .*{message}"):
        load_examples(path)
    examples, report = load_examples(path, on_error="skip")
    assert len(examples) == 2
    assert report.skipped == 1
    assert report.rows == 3
    assert report.problems[0].startswith(f"{path}:2")


def test_invalid_utf8_is_named_with_file_and_line_and_skipped(tmp_path):
    good = json.dumps({"instruction": "Say hi.", "response": "Hi."})
    path = tmp_path / "data.jsonl"
    bad = b'{"instruction": "x", "response": "caf\xe9"}'
    path.write_bytes(good.encode() + b"\n" + bad + b"\n" + good.encode())
    with pytest.raises(DataError, match="data.jsonl:2: invalid UTF-8 at byte"):
        load_examples(path)
    examples, report = load_examples(path, on_error="skip")
    assert len(examples) == 2
    assert (report.rows, report.skipped) == (3, 1)
    assert report.problems[0].startswith(f"{path}:2: invalid UTF-8")


def test_skipping_warns_once(tmp_path, caplog):
    good = {"instruction": "Say hi.", "context": "", "response": "Hi."}
    path = _write(tmp_path, [good, "{", "[", good])
    with caplog.at_level("WARNING"):
        load_examples(path, on_error="skip")
    warnings = [r for r in caplog.records if "Skipped 2 malformed" in r.message]
    assert len(warnings) == 1


def test_self_instruct_bad_instances(tmp_path):
    path = _write(tmp_path, [{"instruction": "x", "instances": []}])
    with pytest.raises(DataError, match="'instances' must be a non-empty"):
        load_examples(path)


def test_unknown_schema_and_no_usable_rows(tmp_path):
    path = _write(tmp_path, [{"question": "?", "answer": "!"}])
    with pytest.raises(DataError, match="cannot tell the schema"):
        load_examples(path)
    with pytest.raises(DataError, match="no usable example"):
        load_examples(path, on_error="skip")
    with pytest.raises(FileNotFoundError):
        load_examples(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="on_error"):
        load_examples(path, on_error="ignore")


def test_limit(tmp_path):
    good = {"instruction": "Say hi.", "context": "", "response": "Hi."}
    path = _write(tmp_path, [good] * 5)
    examples, _ = load_examples(path, limit=2)
    assert len(examples) == 2


def test_hub_dataset_handle_reads_the_hub_cache_offline(tmp_path, monkeypatch):
    """The real `hf_hub_download` path, served from a Hub cache the test
    writes (the layout huggingface_hub keeps: refs/main names the
    snapshot), with the network forbidden."""
    import huggingface_hub.constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "datasets--someone--dolly-mini"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit / "data"
    snapshot.mkdir(parents=True)
    rows = [
        {"instruction": "Name a fruit.", "context": "", "response": "Apple."},
        {"instruction": "Name a color.", "context": "", "response": "Red."},
    ]
    (snapshot / "train.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows)
    )
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub")
    )
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    examples, report = load_examples(
        "hf://datasets/someone/dolly-mini/data/train.jsonl"
    )
    assert [e.response for e in examples] == ["Apple.", "Red."]
    assert report.path.endswith("train.jsonl")
    with pytest.raises(ValueError, match="hf://datasets/OWNER/NAME"):
        load_examples("hf://datasets/someone")


def test_alpaca_rows_the_layout_of_minillm_evaluation_files(tmp_path):
    rows = [
        {"instruction": "Add.", "input": "1 + 1", "output": "2"},
        {"instruction": "Greet.", "input": "", "output": "Hello."},
    ]
    examples, report = load_examples(_write(tmp_path, rows))
    assert report.schema == "alpaca"
    assert [e.response for e in examples] == ["2", "Hello."]
    assert "1 + 1" in examples[0].prompt
    with pytest.raises(DataError, match="field 'output' is empty"):
        load_examples(_write(tmp_path, [{"instruction": "x", "output": ""}]))
