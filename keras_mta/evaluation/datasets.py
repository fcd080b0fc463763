"""The evaluation sets of the field and the ROUGE-L scores of a model on
them, with a recipe's protocol settings (`EvaluationSpec`)."""

import os

from keras_mta.data import load_examples
from keras_mta.evaluation.protocol import evaluate_rouge
from keras_mta.utils import say


def evaluation_sets(entries, valid_examples=None, limit=0, on_error="raise"):
    """`{entry: examples}` scored by the ROUGE-L protocol.

    Each entry is `"valid"` (the given `valid_examples`), a JSONL path, an
    `hf://datasets/...` file or a name of `EVALUATION_DATASETS`; at most
    `limit` examples of each are kept (0: all).
    """
    sets = {}
    for entry in entries:
        if entry == "valid" and valid_examples is not None:
            examples = valid_examples
        else:
            examples, report = load_examples(
                resolve_evaluation_dataset(entry), on_error=on_error
            )
            say(f"evaluation data {entry}: {report}")
        sets[entry] = list(examples[:limit] if limit else examples)
    return sets


# Evaluation sets of the field, as laid out under `KERAS_MTA_DATA_DIR`
# (a directory per set, as MiniLLM's data/ folder): name -> file.
EVALUATION_DATASETS = {
    "dolly": "dolly/test.jsonl",
    "selfinst": "selfinst/user_oriented_instructions.jsonl",
    "vicuna": "vicuna/test.jsonl",
    "sinst": "sinst/test.jsonl",
    "uinst": "uinst/test.jsonl",
}


def resolve_evaluation_dataset(name_or_path, data_dir=None):
    """A JSONL path from a path or a dataset name of the field.

    Names (`dolly`, `selfinst`, `vicuna`, `sinst`, `uinst`) are looked up
    under `data_dir` (default `$KERAS_MTA_DATA_DIR`, else `data/`).
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
            "which does not exist. Download it there (JSONL in the Dolly, "
            "prompt/completion or self-instruct schema) or set "
            "KERAS_MTA_DATA_DIR to the folder holding "
            f"{EVALUATION_DATASETS[key]}."
        )
    raise FileNotFoundError(
        f"No evaluation data at {name_or_path!r}: give a JSONL path or one "
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
