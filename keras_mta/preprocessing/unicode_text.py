"""The texts preprocessing accepts: `str` (not bytes) that UTF-8 can hold.

Spans are character offsets into a `str`; bytes are refused rather than
decoded, since offsets into the decoded text differ from offsets into the
bytes as soon as a character is not ASCII.
"""

_DECODE = (
    "decode it first (`text.decode('utf-8')`): spans are character offsets "
    "into the decoded `str`, which differ from byte offsets for non-ASCII "
    "text"
)


def checked_text(text, index):
    """`text` when it is a `str`; a TypeError naming item `index` otherwise.

    Args:
        text: one item of the texts to chunk.
        index: its position, for the message.
    """
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray)):
        raise TypeError(
            f"texts must be strings; item {index} is "
            f"{type(text).__name__}: {_DECODE}."
        )
    raise TypeError(
        f"texts must be strings; item {index} is {type(text).__name__}."
    )


def check_not_bytes(texts):
    """Refuses a whole `bytes` object passed as `texts` (whose items would
    be ints)."""
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError(
            "texts must be a string or an iterable of strings; got "
            f"{type(texts).__name__}: {_DECODE}."
        )


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
