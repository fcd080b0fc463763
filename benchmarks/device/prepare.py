"""Prepare the GPU kit's distillation data here, on the CPU, as arrays.

The lent machine has neither spaCy nor a keras-hub tokenizer that works
without tensorflow-text, so everything text-side happens here, with the
project's own preprocessing: the toy world (`keras_mta.data.toy_world`,
the embedded default run's data), a SentencePiece tokenizer trained on it
(`train_sentencepiece_tokenizer`), spaCy word and phrase units through a
`SpanCache`, and `DistillationPreprocessor` over a
`LlamaCausalLMPreprocessor`, as `keras-mta distill` does. The arrays are
saved under `runs/device_kit/` (ignored by git, carried to the device):

- `train.npz`: `token_ids`, `padding_mask`, `word_units`, `phrase_units`,
  `y`, `sample_weight` of every training row (the teacher learns from all
  of them, the students from the first `meta["student_rows"]`);
- `valid.npz`: the same of the validation rows (validation loss), and
  `prompt_ids` / `prompt_mask`, the validation prompts as keras-hub's
  `generate` takes them (start token, no end token, right padding);
- `meta.json`: sizes and token ids; `references.json` (the validation
  responses) and `tokenizer.model` stay here for scoring (`score.py`).

    python benchmarks/device/prepare.py            # GPU size, minutes
    python benchmarks/device/prepare.py --tiny     # test size, seconds
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kit  # noqa: E402

GPU = {
    "num_train": 12000,
    "num_valid": 256,
    # The toy world is small (about 2,200 distinct prompts in 12,000
    # rows): the teacher sees all of it, the students a tenth, so that the
    # teacher knows what a student's own data lacks (issue 22, item 1).
    "student_fraction": 0.1,
    "seq_len": 128,
    "max_prompt_length": 96,
    "vocabulary_size": 256,
    "max_word_units": 32,
    "max_phrase_units": 16,
}
TINY = {
    "num_train": 48,
    "num_valid": 8,
    "student_fraction": 0.5,
    "seq_len": 128,
    "max_prompt_length": 96,
    "vocabulary_size": 160,
    "max_word_units": 32,
    "max_phrase_units": 16,
}
TRAIN_KEYS = (
    "token_ids",
    "padding_mask",
    "word_units",
    "phrase_units",
    "y",
    "sample_weight",
)


def unit_arrays(preprocessor, examples):
    """The `DistillationPreprocessor` outputs of `examples` as NumPy."""
    import numpy as np

    x, y, sample_weight = preprocessor(
        {
            "prompt": [e.prompt for e in examples],
            "response": [e.response for e in examples],
        }
    )
    arrays = {k: np.asarray(v) for k, v in x.items()}
    arrays["padding_mask"] = arrays["padding_mask"].astype("int32")
    arrays["y"] = np.asarray(y).astype("int32")
    arrays["sample_weight"] = np.asarray(sample_weight).astype("float32")
    return {k: arrays[k] for k in TRAIN_KEYS}


def prepare(config, out, seed=0):
    """Write the kit's arrays under `out`; return the meta dict."""
    import keras_hub
    import numpy as np

    from keras_mta.data import load_examples
    from keras_mta.data.tokenizers import train_sentencepiece_tokenizer
    from keras_mta.data.toy_world import write_toy_dataset
    from keras_mta.preprocessing import DistillationPreprocessor
    from keras_mta.preprocessing import SpanCache
    from keras_mta.runner.data import truncate_prompts

    out = Path(out)
    train_path, valid_path = write_toy_dataset(
        str(out / "text"),
        num_train=config["num_train"],
        num_valid=config["num_valid"],
        seed=seed,
    )
    train, _ = load_examples(train_path)
    valid, _ = load_examples(valid_path)
    tokenizer = train_sentencepiece_tokenizer(
        [e.text for e in train],
        config["vocabulary_size"],
        str(out / "tokenizer.model"),
    )
    # As `keras-mta distill` does: long prompts keep their first tokens.
    train, _ = truncate_prompts(train, tokenizer, config["max_prompt_length"])
    valid, _ = truncate_prompts(valid, tokenizer, config["max_prompt_length"])
    seq_len = config["seq_len"]
    causal = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer, sequence_length=seq_len
    )
    preprocessor = DistillationPreprocessor(
        causal,
        max_word_units=config["max_word_units"],
        max_phrase_units=config["max_phrase_units"],
        chunker=SpanCache(str(out / "span_cache")),
        sequence_length=seq_len,
    )
    train_arrays = unit_arrays(preprocessor, train)
    valid_arrays = unit_arrays(preprocessor, valid)
    prompts = causal.generate_preprocess(
        [e.prompt for e in valid], sequence_length=seq_len
    )
    valid_arrays["prompt_ids"] = np.asarray(prompts["token_ids"], "int32")
    valid_arrays["prompt_mask"] = np.asarray(prompts["padding_mask"], "int32")
    np.savez_compressed(out / "train.npz", **train_arrays)
    np.savez_compressed(out / "valid.npz", **valid_arrays)
    (out / "references.json").write_text(
        json.dumps([e.response for e in valid], indent=0) + "\n"
    )
    meta = {
        **config,
        "data": "keras_mta.data.toy_world",
        "seed": seed,
        "student_rows": max(
            1, int(round(config["student_fraction"] * len(train)))
        ),
        "vocabulary": int(tokenizer.vocabulary_size()),
        "start_token_id": int(tokenizer.start_token_id),
        "end_token_id": int(tokenizer.end_token_id),
        "pad_token_id": int(tokenizer.pad_token_id),
        "mean_tokens": float(train_arrays["padding_mask"].sum(1).mean()),
        "max_tokens": int(train_arrays["padding_mask"].sum(1).max()),
        "mean_prompt_tokens": float(valid_arrays["prompt_mask"].sum(1).mean()),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", default=str(kit.REPO / kit.DATA_DIR))
    parser.add_argument("--seed", type=int, default=0)
    for key, value in GPU.items():
        kind = float if isinstance(value, float) else int
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, type=kind, default=None)
    args = parser.parse_args(argv)
    config = dict(TINY if args.tiny else GPU)
    for key in config:
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    os.makedirs(args.out, exist_ok=True)
    meta = prepare(config, args.out, seed=args.seed)
    print(json.dumps(meta, indent=2))
    carried = sum(
        kit.folder_size(Path(args.out) / name)
        for name in ("train.npz", "valid.npz", "meta.json")
    )

    def check():
        print(kit.check_budget("prepared arrays", carried, kit.DATA_BUDGET))

    return kit.exit_status(check)


if __name__ == "__main__":
    sys.exit(main())
