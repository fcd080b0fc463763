"""Random inputs shared by the loss tests: padding, overlapping units."""

import numpy as np


def random_case(seed=0, student_dim=6, teacher_dim=10, seq_len=9):
    """A batch of 4 samples with padding and several units per sample.

    Sample 0: full length, overlapping and nested units.
    Sample 1: padded after 6 tokens; one unit runs into the padding.
    Sample 2: one real token (a one-token sequence) with one unit.
    Sample 3: no units at all.
    """
    rng = np.random.default_rng(seed)
    batch = 4
    student = rng.normal(size=(batch, seq_len, student_dim)).astype("float32")
    teacher = rng.normal(size=(batch, seq_len, teacher_dim)).astype("float32")
    lengths = [seq_len, 6, 1, 5]
    mask = np.zeros((batch, seq_len), "int32")
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    units = np.zeros((batch, 5, 2), "int32")
    units[0, :5] = [[0, 3], [2, 5], [3, 4], [5, 9], [8, 9]]
    units[1, :3] = [[0, 2], [2, 3], [4, 8]]
    units[2, :1] = [[0, 1]]
    return student, teacher, units, mask
