"""`keras-mta evaluate` loads its model as recipes do (one loader): preset
directories, and GGUF handles such as `gguf:smollm2-135m-instruct`."""

import json

import pytest

from keras_mta.cli.main import build_parser
from keras_mta.models import loading
from keras_mta.runner import load_model
from tests.tiny_models import tiny_gpt2_causal_lm


def _data(tmp_path):
    path = tmp_path / "valid.jsonl"
    rows = [
        {"instruction": "Say hi.", "context": "", "response": "hi"},
        {"instruction": "Say bye.", "context": "", "response": "bye"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _evaluate(argv):
    args = build_parser().parse_args(argv)
    return args.func(args)


def _protocol(data, output):
    return [
        "--data",
        str(data),
        "--seeds",
        "1",
        "--max-new-tokens",
        "2",
        "--max-examples",
        "1",
        "--output",
        str(output),
    ]


def test_gguf_handle_goes_through_the_recipe_loader(tmp_path, monkeypatch):
    handles = []

    def fake_from_gguf(handle):
        handles.append(handle)
        return tiny_gpt2_causal_lm(sequence_length=32, seed=0)

    monkeypatch.setattr(loading, "from_gguf", fake_from_gguf)
    output = tmp_path / "out.json"
    results = _evaluate(
        ["evaluate", "gguf:smollm2-135m-instruct"]
        + _protocol(_data(tmp_path), output)
    )
    assert handles == ["gguf:smollm2-135m-instruct"]
    (result,) = results.values()
    assert result["num_prompts"] == 1
    written = json.loads(output.read_text())
    assert written["preset"] == "gguf:smollm2-135m-instruct"


def test_preset_directory_and_missing_directory(tmp_path):
    preset = tmp_path / "student"
    tiny_gpt2_causal_lm(sequence_length=32).save_to_preset(str(preset))
    model = load_model(str(preset))
    assert model.preprocessor is not None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"))


@pytest.mark.large
def test_packaged_smollm2_gguf_evaluates(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_MTA_CACHE_DIR", str(tmp_path / "cache"))
    results = _evaluate(
        ["evaluate", "gguf:smollm2-135m-instruct"]
        + _protocol(_data(tmp_path), tmp_path / "out.json")
    )
    (result,) = results.values()
    assert result["num_prompts"] == 1
