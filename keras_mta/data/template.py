"""The instruction prompt template of the LLM-distillation literature."""

PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that "
    "appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input "
    "that provides further context. Write a response that appropriately "
    "completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n"
    "### Response:\n"
)


def format_prompt(instruction, input_text=""):
    """Format an instruction (and optional input) as a prompt.

    The template of MiniLLM, DistiLLM, DSKD and the MTA reference (the
    Alpaca template): the `### Input:` block appears only when there is a
    non-empty input.

    Args:
        instruction: str, the task.
        input_text: str, optional context for the task.

    Returns:
        The prompt string, ending with `"### Response:\\n"`; the response is
        appended to it verbatim.

    Examples:

    >>> format_prompt("Name a color.")[-14:]
    '### Response:\\n'
    """
    instruction = instruction.strip()
    input_text = (input_text or "").strip()
    if input_text:
        return PROMPT_WITH_INPUT.format(
            instruction=instruction, input=input_text
        )
    return PROMPT_NO_INPUT.format(instruction=instruction)
