"""The generation + ROUGE-L evaluation protocol of the distillation field.

As in MiniLLM, DistiLLM, DSKD and the MTA reference: sample a response for
every prompt (temperature 1.0, top-p 1.0, at most 384 new tokens, stop at the
end token), score it with ROUGE-L F1 (stemmer, maximum over references,
times 100), repeat for seeds 10, 20, 30, 40, 50, and report the mean and the
standard deviation over seeds.
"""

import dataclasses
import logging
import math
import weakref

import keras_hub
import numpy as np
from tqdm.auto import tqdm

from keras_mta.evaluation.rouge import rouge_l
from keras_mta.utils import is_quiet

DEFAULT_SEEDS = (10, 20, 30, 40, 50)


@dataclasses.dataclass
class EvaluationResult:
    """ROUGE-L of one model on one dataset over several seeds.

    Attributes:
        dataset: the dataset's name.
        seeds: the sampling seeds.
        scores: mean ROUGE-L per seed.
        num_prompts: number of prompts scored per seed.
        predictions: the responses generated with the first seed.
    """

    dataset: str
    seeds: tuple
    scores: list
    num_prompts: int
    predictions: list = dataclasses.field(default_factory=list)

    @property
    def mean(self):
        return float(np.mean(self.scores))

    @property
    def std(self):
        return float(np.std(self.scores))

    def to_dict(self, with_predictions=False):
        out = {
            "dataset": self.dataset,
            "seeds": list(self.seeds),
            "scores": [float(s) for s in self.scores],
            "mean": self.mean,
            "std": self.std,
            "num_prompts": self.num_prompts,
        }
        if with_predictions:
            out["predictions"] = list(self.predictions)
        return out

    def __str__(self):
        return (
            f"{self.dataset}: ROUGE-L {self.mean:.2f} +- {self.std:.2f} "
            f"({self.num_prompts} prompts, seeds {list(self.seeds)})"
        )


def _token_lists(tokenizer, texts):
    tokens = tokenizer(texts)
    if hasattr(tokens, "to_list"):
        tokens = tokens.to_list()
    return [list(np.asarray(t).tolist()) for t in tokens]


def _max_sequence_length(causal_lm):
    backbone = causal_lm.backbone
    for name in ("max_sequence_length", "sequence_length"):
        value = getattr(backbone, name, None)
        if value:
            return int(value)
    return None


class _GenerateRetracingFilter(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning about
    `generate_step`, and nothing else.

    Under the TensorFlow backend the protocol retraces `generate_step` by
    design: each sampling setting has its own sampler (keras-hub bakes
    the sampler into the traced function; the seeds share it, see
    `seeded_swap`), and prompts are batched by length, so each batch has its own
    `max_length` (the shortest generation that fits; traced once per
    length, as JAX compiles once per shape). Padding every batch to one
    length would change the sampled responses and the scores; the warning
    asks the user for nothing they can change.
    """

    def filter(self, record):
        message = record.getMessage()
        return not (
            "triggered tf.function retracing" in message
            and "generate_step" in message
        )


def generate_responses(
    causal_lm,
    prompts,
    seed,
    max_new_tokens=384,
    batch_size=8,
    temperature=1.0,
    top_p=1.0,
    progress=True,
):
    """Sample one response per prompt with a keras-hub `CausalLM`.

    Prompts are sorted by length and batched, so that a batch's sequence
    length is close to its longest prompt plus `max_new_tokens` (rounded up
    to a multiple of 16 to limit recompilations). Generation stops at the
    tokenizer's end token; a response longer than `max_new_tokens` tokens
    (possible for the shorter prompts of a batch) is cut to that length.

    Args:
        causal_lm: a keras-hub `CausalLM` with a preprocessor attached.
        prompts: list of prompt strings.
        seed: int, the sampling seed.
        max_new_tokens: int, the most new tokens per response.
        batch_size: int, prompts per `generate` call.
        temperature: float, the sampling temperature.
        top_p: float in (0, 1], nucleus sampling mass (1.0: plain sampling).
        progress: bool, show a progress bar of prompts done (never
            with `KERAS_MTA_QUIET=1`).

    Returns:
        List of response strings, in the order of `prompts`.
    """
    if causal_lm.preprocessor is None:
        raise ValueError(
            "generate_responses needs a CausalLM with a preprocessor "
            "attached (it tokenizes the prompts and detokenizes responses)."
        )
    if max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be >= 1, got {max_new_tokens}")
    tokenizer = causal_lm.preprocessor.tokenizer
    lengths = [len(t) for t in _token_lists(tokenizer, list(prompts))]
    limit = _max_sequence_length(causal_lm)
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    responses = [None] * len(prompts)

    swap = seeded_swap(causal_lm, seed, top_p=top_p, temperature=temperature)
    bar = tqdm(
        total=len(prompts),
        desc=f"generate (seed {seed})",
        unit="prompt",
        disable=not progress or is_quiet(),
    )
    with swap, bar:
        for begin in range(0, len(order), batch_size):
            batch = order[begin : begin + batch_size]
            # +2: the start token and the end token.
            length = max(lengths[i] for i in batch) + max_new_tokens + 2
            length = int(math.ceil(length / 16) * 16)
            if limit is not None:
                length = min(length, limit)
            outputs = causal_lm.generate(
                [prompts[i] for i in batch],
                max_length=length,
                strip_prompt=True,
            )
            outputs = _as_strings(outputs)
            for i, text in zip(batch, outputs):
                responses[i] = _cut(tokenizer, text, max_new_tokens)
            bar.update(len(batch))
    return responses


class SamplerSwap:
    """Context manager: `causal_lm` generates with `sampler` inside it.

    The model's own `sampler` and `generate_function` are put back on
    exit, so that generating does not recompile or reset a model's
    training setup. TensorFlow's retracing warning about `generate_step`
    is filtered inside (see `_GenerateRetracingFilter`).

    keras-hub bakes the sampler into the traced (compiled) generate
    function. Pass the `generate_function` a previous `SamplerSwap`
    with the same `sampler` left in its `generate_function` attribute to
    reuse it instead of compiling again (None: built on first use).

    Args:
        causal_lm: a keras-hub `CausalLM`.
        sampler: a `keras_hub.samplers.Sampler`.
        generate_function: optional generate function built for `sampler`
            on this model.

    Examples:

    ```python
    sampler = keras_hub.samplers.RandomSampler(seed=0)
    swap = SamplerSwap(causal_lm, sampler)
    with swap:
        causal_lm.generate(["Say hi:"], max_length=32)
    # Again, without compiling again:
    with SamplerSwap(causal_lm, sampler, swap.generate_function):
        causal_lm.generate(["Say hi:"], max_length=32)
    ```
    """

    def __init__(self, causal_lm, sampler, generate_function=None):
        self.causal_lm = causal_lm
        self.sampler = sampler
        self.generate_function = generate_function
        self._saved = None
        self._retracing = _GenerateRetracingFilter()

    def __enter__(self):
        lm = self.causal_lm
        self._saved = (lm.sampler, lm.generate_function)
        lm.sampler = self.sampler
        lm.generate_function = self.generate_function
        logging.getLogger("tensorflow").addFilter(self._retracing)
        return self

    def __exit__(self, *exc_info):
        lm = self.causal_lm
        self.generate_function = lm.generate_function
        logging.getLogger("tensorflow").removeFilter(self._retracing)
        lm.sampler, lm.generate_function = self._saved
        return False


# One sampler and its compiled generate function per model and sampling
# settings, reused by every seed (see `seeded_swap`).
_SWAPS = weakref.WeakKeyDictionary()


def seeded_swap(causal_lm, seed, top_p=1.0, temperature=1.0):
    """The `SamplerSwap` of `causal_lm` with a top-p sampler of these
    settings, its seed state set to `seed`.

    A fresh `TopPSampler(seed=seed)` starts from the seed state `[seed,
    0]`; setting one sampler's state to that value draws the same tokens,
    so one sampler (and the generate function keras-hub compiles around
    it) serves every seed of a model: each seed and each evaluation of the
    same model (the students of a run share one CausalLM) reuses the
    compiled function instead of compiling its own. The function reads
    the model's current weights at every call.

    Args:
        causal_lm: a keras-hub `CausalLM`.
        seed: int, the sampling seed.
        top_p, temperature: the sampler's settings.
    """
    swaps = _SWAPS.setdefault(causal_lm, {})
    key = (float(top_p), float(temperature))
    if key not in swaps:
        sampler = keras_hub.samplers.TopPSampler(
            p=top_p, temperature=temperature, seed=int(seed)
        )
        swaps[key] = SamplerSwap(causal_lm, sampler)
    swap = swaps[key]
    for variable in swap.sampler.variables:  # the seed generator's state
        variable.assign(np.asarray([int(seed), 0], dtype=variable.dtype))
    return swap


def _to_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _cut(tokenizer, text, max_new_tokens):
    tokens = _token_lists(tokenizer, [text])[0]
    if len(tokens) <= max_new_tokens:
        return text
    return _as_strings(tokenizer.detokenize([tokens[:max_new_tokens]]))[0]


def _as_strings(value):
    """Strings out of what a keras-hub tokenizer returns on any backend."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    if isinstance(value, (str, bytes)):
        return [_to_str(value)]
    return [_to_str(v) for v in np.asarray(value, dtype=object).reshape(-1)]


def evaluate_rouge(
    causal_lm,
    examples,
    dataset="data",
    seeds=DEFAULT_SEEDS,
    max_new_tokens=384,
    batch_size=8,
    temperature=1.0,
    top_p=1.0,
    progress=True,
):
    """Score a model with the field's ROUGE-L protocol.

    Args:
        causal_lm: a keras-hub `CausalLM` with a preprocessor attached.
        examples: list of `keras_mta.data.Example` (prompt and references).
        dataset: str, a name for the report.
        seeds: the sampling seeds (default 10, 20, 30, 40, 50).
        max_new_tokens, batch_size, temperature, top_p, progress: see
            `generate_responses`.

    Returns:
        An `EvaluationResult` (mean and standard deviation over seeds).
    """
    if not examples:
        raise ValueError("evaluate_rouge needs at least one example.")
    prompts = [e.prompt for e in examples]
    scores, first = [], None
    for seed in seeds:
        predictions = generate_responses(
            causal_lm,
            prompts,
            seed=seed,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            temperature=temperature,
            top_p=top_p,
            progress=progress,
        )
        if first is None:
            first = predictions
        per_prompt = [
            rouge_l(p, e.references) for p, e in zip(predictions, examples)
        ]
        scores.append(float(np.mean(per_prompt)))
    return EvaluationResult(
        dataset=dataset,
        seeds=tuple(seeds),
        scores=scores,
        num_prompts=len(examples),
        predictions=first,
    )
