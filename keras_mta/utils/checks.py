"""Argument checks that several constructors share."""


def check_non_negative(name, value, hint=""):
    """Raises `ValueError` unless `value` is a finite number >= 0.

    The one check of a loss weight or scale (`loss_weight`, a term's
    `weight`, `mta_weight`, `hra_scale`): a negative weight turns a loss
    into a reward and an infinite one gives NaN at the first step, so both
    are refused when the object is built.

    Args:
        name: the argument's name, as the message shows it.
        value: the number to check.
        hint: an optional sentence appended to the message (what to do
            instead).
    """
    if not 0.0 <= float(value) < float("inf"):
        message = f"`{name}` must be >= 0 and finite, got {value}."
        raise ValueError(f"{message} {hint}".strip())
