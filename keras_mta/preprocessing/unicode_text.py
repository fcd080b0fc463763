"""Lone surrogates: `str` characters that no UTF-8 text can hold."""


def lone_surrogate(text):
    """Index of the first lone surrogate of `text` (a `str`), or None.

    A lone surrogate (U+D800..U+DFFF alone, e.g. from the JSON escape
    `"\\ud800"`) is a valid Python `str` character that UTF-8 cannot
    encode: TensorFlow ("Error converting unicode string") and tokenizers
    fail on it later, far from the example that holds it.

    Args:
        text: a `str`.

    Returns:
        The character index of the first lone surrogate, or `None`.

    Examples:

    ```python
    lone_surrogate("ok")  # None
    lone_surrogate("a\\ud800b")  # 1
    ```
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None
