"""A deterministic train/valid/test split of one instruction data file.

The paper's recipes read the public Dolly file
(`hf://datasets/databricks/databricks-dolly-15k/...`), which has no split;
MiniLLM and DistiLLM hold out validation and test examples of it. The
split here is a seeded permutation of the file's examples: the first
`test` examples of the permutation are the test set, the next `valid` the
validation set, the rest the training set, each kept in file order. The
same file, counts and seed always give the same split, on every machine
and backend (NumPy's `default_rng`, whose streams NumPy keeps stable).
"""

import numpy as np

SPLITS = ("train", "valid", "test")


def holdout_split(examples, valid=0, test=0, seed=42):
    """Split examples into `{"train", "valid", "test"}` lists.

    Args:
        examples: the examples of one data file, in file order.
        valid: how many examples to hold out as validation data.
        test: how many examples to hold out as the test set.
        seed: seed of the permutation that picks the held-out examples.

    Returns:
        A dict of three lists (`"train"`, `"valid"`, `"test"`), each in
        file order; together they hold every example once.

    Raises:
        ValueError: a negative count, or fewer than `valid + test + 1`
            examples (no training example left).

    Examples:

    >>> split = holdout_split(list(range(10)), valid=2, test=3, seed=0)
    >>> [len(split[name]) for name in ("train", "valid", "test")]
    [5, 2, 3]
    """
    examples = list(examples)
    for name, count in (("valid", valid), ("test", test)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(
                f"The held-out {name} count must be an integer >= 0, got "
                f"{count!r}."
            )
    if valid + test >= len(examples):
        raise ValueError(
            f"Cannot hold out {valid} validation and {test} test examples "
            f"of {len(examples)}: no training example would be left. Lower "
            "data.holdout_valid / data.holdout_test or give more data."
        )
    order = np.random.default_rng(seed).permutation(len(examples))
    picked = {
        "test": order[:test],
        "valid": order[test : test + valid],
        "train": order[test + valid :],
    }
    return {
        name: [examples[i] for i in np.sort(picked[name])] for name in SPLITS
    }


def load_holdout_split(path, valid=0, test=0, seed=42, **load_kwargs):
    """`(split, report)` of one data file: `holdout_split` of its examples.

    Args:
        path: a JSONL path or `hf://datasets/OWNER/NAME/FILE.jsonl` file.
        valid: examples held out as validation data.
        test: examples held out as the test set.
        seed: seed of the permutation.
        **load_kwargs: `schema` and `on_error` of `load_examples` (a
            `limit` would change which examples are held out, so it is
            refused: cut the splits afterwards).

    Returns:
        `({"train", "valid", "test"}: lists of Example, LoadReport)`.
    """
    from keras_mta.data.loaders import load_examples

    if load_kwargs.get("limit"):
        raise ValueError(
            "load_holdout_split reads the whole file (a limit would change "
            "which examples are held out); cut the splits afterwards."
        )
    examples, report = load_examples(path, **load_kwargs)
    return holdout_split(examples, valid=valid, test=test, seed=seed), report
