"""An estimate of a run's memory on one device, from counts and shapes."""

import dataclasses

import keras

# Bytes per activation of a transformer block per token and hidden unit
# in 16-bit training without recomputation, plus the attention scores'
# share (Korthikanti et al. 2022, "Reducing Activation Recomputation in
# Large Transformer Models", eq. 2: s b h (34 + 5 a s / h) per block).
BLOCK_BYTES_PER_TOKEN_UNIT = 34
ATTENTION_BYTES_PER_SCORE = 5
# Vocabulary-sized float32 tensors alive at the KD loss: teacher and
# student logits, and their log-softmax (the divergences compute in
# float32).
LOGIT_TENSORS = 4


@dataclasses.dataclass(frozen=True)
class MemoryTerm:
    """One term of the estimate.

    Attributes:
        name: what it holds.
        bytes: its size.
        exact: True when it is a parameter count times a dtype size
            (exact for the weights Keras creates), False for the rough
            activation estimates.
        how: how it is computed.
        host: True for a term held in the host's memory (the replay
            buffer of student generation), not the device's.
    """

    name: str
    bytes: int
    exact: bool
    how: str
    # Issue 20: in the host's memory, not the device's (the replay buffer).
    host: bool = False


def dtype_bytes(dtype):
    """Bytes per element of a dtype name (`float32`, `bfloat16`, ...)."""
    return int(keras.backend.standardize_dtype(dtype)[-2:]) // 8


def estimate_memory(
    teacher,
    student,
    projectors,
    training,
    sequence_length,
    plan_pairs,
    teacher_hidden_dim,
    generation="off",
    word_units=0,
    phrase_units=0,
):
    """The terms of a run's peak memory on one device.

    Weights are counted at the variable dtype of `training.precision`
    (`float32` under the mixed policies, as Keras creates them);
    gradients, AdamW's two moments and, with
    `training.gradient_accumulation_steps` > 1, Keras' gradient
    accumulators, for the trainable weights only (the LoRA adapters of a
    LoRA student). Activations are a rough estimate for one batch of
    `training.batch_size` x `sequence_length` tokens.

    Args:
        teacher: the teacher's `ParameterCount`.
        student: the student's `ParameterCount`.
        projectors: int, weights of the alignment projectors.
        training: the recipe's `TrainingSpec`.
        sequence_length: tokens per example.
        plan_pairs: int, aligned layer pairs (hidden states kept).
        teacher_hidden_dim: the teacher's hidden size.
        generation: `"off"`, `"on_policy"` or `"adaptive"`: the student
            generation of the run's variants (`"adaptive"` when any
            variant replays); adds `generation_memory`'s terms.
        word_units, phrase_units: units per example
            (`data.max_word_units`, `data.max_phrase_units`; the replay
            buffer's batches hold them).

    Returns:
        A list of `MemoryTerm`s.
    """
    policy = keras.DTypePolicy(training.precision)
    weight = dtype_bytes(policy.variable_dtype)
    compute = dtype_bytes(policy.compute_dtype)
    # Adam and AdamW keep two moments per trainable weight.
    slots = 2
    accumulators = 1 if training.gradient_accumulation_steps > 1 else 0
    per_trainable = 1 + slots + accumulators  # gradient, moments, sums
    state = "gradient + 2 moments" + (" + accumulator" if accumulators else "")
    tokens = training.batch_size * sequence_length
    dtype = policy.variable_dtype
    terms = [
        MemoryTerm(
            "teacher weights",
            teacher.total * weight,
            True,
            f"{teacher.total:,} x {weight} B ({dtype})",
        ),
        MemoryTerm(
            "student weights",
            student.total * weight,
            True,
            f"{student.total:,} x {weight} B ({dtype})",
        ),
        MemoryTerm(
            "student training state",
            student.trainable * weight * per_trainable,
            True,
            f"{student.trainable:,} trainable x {per_trainable} x {weight} "
            f"B ({state})",
        ),
        MemoryTerm(
            "alignment projectors",
            projectors * weight * (1 + per_trainable),
            True,
            f"{projectors:,} x {1 + per_trainable} x {weight} B (weights + "
            f"{state})",
        ),
    ]
    heads = max(student.num_heads, 1)
    hidden = max(student.hidden_dim, 1)
    per_block = (
        tokens
        * hidden
        * (
            BLOCK_BYTES_PER_TOKEN_UNIT
            + ATTENTION_BYTES_PER_SCORE * heads * sequence_length / hidden
        )
    )
    terms.append(
        MemoryTerm(
            "student activations (estimate)",
            int(student.num_layers * per_block * compute / 2),
            False,
            f"{student.num_layers} blocks x b s h (34 + 5 a s / h) bytes "
            f"at 16 bits, x {compute}/2 for {policy.compute_dtype} "
            f"(b={training.batch_size}, s={sequence_length}, h={hidden}, "
            f"a={heads}; no recomputation)",
        )
    )
    vocabulary = max(teacher.vocabulary_size, student.vocabulary_size)
    terms.append(
        MemoryTerm(
            "logits and KD (estimate)",
            LOGIT_TENSORS * tokens * vocabulary * 4,
            False,
            f"{LOGIT_TENSORS} float32 tensors of b x s x V = "
            f"{training.batch_size} x {sequence_length} x {vocabulary} "
            "(teacher and student logits, their log-softmax)",
        )
    )
    terms.append(
        MemoryTerm(
            "teacher hidden states (estimate)",
            plan_pairs * tokens * teacher_hidden_dim * compute,
            False,
            f"{plan_pairs} aligned layers x b x s x {teacher_hidden_dim} x "
            f"{compute} B (the teacher runs without gradients)",
        )
    )
    if generation != "off":
        terms += generation_memory(
            student,
            training,
            sequence_length,
            adaptive=generation == "adaptive",
            word_units=word_units,
            phrase_units=phrase_units,
        )
    return terms


# --- Student generation (issue 20) ---
# Bytes per token of a batch's arrays: token_ids (int32), padding_mask
# (bool), y (int32), sample_weight (float32); per unit: its (start, end)
# as int32.
BATCH_BYTES_PER_TOKEN = 4 + 1 + 4 + 4
BATCH_BYTES_PER_UNIT = 2 * 4


def generation_memory(
    student,
    training,
    sequence_length,
    adaptive,
    word_units,
    phrase_units,
):
    """The memory of training on the student's own outputs.

    The student samples a batch of `training.batch_size` responses up to
    the window (`sequence_length + 1` tokens, as
    `keras_mta.generation.StudentResponses` asks keras-hub's `generate`)
    between training steps: its key/value cache and the logits of the
    prompt pass live on the device meanwhile. The adaptive mode also keeps
    up to `training.student_generation.capacity` generated batches in the
    replay buffer, as NumPy arrays in the host's memory.

    Args:
        student: the student's `ParameterCount`.
        training: the recipe's `TrainingSpec`.
        sequence_length: tokens per example.
        adaptive: bool, whether the replay buffer is used.
        word_units, phrase_units: units per example.

    Returns:
        A list of `MemoryTerm`s.
    """
    policy = keras.DTypePolicy(training.precision)
    compute = dtype_bytes(policy.compute_dtype)
    batch = training.batch_size
    length = sequence_length + 1
    hidden = student.hidden_dim
    terms = [
        MemoryTerm(
            "sampling key/value cache (estimate)",
            2 * student.num_layers * batch * length * hidden * compute,
            False,
            f"2 (keys, values) x {student.num_layers} blocks x b x (s + 1) "
            f"x h x {compute} B (b={batch}, s+1={length}, h={hidden}; "
            "at most: grouped-query attention keeps fewer heads)",
        ),
        MemoryTerm(
            "sampling logits (estimate)",
            batch * length * student.vocabulary_size * 4,
            False,
            f"float32 b x (s + 1) x V = {batch} x {length} x "
            f"{student.vocabulary_size} (the prompt pass of `generate`)",
        ),
    ]
    if adaptive:
        capacity = training.student_generation.capacity
        per_example = (
            sequence_length * BATCH_BYTES_PER_TOKEN
            + (word_units + phrase_units) * BATCH_BYTES_PER_UNIT
        )
        terms.append(
            MemoryTerm(
                "replay buffer (host memory)",
                capacity * batch * per_example,
                True,
                f"{capacity} batches x {batch} examples x ({sequence_length} "
                f"tokens x {BATCH_BYTES_PER_TOKEN} B + "
                f"{word_units + phrase_units} units x "
                f"{BATCH_BYTES_PER_UNIT} B)",
                host=True,
            )
        )
    return terms


# --- end of student generation ---
