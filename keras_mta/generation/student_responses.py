"""Batches of the student's own responses, with their semantic units."""

import concurrent.futures
import math
import weakref

import keras_hub
import numpy as np

from keras_mta.evaluation.protocol import SamplerSwap
from keras_mta.evaluation.protocol import _as_strings
from keras_mta.evaluation.protocol import _cut
from keras_mta.evaluation.protocol import _max_sequence_length
from keras_mta.evaluation.protocol import _token_lists
from keras_mta.preprocessing.background_chunker import BackgroundChunker
from keras_mta.preprocessing.distillation_preprocessor import (
    DistillationPreprocessor,
)
from keras_mta.preprocessing.preprocessing_statistics import (
    PreprocessingStatistics,
)

# The response a degenerate generation is packed with: its row keeps the
# batch's static shape and trains nothing (weight 0, no unit).
DEGENERATE_PLACEHOLDER = "."


class StudentResponses:
    """The student's sampled responses to prompts, as training batches.

    For a batch of prompts, the student `CausalLM` samples one response
    each with keras-hub's `generate` and a keras-hub sampler; the prompts
    are kept, the responses are the detokenized samples, and the texts go
    through the preprocessor's own path: phrase and word spans from its
    chunker (spaCy), tokens with character offsets, units by its
    `SpanMasker`. The batches have exactly the keys, dtypes and static
    shapes of the ground-truth batches the same `DistillationPreprocessor`
    makes, so the model trains on either without recompiling.

    Sampling: temperature 1.0, top-k off (0), top-p 1.0 and one beam by
    default (plain random sampling, DistiLLM's reference settings). Each
    batch is a new draw seeded by `(seed, draw index)`: the same seed
    gives the same responses batch after batch (on one backend, with the
    same weights), and `draws` (the index of the next draw) can be saved
    and restored to resume. Generation runs to the preprocessor's window
    (`sequence_length` tokens of prompt + response) or `max_new_tokens`:
    a sample cut off by the window is longer than the window and is
    truncated in the batch like any text (its end target weighs 0;
    counted in `statistics`).

    Degenerate generations (empty or whitespace only, e.g. the end token
    at once) are kept as rows of the batch packed with the response
    `"."`, with `sample_weight` 0 and no unit: they train nothing and keep
    the static shape. They are counted in `degenerate_responses` (of the
    `generated_responses` of the batches built) and left out of
    `statistics` (the preprocessor's counts of truncation and dropped
    units over the other generated examples).

    Chunking is the bottleneck (about 200 ms of spaCy per batch of 16 on
    one core). `submit` samples on the calling thread (the student runs
    there), then chunks and preprocesses in the background: spaCy in
    `n_process` worker processes (a `BackgroundChunker`; `1`: a thread),
    the preprocessor in a thread. Call `submit` for the next batch before
    the training step and `result()` after it. `generate_batch` does all
    of it on the calling thread (spaCy in the worker processes when
    `n_process>1`, waited for), with the same result.

    Under JAX inside `fit`, the trainer may keep the weights outside the
    model's variables during an epoch: sample from a callback (reading
    its `self.model` syncs them) or after `model.jax_state_sync()`, so
    that the student samples with its current weights. A data source
    read ahead of the step (workers, prefetching) samples with older
    weights.

    Args:
        student: the student `keras_hub.models.CausalLM`, with its
            preprocessor attached (it tokenizes prompts and detokenizes
            samples).
        preprocessor: the `keras_mta.DistillationPreprocessor` of the
            ground-truth batches.
        temperature: float > 0, the sampling temperature.
        top_k: int, sample among the `top_k` most likely tokens (0: off).
        top_p: float in (0, 1], nucleus sampling mass (1.0: off).
        num_beams: int, beams of beam search (1: sampling; more: the most
            likely beam, deterministic; not with `top_k` or `top_p`).
        max_new_tokens: int, the most new tokens per response (None: up to
            the preprocessor's window). A longer response is cut to it.
        seed: int seed of the draws (None: one drawn now, kept in
            `seed` and `get_config()`).
        chunker: the `PhraseChunker` of generated text. Defaults to the
            preprocessor's (the one of its `SpanCache`), else a new
            `PhraseChunker()`.
        n_process: int, worker processes chunking generated text in
            `submit` (1: a thread of this process; -1: one per CPU).
        start_method: multiprocessing start method of those workers
            (None: `"spawn"`, see `BackgroundChunker`).

    Call arguments (of `generate_batch` and `submit`):
        prompts: a list of prompt strings (formatted with the instruction
            template, as in the ground-truth examples).

    Returns:
        `generate_batch`: `(x, y, sample_weight)` of NumPy arrays, `x` a
        dict with `token_ids`, `padding_mask`, `word_units`,
        `phrase_units` (and the `teacher_*` entries when the tokenizers
        differ), `y` int32 `(batch, sequence_length)`, `sample_weight`
        float32 `(batch, sequence_length)`, 1 on response targets.
        `submit`: a future whose `result()` returns the same.

    Examples:

    ```python
    preprocessor = keras_mta.DistillationPreprocessor(
        student.preprocessor, chunker=keras_mta.PhraseChunker()
    )
    responder = StudentResponses(student, preprocessor, seed=0, n_process=2)
    pending = responder.submit(next_prompts)
    model.train_on_batch(*batch)  # chunking runs meanwhile
    x, y, sample_weight = pending.result()
    print(responder.statistics, responder.degenerate_responses)
    responder.close()
    ```

    References:
        - DistiLLM: Towards Streamlined Distillation for Large Language
          Models (ICML 2024, arXiv 2402.03898).
        - On-Policy Distillation of Language Models: Learning from
          Self-Generated Mistakes (ICLR 2024, arXiv 2306.13649).
    """

    def __init__(
        self,
        student,
        preprocessor,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        num_beams=1,
        max_new_tokens=None,
        seed=None,
        chunker=None,
        n_process=1,
        start_method=None,
    ):
        if not isinstance(student, keras_hub.models.CausalLM):
            raise TypeError(
                "`student` must be a keras_hub.models.CausalLM. Received: "
                f"{type(student).__name__}."
            )
        if student.preprocessor is None:
            raise ValueError(
                "`student` has no preprocessor; StudentResponses needs it "
                "to tokenize prompts and detokenize samples. Attach the "
                "student's CausalLMPreprocessor (`student.preprocessor = "
                "...`)."
            )
        if not isinstance(preprocessor, DistillationPreprocessor):
            raise TypeError(
                "`preprocessor` must be the keras_mta."
                "DistillationPreprocessor of the ground-truth batches. "
                f"Received: {type(preprocessor).__name__}."
            )
        _check_sampling(temperature, top_k, top_p, num_beams)
        if max_new_tokens is not None and (
            isinstance(max_new_tokens, bool)
            or not isinstance(max_new_tokens, int)
            or max_new_tokens < 1
        ):
            raise ValueError(
                "`max_new_tokens` must be a positive int or None. "
                f"Received: {max_new_tokens!r}."
            )
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        self.student = student
        self.preprocessor = preprocessor
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.seed = int(seed)
        self.chunker = _chunker(chunker, preprocessor)
        self.n_process = n_process
        self.start_method = start_method
        self._swap = _shared_swap(
            student, (temperature, top_k, top_p, num_beams)
        )
        self.sampler = self._swap.sampler
        self.draws = 0
        self.generated_responses = 0
        self.degenerate_responses = 0
        self.statistics = _empty_statistics(preprocessor)
        self._background = BackgroundChunker(
            self.chunker, n_process=n_process, start_method=start_method
        )
        self._assembler = None

    # ------------------------------------------------------------------

    def generate_batch(self, prompts):
        """Samples responses and builds their batch on this thread (the
        chunking in the worker processes when `n_process>1`)."""
        prompts, responses = self._sample(prompts)
        texts = _texts(prompts, responses)
        if self._background.processes:
            spans = self._background.submit(texts).result()
        else:
            spans = self._background.chunk(texts)
        return self._assemble(prompts, responses, spans)

    def submit(self, prompts):
        """Samples responses now; chunks and preprocesses them in the
        background. Returns a future of `generate_batch`'s result."""
        prompts, responses = self._sample(prompts)
        spans = self._background.submit(_texts(prompts, responses))
        if self._assembler is None:
            self._assembler = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="keras_mta_generated_batches"
            )
        return self._assembler.submit(self._assemble, prompts, responses, spans)

    def sample(self, prompts):
        """The detokenized responses of one draw (degenerate ones kept as
        they are), without building a batch (nothing counted)."""
        return self._sample(prompts)[1]

    def close(self):
        """Stops the background thread and chunking processes."""
        if self._assembler is not None:
            self._assembler.shutdown(wait=True, cancel_futures=True)
            self._assembler = None
        self._background.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def get_config(self):
        return {
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "n_process": self.n_process,
            "start_method": self.start_method,
        }

    # ------------------------------------------------------------------

    def _sample(self, prompts):
        prompts = _checked_prompts(prompts)
        self._seed_sampler(self.draws)
        self.draws += 1
        with self._swap:
            outputs = self.student.generate(
                prompts,
                max_length=self._max_length(prompts),
                strip_prompt=True,
            )
        responses = _as_strings(outputs)
        if self.max_new_tokens is not None:
            tokenizer = self.student.preprocessor.tokenizer
            responses = [
                _cut(tokenizer, text, self.max_new_tokens) for text in responses
            ]
        return prompts, responses

    @property
    def _generate_function(self):
        """The compiled generate function of the student and sampler
        (None before the first draw), shared with the other responders
        of this student and sampling settings."""
        return self._swap.generate_function

    def _seed_sampler(self, draw):
        """Sets the sampler's seed state to the one of draw `draw`."""
        state = np.random.SeedSequence([self.seed, draw]).generate_state(1)
        value = [int(state[0] >> 1), 0]  # fits every backend's seed dtype
        for variable in self.sampler.variables:
            variable.assign(np.asarray(value, dtype=variable.dtype))

    def _max_length(self, prompts):
        """The generation length: start token + prompt + response tokens.

        The preprocessor's window holds `sequence_length` tokens with the
        start and end tokens; one more lets a sample that does not stop
        by itself overflow the window (truncated: its end target weighs
        0). With `max_new_tokens`, no longer than the longest prompt plus
        `max_new_tokens` (+ start and end), rounded up to 16 tokens to
        limit recompilations.
        """
        length = self.preprocessor.student_sequence_length + 1
        if self.max_new_tokens is not None:
            tokenizer = self.student.preprocessor.tokenizer
            longest = max(len(t) for t in _token_lists(tokenizer, prompts))
            wanted = longest + self.max_new_tokens + 2
            length = min(length, int(math.ceil(wanted / 16) * 16))
        limit = _max_sequence_length(self.student)
        return length if limit is None else min(length, limit)

    def _assemble(self, prompts, responses, spans):
        """`(x, y, sample_weight)` of the responses, from the spans of
        their non-degenerate texts (a list, or a future of one)."""
        if hasattr(spans, "result"):
            spans = spans.result()
        degenerate = np.asarray([_degenerate(r) for r in responses])
        spans = iter(spans)
        words, phrases, packed = [], [], []
        for response, empty in zip(responses, degenerate):
            row = {"words": [], "phrases": []} if empty else next(spans)
            words.append([tuple(pair) for pair in row["words"]])
            phrases.append([tuple(pair) for pair in row["phrases"]])
            packed.append(DEGENERATE_PLACEHOLDER if empty else response)
        (x, y, weight), counts = self.preprocessor.process_with_counts(
            {
                "prompt": prompts,
                "response": packed,
                "word_spans": words,
                "phrase_spans": phrases,
            }
        )
        x = {key: value.numpy() for key, value in x.items()}
        y = y.numpy()
        weight = weight.numpy()
        if degenerate.any():
            weight[degenerate] = 0.0
            for key, value in x.items():
                if key.endswith("_units"):
                    value[degenerate] = 0
        self.generated_responses += len(responses)
        self.degenerate_responses += int(degenerate.sum())
        kept = ~degenerate
        self.statistics.update(
            {key: value.numpy()[kept] for key, value in counts.items()}
        )
        return x, y, weight


def _degenerate(response):
    return not response.strip()


def _texts(prompts, responses):
    """`prompt + response` of the non-degenerate responses."""
    return [p + r for p, r in zip(prompts, responses) if not _degenerate(r)]


def _checked_prompts(prompts):
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise TypeError(
            "StudentResponses: `prompts` must be a list of strings. "
            f"Received: {type(prompts).__name__}."
        )
    if not prompts:
        raise ValueError("StudentResponses: `prompts` is empty.")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(
                f"StudentResponses: prompt {index} must be a string. "
                f"Received {type(prompt).__name__}: {prompt!r:.80}."
            )
    return list(prompts)


def _check_sampling(temperature, top_k, top_p, num_beams):
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(
            "`temperature` must be a number > 0 (1.0: the model's own "
            f"distribution). Received: {temperature!r}."
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(
            f"`top_k` must be an int >= 0 (0: off). Received: {top_k!r}."
        )
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(
            f"`top_p` must be in (0, 1] (1.0: off). Received: {top_p!r}."
        )
    if (
        isinstance(num_beams, bool)
        or not isinstance(num_beams, int)
        or num_beams < 1
    ):
        raise ValueError(
            f"`num_beams` must be an int >= 1. Received: {num_beams!r}."
        )
    if num_beams > 1 and (top_k or top_p < 1):
        raise ValueError(
            "Beam search (`num_beams` > 1) does not sample: leave `top_k=0` "
            f"and `top_p=1.0`. Received top_k={top_k}, top_p={top_p}."
        )


# One sampler, and the generate function keras-hub compiles around it, per
# student and sampling settings: shared by every `StudentResponses` of that
# student (a run's variants share one student CausalLM), so that only the
# first compiles. Each draw sets the sampler's whole seed state first, so
# sharing it changes no sample.
_SWAPS = weakref.WeakKeyDictionary()


def _shared_swap(student, settings):
    """The `SamplerSwap` of `student` with the sampler of `settings`
    (`(temperature, top_k, top_p, num_beams)`), made on first use."""
    swaps = _SWAPS.setdefault(student, {})
    if settings not in swaps:
        swaps[settings] = SamplerSwap(student, _sampler(*settings))
    return swaps[settings]


def _sampler(temperature, top_k, top_p, num_beams):
    """The keras-hub sampler of the settings (seeded per draw later)."""
    samplers = keras_hub.samplers
    if num_beams > 1:
        return samplers.BeamSampler(num_beams, temperature=temperature)
    if top_p < 1:
        return samplers.TopPSampler(
            p=top_p, k=top_k or None, temperature=temperature, seed=0
        )
    if top_k:
        return samplers.TopKSampler(k=top_k, temperature=temperature, seed=0)
    return samplers.RandomSampler(temperature=temperature, seed=0)


def _chunker(chunker, preprocessor):
    """The chunker of generated text: given, the preprocessor's (that of
    its span cache), or a new `PhraseChunker`."""
    if chunker is None:
        chunker = preprocessor.chunker
        chunker = getattr(chunker, "chunker", chunker)  # a SpanCache's
    if chunker is None:
        from keras_mta.preprocessing.chunking import PhraseChunker

        chunker = PhraseChunker()
    if not hasattr(chunker, "chunk"):
        raise TypeError(
            "The chunker of generated text must have `chunk(texts)` (a "
            f"PhraseChunker). Received: {type(chunker).__name__}."
        )
    return chunker


def _empty_statistics(preprocessor):
    """Empty `PreprocessingStatistics` with the preprocessor's settings."""
    length = preprocessor.student_sequence_length
    teacher_length = None
    if not preprocessor.shares_tokens:
        teacher_length = (
            preprocessor.teacher_sequence_length
            or preprocessor.teacher_preprocessor.sequence_length
        )
    return PreprocessingStatistics(
        sequence_length=length,
        max_word_units=preprocessor.max_word_units or length,
        max_phrase_units=preprocessor.max_phrase_units or length,
        teacher_sequence_length=teacher_length,
    )
