"""ROUGE-L scoring as in the LLM-distillation literature."""

import functools

from rouge_score import rouge_scorer


@functools.lru_cache(maxsize=1)
def _scorer():
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction, references):
    """ROUGE-L F1 of a prediction, the maximum over references, times 100.

    Uses `rouge-score` with the Porter stemmer, as MiniLLM, DistiLLM, DSKD
    and the MTA reference do.

    Args:
        prediction: str, the generated response.
        references: str or sequence of str, the acceptable responses.

    Returns:
        float in `[0, 100]`.

    Examples:

    >>> rouge_l("the cat sat", ["the cat sat on the mat"])
    66.66666666666666
    """
    if isinstance(references, str):
        references = [references]
    if not references:
        raise ValueError("rouge_l needs at least one reference.")
    scorer = _scorer()
    return 100.0 * max(
        scorer.score(reference, prediction)["rougeL"].fmeasure
        for reference in references
    )


def mean_rouge_l(predictions, references):
    """Mean `rouge_l` over paired predictions and reference lists."""
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} predictions for {len(references)} "
            "reference lists."
        )
    if not predictions:
        raise ValueError("mean_rouge_l needs at least one prediction.")
    scores = [rouge_l(p, r) for p, r in zip(predictions, references)]
    return sum(scores) / len(scores)
