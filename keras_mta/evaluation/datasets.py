"""The evaluation sets of the field and the ROUGE-L scores of a model on
them, with a recipe's protocol settings (`EvaluationSpec`)."""

import os

from keras_mta.data import load_examples
from keras_mta.data import load_holdout_split
from keras_mta.evaluation.protocol import evaluate_rouge
from keras_mta.utils import say


def evaluation_sets(
    entries,
    valid_examples=None,
    limit=0,
    on_error="raise",
    data=None,
    test_examples=None,
):
    """`{entry: examples}` scored by the ROUGE-L protocol.

    Each entry is `"valid"` (the given `valid_examples`), `"test"` (the
    examples held out of `data.train` by `data.holdout_test`), a JSONL
    path, an `hf://datasets/...` file or a name of `EVALUATION_DATASETS`;
    at most `limit` examples of each are kept (0: all).

    Args:
        entries: the recipe's `evaluation.datasets`.
        valid_examples: the run's validation examples (for `"valid"`).
        limit: keep at most this many examples of each set (0: all).
        on_error: malformed rows, `"raise"` or `"skip"`.
        data: the recipe's `DataSpec` (for `"test"` when `test_examples`
            is None: read and split again).
        test_examples: the run's held-out test examples (for `"test"`;
            `keras_mta.runner.load_data` gives them).
    """
    sets = {}
    for entry in entries:
        if entry == "valid" and valid_examples is not None:
            examples = valid_examples
        elif entry == "test" and test_examples:
            examples = test_examples
        elif entry == "test":
            examples = held_out_test_set(data, on_error=on_error)
        else:
            examples, report = load_examples(
                resolve_evaluation_dataset(entry), on_error=on_error
            )
            say(f"evaluation data {entry}: {report}")
        sets[entry] = list(examples[:limit] if limit else examples)
    return sets


def held_out_test_set(data, on_error="raise"):
    """The `data.holdout_test` examples held out of `data.train` (the same
    ones the run left out of training; `keras_mta.data.holdout_split`)."""
    if data is None or not getattr(data, "holdout_test", 0):
        raise ValueError(
            "The evaluation entry `test` is the test set held out of "
            "data.train; set data.holdout_test (and pass the recipe's data "
            "to evaluation_sets), or name a JSONL file instead."
        )
    split, report = load_holdout_split(
        data.train,
        valid=data.holdout_valid,
        test=data.holdout_test,
        seed=data.holdout_seed,
        schema=data.schema,
        on_error=on_error,
    )
    say(f"evaluation data test: {len(split['test'])} held out of {report}")
    return split["test"]


# Evaluation sets of the field, as laid out under `KERAS_MTA_DATA_DIR`
# (a directory per set, as MiniLLM's data/ folder): name -> file.
EVALUATION_DATASETS = {
    "dolly": "dolly/test.jsonl",
    "selfinst": "selfinst/user_oriented_instructions.jsonl",
    "vicuna": "vicuna/test.jsonl",
    "sinst": "sinst/test.jsonl",
    "uinst": "uinst/test.jsonl",
}

_MINILLM_DATA = (
    "MiniLLM's evaluation data (the data archive linked from "
    "https://github.com/microsoft/LMOps/tree/main/minillm, section "
    "'Data'; the one DistiLLM and the MTA reference evaluate on)"
)
# Where each named set can be had; shown when its file is missing.
EVALUATION_SOURCES = {
    "dolly": (
        "the 500-example Dolly test set of " + _MINILLM_DATA + "; or use "
        "the evaluation entry `test` with data.holdout_test, which holds "
        "out test examples of the public Dolly file"
    ),
    "selfinst": (
        "user_oriented_instructions.jsonl of the Self-Instruct repository "
        "(https://github.com/yizhongw/self-instruct, "
        "human_eval/user_oriented_instructions.jsonl; 252 instructions), "
        "also in " + _MINILLM_DATA
    ),
    "vicuna": "the 80 Vicuna questions of " + _MINILLM_DATA,
    "sinst": "the Super-NaturalInstructions test set of " + _MINILLM_DATA,
    "uinst": "the Unnatural Instructions test set of " + _MINILLM_DATA,
}


def resolve_evaluation_dataset(name_or_path, data_dir=None):
    """A JSONL path from a path or a dataset name of the field.

    Names (`dolly`, `selfinst`, `vicuna`, `sinst`, `uinst`) are looked up
    under `data_dir` (default `$KERAS_MTA_DATA_DIR`, else `data/`); a
    missing file raises `FileNotFoundError` saying where to get it
    (`EVALUATION_SOURCES`).
    """
    if os.path.exists(name_or_path) or name_or_path.startswith("hf://"):
        return name_or_path  # a path, or a Hub file for load_examples
    key = name_or_path.lower().replace("-", "").replace("_", "")
    if key in EVALUATION_DATASETS:
        root = data_dir or os.environ.get("KERAS_MTA_DATA_DIR", "data")
        path = os.path.join(root, EVALUATION_DATASETS[key])
        if os.path.exists(path):
            return path
        raise FileNotFoundError(
            f"Evaluation set {name_or_path!r} is looked up at {path!r}, "
            f"which does not exist. Get it from {EVALUATION_SOURCES[key]}, "
            "as JSONL in the Dolly, prompt/completion, self-instruct or "
            f"Alpaca schema, and put it at {path!r}, or set "
            f"KERAS_MTA_DATA_DIR to the folder holding "
            f"{EVALUATION_DATASETS[key]}."
        )
    raise FileNotFoundError(
        f"No evaluation data at {name_or_path!r}: give a JSONL path, an "
        "hf://datasets/OWNER/NAME/FILE.jsonl file, `valid`, `test` or one "
        f"of the names {sorted(EVALUATION_DATASETS)}."
    )


def rouge_scores(ev, causal_lm, sets, label):
    """`{dataset: EvaluationResult.to_dict()}` of one model, with the
    protocol settings of `ev` (a recipe's `EvaluationSpec`)."""
    out = {}
    for name, examples in sets.items():
        say(f"ROUGE-L of {label} on {name} ({len(examples)} prompts)")
        result = evaluate_rouge(
            causal_lm,
            examples,
            dataset=name,
            seeds=tuple(ev.seeds),
            max_new_tokens=ev.max_new_tokens,
            batch_size=ev.batch_size,
            temperature=ev.temperature,
            top_p=ev.top_p,
        )
        say(f"  {label}: {result}")
        out[name] = result.to_dict(with_predictions=True)
    return out
