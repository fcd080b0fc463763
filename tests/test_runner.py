"""The pieces of `keras_mta.runner` that the end-to-end test
(tests/cli/test_distill_command.py) does not isolate."""

import json

import keras
import pytest

from keras_mta import AlignmentPlan
from keras_mta import load_recipe
from keras_mta.analysis.paired_differences import variant_differences
from keras_mta.analysis.results import paired_rows
from keras_mta.data import Example
from keras_mta.models import NonFiniteError
from keras_mta.runner import EVALUATION_DATASETS
from keras_mta.runner import format_table
from keras_mta.runner import make_optimizer
from keras_mta.runner import resolve_evaluation_dataset
from keras_mta.runner import results_rows
from keras_mta.runner import truncate_prompts
from keras_mta.runner import write_results
from keras_mta.runner.training import RECIPE_REMEDY
from keras_mta.runner.training import build_variant_model
from keras_mta.runner.training import fit
from tests.models import fixtures as F
from tests.shared_data import shared_file
from tests.tiny_models import char_gpt2_tokenizer


def _example(prompt, response="ok"):
    return Example(prompt=prompt, response=response, references=(response,))


def test_truncate_prompts_cuts_on_token_boundaries_and_counts():
    tokenizer = char_gpt2_tokenizer()  # one token per byte (and " t")
    examples = [_example("abcdefgh"), _example("ab"), _example("a tree")]
    out, cut = truncate_prompts(examples, tokenizer, 4)
    assert cut == 2
    assert [e.prompt for e in out] == ["abcd", "ab", "a tre"]
    # Responses are never touched.
    assert [e.response for e in out] == ["ok"] * 3
    same, none = truncate_prompts(examples, tokenizer, 0)
    assert none == 0 and same == examples


def test_evaluation_sets_by_name_and_path(tmp_path, monkeypatch):
    selfinst = shared_file("selfinst", "user_oriented_instructions.jsonl")
    target = tmp_path / EVALUATION_DATASETS["selfinst"]
    target.parent.mkdir(parents=True)
    target.symlink_to(selfinst)
    monkeypatch.setenv("KERAS_MTA_DATA_DIR", str(tmp_path))
    assert resolve_evaluation_dataset("selfinst") == str(target)
    assert resolve_evaluation_dataset("Self-Inst") == str(target)
    assert resolve_evaluation_dataset(str(selfinst)) == str(selfinst)
    with pytest.raises(FileNotFoundError, match="KERAS_MTA_DATA_DIR"):
        resolve_evaluation_dataset("vicuna")
    with pytest.raises(FileNotFoundError, match="dolly"):
        resolve_evaluation_dataset("no-such-set")


def test_optimizer_follows_the_recipe():
    recipe = load_recipe("gpt2-1.5b-to-gpt2-120m")
    optimizer = make_optimizer(recipe.training, steps=100)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.weight_decay == pytest.approx(0.01)
    assert optimizer.global_clipnorm == pytest.approx(1.0)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert float(schedule(0)) == pytest.approx(1e-4)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
    constant = load_recipe(
        "tiny-cpu", ["training.schedule=constant", "training.optimizer=adam"]
    )
    optimizer = make_optimizer(constant.training, steps=10)
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(3e-3)


def test_results_table_and_files(tmp_path):
    results = {
        "recipe": "r",
        "description": "d",
        "backend": "jax",
        "wall_time_s": 12.0,
        "evaluation_datasets": ["valid"],
        "models": [
            {
                "model": "teacher",
                "parameters": 1234,
                "valid_loss": 1.5,
                "wall_time_s": 3.0,
                "rouge_l": {"valid": {"mean": 20.0, "std": 1.25}},
            },
            {
                "model": "student (MTA)",
                "parameters": 99,
                "valid_loss": 2.0,
                "wall_time_s": 1.0,
                "rouge_l": {},
            },
        ],
    }
    rows = results_rows(results)
    assert rows[0]["ROUGE-L valid"] == "20.00 +- 1.25"
    assert rows[1]["ROUGE-L valid"] == "-"
    assert rows[0]["parameters"] == "1,234"
    table = format_table(rows)
    assert table.splitlines()[0].startswith("| model | ROUGE-L valid |")
    json_path, md_path = write_results(results, str(tmp_path))
    assert json.loads(open(json_path).read())["models"][1]["parameters"] == 99
    assert "| student (MTA) | - |" in open(md_path).read()


def test_results_report_greedy_scores_and_paired_differences(tmp_path):
    rows = variant_differences(
        [
            {
                "model": f"student ({role.upper()})",
                "role": role,
                "per_seed": [
                    {
                        "seed": seed,
                        "valid_loss": loss,
                        "rouge_l": {"valid": 20.0 + loss},
                        "rouge_l_greedy": {"valid": 30.0},
                    }
                    for seed, loss in zip((1, 2, 3), losses)
                ],
            }
            for role, losses in (
                ("sft", (0.50, 0.60, 0.70)),
                ("kd", (0.40, 0.52, 0.61)),
            )
        ]
    )
    results = {
        "recipe": "r",
        "backend": "jax",
        "wall_time_s": 1.0,
        "evaluation_datasets": ["valid"],
        "training_seeds": [1, 2, 3],
        "paired_differences": rows,
        "models": [
            {
                "model": "student (KD)",
                "parameters": 9,
                "valid_loss": 0.51,
                "wall_time_s": 1.0,
                "rouge_l": {"valid": {"mean": 20.5, "std": 0.1}},
                "rouge_l_greedy": {"valid": 30.0},
            }
        ],
    }
    assert results_rows(results)[0]["greedy ROUGE-L valid"] == "30.00"
    table = paired_rows(results)
    assert [(r["difference"], r["metric"]) for r in table] == [
        ("KD - SFT", "valid loss"),
        ("KD - SFT", "ROUGE-L valid (sampled)"),
        ("KD - SFT", "ROUGE-L valid (greedy)"),
    ]
    loss = table[0]
    assert loss["mean (paired)"] == "-0.0900"
    assert loss["seeds"] == 3
    assert loss["verdict"] == "distinguishable from zero"
    assert table[2]["verdict"] == "not distinguishable from zero"
    _, md_path = write_results(results, str(tmp_path))
    text = open(md_path).read()
    assert "Paired differences over the training seeds [1, 2, 3]" in text
    assert "| KD - SFT | valid loss | -0.0900 | [" in text


@pytest.mark.once
def test_the_runner_trains_with_the_non_finite_guard():
    recipe = load_recipe("tiny-cpu")
    teacher, student = F.shared_teacher_student()
    plan = AlignmentPlan([2, 3], [1, 2])
    model = build_variant_model(recipe, "mta", teacher, student, plan, 10)
    assert model.nonfinite == "stop"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    class Stops:
        def fit(self, *args, **kwargs):
            raise NonFiniteError.at(
                {"loss": float("nan"), "kd": 1e400}, 0, 2, 2
            )

    with pytest.raises(NonFiniteError) as caught:
        fit(Stops(), None, None, 1, 3, what="the mta student")
    message = str(caught.value)
    assert message.startswith(
        "Training the mta student stopped at epoch 1, batch 3 (optimizer "
        "step 3): the loss term kd=inf is not finite."
    )
    assert message.endswith(RECIPE_REMEDY)
    assert "nonfinite='ignore'" not in message


# About 80 s (a fit and six seeds of generation); the default run of the
# full tier's CLI test shows the same output.
@pytest.mark.large
def test_fit_and_generation_print_no_warning_a_user_cannot_act_on(caplog):
    import logging
    import warnings

    import tensorflow as tf

    from keras_mta.evaluation import generate_responses
    from keras_mta.runner import fit
    from tests.tiny_models import tiny_gpt2_causal_lm

    causal_lm = tiny_gpt2_causal_lm(sequence_length=32)
    causal_lm.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # Raw text: the CausalLM's preprocessor tokenizes it inside `fit`.
    data = tf.data.Dataset.from_tensor_slices(["a tree", "the sea"] * 2)
    data = data.batch(2)
    noise = ("shuffle=True", "retracing")
    # TensorFlow's own logger does not always propagate to the root logger.
    tf_records = []
    handler = logging.Handler()
    handler.emit = tf_records.append
    logging.getLogger("tensorflow").addHandler(handler)
    with caplog.at_level(logging.WARNING):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(causal_lm, data, data, epochs=1, steps_per_epoch=2)
            for seed in (1, 2, 3, 4, 5, 6):
                generate_responses(
                    causal_lm,
                    ["a", "a tree", "the sea is", "b"],
                    seed=seed,
                    max_new_tokens=3,
                    batch_size=3,
                    progress=False,
                )
    logging.getLogger("tensorflow").removeHandler(handler)
    records = list(caplog.records) + tf_records
    messages = [str(w.message) for w in caught]
    messages += [r.getMessage() for r in records]
    assert not [m for m in messages if any(n in m for n in noise)], messages
