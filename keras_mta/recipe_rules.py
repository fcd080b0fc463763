"""What each recipe field accepts: one rule per field, read by the check and
by the help.

A rule says in words what it allows (`rule.allowed`, printed by `keras-mta
distill --help` and in every error) and whether a value is allowed
(`rule.accepts(value)`). `keras_mta.recipe` attaches one rule to each
field of its dataclasses; `Recipe.validate()` applies them all and reports
every problem at once in one `RecipeError`.
"""

import math


class RecipeError(ValueError):
    """A recipe that cannot be used, with what to change."""


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Rule:
    """What a field accepts.

    Subclasses set `allowed` (words that complete "must be ...") and
    implement `accepts(value)`.
    """

    allowed = "any value"

    def accepts(self, value):
        return True


class Number(Rule):
    """A finite number (or an integer) within bounds.

    Args:
        low: lowest value, or None.
        high: highest value, or None.
        low_open: `low` itself is refused (`> low`).
        high_open: `high` itself is refused (`< high`).
        integer: only integers (never bools or floats).
        note: what the bounds mean, appended to `allowed`.

    Examples:

    >>> Number(0, 1, low_open=True, high_open=True).allowed
    'a finite number in (0, 1)'
    >>> Number(1, integer=True).accepts(0)
    False
    """

    def __init__(
        self,
        low=None,
        high=None,
        low_open=False,
        high_open=False,
        integer=False,
        note="",
    ):
        self.low = low
        self.high = high
        self.low_open = low_open
        self.high_open = high_open
        self.integer = integer
        self.note = note

    @property
    def allowed(self):
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            text = f"{kind} in {left}{self.low}, {self.high}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {self.low}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {self.high}"
        else:
            text = kind
        return f"{text} ({self.note})" if self.note else text

    def accepts(self, value):
        if self.integer and not _is_integer(value):
            return False
        if not _is_number(value) or not math.isfinite(value):
            return False
        if self.low is not None:
            if value < self.low or (self.low_open and value == self.low):
                return False
        if self.high is not None:
            if value > self.high or (self.high_open and value == self.high):
                return False
        return True


class OneOf(Rule):
    """One of a fixed list of names (the one list kept elsewhere, e.g.
    `keras_mta.models.variants.DIVERGENCES`)."""

    def __init__(self, choices):
        self.choices = tuple(choices)

    @property
    def allowed(self):
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def accepts(self, value):
        return isinstance(value, str) and value in self.choices


class ListOf(Rule):
    """A list whose items all follow `item`, with at least `min_length`."""

    def __init__(self, item, min_length=0):
        self.item = item
        self.min_length = min_length

    @property
    def allowed(self):
        size = f"at least {self.min_length} " if self.min_length else ""
        items = "item" if self.min_length == 1 else "items"
        return f"a list of {size}{items}, each {self.item.allowed}"

    def accepts(self, value):
        return (
            isinstance(value, list)
            and len(value) >= self.min_length
            and all(self.item.accepts(v) for v in value)
        )


class Of(Rule):
    """A value of one Python type (`str`, `bool`, `dict`) and nothing
    else; `test`, if given, adds a condition described by `allowed`."""

    def __init__(self, kind, allowed, test=None):
        self.kind = kind
        self.allowed = allowed
        self.test = test

    def accepts(self, value):
        if not isinstance(value, self.kind):
            return False
        return self.test is None or bool(self.test(value))


TEXT = Of(str, "a string")
FLAG = Of(bool, "true or false")
TABLE = Of(dict, "a table")
# Where fields of a type carry no rule of their own.
TYPE_RULES = {str: TEXT, bool: FLAG, dict: TABLE}
