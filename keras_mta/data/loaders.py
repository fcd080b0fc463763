"""Instruction data from JSONL files: Dolly, prompt/completion, self-instruct,
Alpaca (instruction/input/output).

Every row becomes an `Example(prompt, response, references)`: `prompt` is
the formatted prompt (see `format_prompt`), `response` the text the model
is trained on, `references` every acceptable answer (for ROUGE-L, which
takes the maximum over references).

Malformed rows (invalid UTF-8, invalid JSON, missing fields, wrong types,
empty response, text fields holding a lone surrogate such as the JSON
escape `"\\ud800"`, which no UTF-8 text can hold) are reported with file
and line number (and the field). `on_error="raise"` stops at the
first one; `on_error="skip"` skips them, counts them in the returned
`LoadReport` and logs one warning per file with the count and the first
problems.
"""

import dataclasses
import json
import logging
import os

from keras_mta.data.template import format_prompt
from keras_mta.preprocessing.unicode_text import lone_surrogate

logger = logging.getLogger(__name__)

SCHEMAS = ("dolly", "prompt_completion", "self_instruct", "alpaca")


class DataError(ValueError):
    """A malformed row of an instruction data file."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One instruction example.

    Attributes:
        prompt: the formatted prompt the model reads first.
        response: the target response (the first reference).
        references: all reference responses (at least one).
        source: `"path:line"` where the example came from.
    """

    prompt: str
    response: str
    references: tuple
    source: str = ""

    @property
    def text(self):
        """The full training text the model reads: prompt + response."""
        return self.prompt + self.response


@dataclasses.dataclass
class LoadReport:
    """What a load read, kept and skipped."""

    path: str
    schema: str = ""
    rows: int = 0
    examples: int = 0
    skipped: int = 0
    problems: list = dataclasses.field(default_factory=list)

    def __str__(self):
        text = (
            f"{self.path}: {self.rows} rows ({self.schema}), "
            f"{self.examples} examples, {self.skipped} skipped"
        )
        if self.problems:
            text += "; first problems: " + "; ".join(self.problems[:3])
        return text


def detect_schema(row):
    """Name the schema of one decoded row, or None."""
    if not isinstance(row, dict):
        return None
    if "instances" in row and "instruction" in row:
        return "self_instruct"
    if "instruction" in row and "response" in row:
        return "dolly"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "instruction" in row and "output" in row:
        return "alpaca"
    return None


def _require_str(row, key, allow_empty=True, optional=False):
    if key not in row or row[key] is None:
        if optional:
            return ""
        raise DataError(f"missing field {key!r}")
    value = row[key]
    if not isinstance(value, str):
        raise DataError(
            f"field {key!r} must be a string, got {type(value).__name__}"
        )
    if not allow_empty and not value.strip():
        raise DataError(f"field {key!r} is empty")
    surrogate = lone_surrogate(value)
    if surrogate is not None:
        raise DataError(
            f"field {key!r} holds a lone surrogate "
            f"({value[surrogate]!r} at character {surrogate}), which UTF-8 "
            'cannot encode (a broken JSON escape such as "\\ud800"); '
            "replace it with the character it stands for"
        )
    return value


# One example per row: instruction, optional context, response fields.
_INSTRUCTION_FIELDS = {
    "dolly": ("context", "response"),
    "alpaca": ("input", "output"),
}


def _examples_from_row(row, schema, source):
    """Examples of one decoded row; raises DataError on a malformed row."""
    if not isinstance(row, dict):
        raise DataError(
            f"a row must be a JSON object, got {type(row).__name__}"
        )
    if schema in _INSTRUCTION_FIELDS:
        context_key, response_key = _INSTRUCTION_FIELDS[schema]
        instruction = _require_str(row, "instruction", allow_empty=False)
        context = _require_str(row, context_key, optional=True)
        response = _require_str(row, response_key, allow_empty=False)
        prompt = format_prompt(instruction, context)
        return [Example(prompt, response, (response,), source)]
    if schema == "prompt_completion":
        prompt = _require_str(row, "prompt", allow_empty=False)
        completion = _require_str(row, "completion", allow_empty=False)
        return [Example(prompt, completion, (completion,), source)]
    if schema == "self_instruct":
        instruction = _require_str(row, "instruction", allow_empty=False)
        instances = row["instances"]
        if not isinstance(instances, list) or not instances:
            raise DataError("field 'instances' must be a non-empty list")
        examples = []
        for k, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise DataError(f"instances[{k}] must be an object")
            input_text = _require_str(instance, "input", optional=True)
            output = _require_str(instance, "output", allow_empty=False)
            prompt = format_prompt(instruction, input_text)
            examples.append(Example(prompt, output, (output,), source))
        return examples
    raise ValueError(f"Unknown schema {schema!r}; choose one of {SCHEMAS}.")


HUB_PREFIX = "hf://datasets/"


def hub_dataset_file(handle):
    """Local path of `hf://datasets/OWNER/NAME/FILE` (downloaded or cached).

    Uses `huggingface_hub.hf_hub_download`, so the file lands in (and is
    read from) the Hub cache: a later run, or one with `HF_HUB_OFFLINE=1`,
    does not touch the network.
    """
    parts = handle[len(HUB_PREFIX) :].split("/")
    if len(parts) < 3 or not all(parts):
        raise ValueError(
            f"A Hub dataset file is `hf://datasets/OWNER/NAME/FILE.jsonl`; "
            f"got {handle!r}."
        )
    from huggingface_hub import hf_hub_download

    return hf_hub_download(
        repo_id="/".join(parts[:2]),
        filename="/".join(parts[2:]),
        repo_type="dataset",
    )


def load_examples(path, schema="auto", on_error="raise", limit=None):
    """Read instruction examples from a JSONL file.

    Args:
        path: path of a JSONL file, one JSON object per line (blank lines
            are ignored), or a Hugging Face Hub dataset file
            `hf://datasets/OWNER/NAME/FILE.jsonl` (downloaded once into the
            Hub cache with `huggingface_hub`; offline, read from that cache
            with `HF_HUB_OFFLINE=1`).
        schema: `"auto"` (detected from the first valid row), `"dolly"`
            (`instruction`, `context`, `response`, `category`),
            `"prompt_completion"` (`prompt`, `completion`) or
            `"self_instruct"` (`instruction`, `instances[{input, output}]`,
            one example per instance) or `"alpaca"` (`instruction`,
            `input`, `output`: the layout of MiniLLM's evaluation files).
        on_error: `"raise"` (stop at the first malformed row) or `"skip"`
            (skip and count malformed rows).
        limit: optional maximum number of examples.

    Returns:
        `(examples, report)`: a list of `Example` and a `LoadReport`.

    Raises:
        DataError: on a malformed row with `on_error="raise"`, naming the
            file and line; also when no row is usable.
        FileNotFoundError: when `path` does not exist.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(
            f"`on_error` must be 'raise' or 'skip', got {on_error!r}."
        )
    if schema != "auto" and schema not in SCHEMAS:
        raise ValueError(
            f"Unknown schema {schema!r}; choose 'auto' or one of {SCHEMAS}."
        )
    path = os.fspath(path)
    if path.startswith(HUB_PREFIX):
        path = hub_dataset_file(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No data file at {path!r}.")
    report = LoadReport(path=path, schema=schema)
    examples = []
    # Bytes, decoded a line at a time: invalid UTF-8 is a malformed row
    # (with its file and line), not a bare UnicodeDecodeError.
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            report.rows += 1
            source = f"{path}:{line_number}"
            try:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"invalid UTF-8 at byte {e.start} of the line "
                        f"({raw[e.start : e.start + 4]!r}: {e.reason}); "
                        "save the file as UTF-8"
                    ) from None
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"invalid JSON ({e.msg})") from None
                row_schema = report.schema
                if row_schema == "auto":
                    row_schema = detect_schema(row)
                    if row_schema is None:
                        raise DataError(
                            "cannot tell the schema: expected the fields of "
                            "one of Dolly (instruction, context, response), "
                            "prompt/completion, self-instruct "
                            "(instruction, instances) or Alpaca "
                            "(instruction, input, output)"
                        )
                new = _examples_from_row(row, row_schema, source)
                report.schema = row_schema
            except DataError as e:
                message = f"{source}: {e}"
                if on_error == "raise":
                    raise DataError(
                        f"{message}. Fix the row, or load with "
                        "on_error='skip' to skip malformed rows."
                    ) from None
                report.skipped += 1
                report.problems.append(message)
                continue
            examples.extend(new)
            if limit is not None and len(examples) >= limit:
                examples = examples[:limit]
                break
    report.examples = len(examples)
    if report.skipped:
        logger.warning(
            "Skipped %d malformed rows of %d in %s; first: %s",
            report.skipped,
            report.rows,
            path,
            "; ".join(report.problems[:3]),
        )
    if not examples:
        raise DataError(f"{path}: no usable example ({report}).")
    return examples, report
