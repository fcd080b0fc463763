"""Input keys of the teacher signals a teacher cache stores.

`TeacherCache.dataset` streams each cached array under its key beside the
student's inputs; `CachedTeacher` reads them from there.
"""

TOP_K_LOG_PROBS = "teacher_top_k_log_probs"
TOP_K_INDICES = "teacher_top_k_indices"
LOG_REST = "teacher_log_rest"
ENTROPY_WEIGHTS = "teacher_entropy_weights"


def hidden_key(pair):
    """Input key of the cached teacher hidden states of pair `pair`."""
    return f"teacher_hidden_{pair}"


def importance_key(pair):
    """Input key of the cached teacher token importance of pair `pair`."""
    return f"teacher_importance_{pair}"


def signal_keys(num_pairs):
    """Every input key of the cached teacher signals, in a fixed order."""
    keys = [TOP_K_LOG_PROBS, TOP_K_INDICES, LOG_REST, ENTROPY_WEIGHTS]
    for k in range(num_pairs):
        keys += [hidden_key(k), importance_key(k)]
    return keys
