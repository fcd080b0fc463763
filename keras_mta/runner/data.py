"""The data of a run: the recipe's JSONL files, prompts cut to length, and
the span cache they are chunked through."""

import dataclasses
import os

from keras_mta.data import load_examples
from keras_mta.data import load_holdout_split
from keras_mta.data.toy_world import TOY_WORLD
from keras_mta.data.toy_world import write_toy_dataset
from keras_mta.preprocessing import PhraseChunker
from keras_mta.preprocessing import SpanCache
from keras_mta.preprocessing import tokenize_with_offsets
from keras_mta.utils import say


def load_data(recipe, output_dir):
    """`(train_examples, valid_examples, test_examples, reports)` of a
    recipe (`test_examples` empty without `data.holdout_test`).

    `builtin:toy-world` writes the project's own English instruction data
    (`keras_mta.data.toy_world`) under `output_dir/data` first. With
    `data.holdout_valid` / `data.holdout_test` the validation (and test)
    examples are held out of `data.train` (`keras_mta.data.holdout_split`).
    """
    paths = {"train": recipe.data.train, "valid": recipe.data.valid}
    if TOY_WORLD in paths.values():
        toy_train, toy_valid = write_toy_dataset(
            os.path.join(output_dir, "data"), seed=recipe.training.seed
        )
        for split, toy in (("train", toy_train), ("valid", toy_valid)):
            if paths[split] == TOY_WORLD:
                paths[split] = toy
    examples, reports = {"test": []}, {}
    data = recipe.data
    if data.holdout_valid or data.holdout_test:
        # Validation (and test) examples held out of data.train, always the
        # same ones (keras_mta.data.holdout_split); the test set is scored
        # by the evaluation entry `test`.
        split, report = load_holdout_split(
            paths["train"],
            valid=data.holdout_valid,
            test=data.holdout_test,
            seed=data.holdout_seed,
            schema=data.schema,
            on_error=data.on_error,
        )
        limit = data.max_examples or None
        examples["train"] = split["train"][:limit]
        examples["test"] = split["test"]
        reports["train"] = report
        say(
            f"train: {report}; held out {len(split['valid'])} validation and"
            f" {len(split['test'])} test examples (seed {data.holdout_seed})"
        )
        if data.holdout_valid:
            examples["valid"] = split["valid"][:limit]
            reports["valid"] = report
            del paths["valid"]
        del paths["train"]
    for split, path in paths.items():
        if not path:
            raise ValueError(
                f"The recipe has no data.{split}: give a JSONL path or "
                f"{TOY_WORLD!r} (or, for data.valid, data.holdout_valid)."
            )
        examples[split], reports[split] = load_examples(
            path,
            schema=recipe.data.schema,
            on_error=recipe.data.on_error,
            limit=recipe.data.max_examples or None,
        )
        say(f"{split}: {reports[split]}")
    return examples["train"], examples["valid"], examples["test"], reports


def truncate_prompts(examples, tokenizer, max_prompt_length):
    """Cut prompts to their first `max_prompt_length` tokens.

    As in the MiniLLM / DistiLLM data processing, a prompt longer than
    `max_prompt_length` tokens keeps its first tokens; the cut falls on a
    token boundary (the tokenizer's character offsets). Returns
    `(examples, number of prompts cut)`; the count is reported, never
    silent.
    """
    if not max_prompt_length or not examples:
        return list(examples), 0
    _, offsets = tokenize_with_offsets(
        tokenizer, [example.prompt for example in examples]
    )
    lengths = offsets.row_lengths().numpy()
    out, cut = [], 0
    for index, example in enumerate(examples):
        if lengths[index] > max_prompt_length:
            end = int(offsets[index][max_prompt_length - 1][1])
            example = dataclasses.replace(example, prompt=example.prompt[:end])
            cut += 1
        out.append(example)
    return out, cut


def span_cache_of(recipe):
    """The recipe's `SpanCache` (spaCy is loaded only for missing texts)."""
    chunker = PhraseChunker(pipeline=recipe.data.spacy_pipeline or None)
    return SpanCache(recipe.data.span_cache or None, chunker=chunker)
