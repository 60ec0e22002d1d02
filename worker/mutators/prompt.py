"""The prompts the `llm` and `command` mutators give a model or an agent CLI.

One place decides what an agent sees: program.md (the person's goals and rules), the current
target, the swarm memory (what other workers already tried), and the output contract (edit
blocks, a whole file, JSON edits, new values of constants, or "edit the file in place"),
always with a one-line description. Pure functions of their inputs, so the same task gives the
same prompt on every worker.

Order matters to a local server's prompt cache: what stays the same from task to task comes
first (system, program.md, the target — which changes only with the champion), the swarm
memory (new with every task) and the answer format last. A server then re-reads only the tail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

OUTPUT_EDITS = "edits"
OUTPUT_WHOLE_FILE = "whole-file"
OUTPUT_JSON = "json"              # SEARCH/REPLACE pairs as JSON against EDIT_SCHEMA
OUTPUT_CONSTANTS = "constants"    # new values for the target's UPPER_CASE constants, as JSON
OUTPUT_FORMATS = (OUTPUT_EDITS, OUTPUT_WHOLE_FILE, OUTPUT_JSON, OUTPUT_CONSTANTS)

# JSON schemas for servers that constrain their output (response_format, Ollama's format):
# a small model then cannot wander off the format, and its answer ends where the JSON does.
EDIT_SCHEMA = {
    "type": "object",
    "properties": {
        "description": {"type": "string"},
        "edits": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "properties": {"search": {"type": "string"}, "replace": {"type": "string"}},
            "required": ["search", "replace"],
        }},
    },
    "required": ["description", "edits"],
}
CONSTANTS_SCHEMA = {
    "type": "object",
    "properties": {
        "description": {"type": "string"},
        "values": {"type": "object", "additionalProperties": {"type": "number"}},
    },
    "required": ["description", "values"],
}

_LANGUAGES = {
    ".py": "python", ".js": "javascript", ".ts": "typescript", ".rs": "rust", ".go": "go", ".c": "c",
    ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".java": "java", ".jl": "julia", ".r": "r", ".sh": "bash",
    ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".md": "markdown", ".html": "html",
    ".css": "css", ".sql": "sql", ".txt": "text",
}
_BACKTICK_RUN = re.compile(r"`+")
# The template of the description line in the agent prompt; an agent echoing its prompt must
# not have this taken for its description.
DESCRIPTION_PLACEHOLDER = "<one line saying what you changed and why>"

SYSTEM = (
    "You are a research agent in an autoresearch loop run by a swarm of machines. You improve one "
    "file, the target, so that its evaluation scores better. The evaluation is fixed and runs after "
    "your edit under a fixed time budget; your edit is kept only if the metric improves. Many agents "
    "work on the same target in parallel: the swarm memory lists what they already tried and how it "
    "went, so try something new or build on what worked. Follow the instructions in program.md and "
    "the output format exactly."
)


@dataclass(frozen=True)
class PromptInputs:
    """What a prompt is built from. `target_text` None: the agent reads the file itself."""

    program: str
    target: str
    target_text: str | None
    memory: str


def fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run in `text` (at least ```), so it cannot close early."""
    longest = max((len(m.group()) for m in _BACKTICK_RUN.finditer(text)), default=0)
    return "`" * max(3, longest + 1)


def language_of(target: str) -> str:
    """The code-fence language tag for a target file name ("" when unknown)."""
    return _LANGUAGES.get(PurePosixPath(target).suffix.lower(), "")


def _memory(inputs: PromptInputs) -> list[str]:
    memory = inputs.memory.strip() or "Nothing recorded yet: yours is among the first ideas."
    return ["## Swarm memory (what other agents already tried; do not repeat it)", memory]


def _context(inputs: PromptInputs) -> list[str]:
    """program.md, the target (when given), then the swarm memory: the stable part first."""
    program = inputs.program.strip() or "(no program.md: improve the metric as you see fit)"
    parts = ["## program.md (the goals and rules of this study)", program]
    if inputs.target_text is not None:
        fence = fence_for(inputs.target_text)
        text = inputs.target_text if inputs.target_text.endswith("\n") or not inputs.target_text \
            else inputs.target_text + "\n"
        parts += [f"## The current `{inputs.target}`", f"{fence}{language_of(inputs.target)}\n{text}{fence}"]
    return parts + _memory(inputs)


def edits_contract(target: str) -> str:
    """The answer format for SEARCH/REPLACE edit blocks."""
    return f"""## Your answer

Propose ONE idea likely to improve the metric and implement it as edits to `{target}`.
Answer in exactly this format:

DESCRIPTION: <one line saying what you changed and why, e.g. "raise the learning rate to 0.02 with a 100-step warmup">

<<<<<<< SEARCH
<lines copied exactly from the current {target}>
=======
<the lines that replace them>
>>>>>>> REPLACE

Rules:
- Every SEARCH part must match exactly one place in the current file, character for character,
  indentation included. Keep it short, but long enough to be unique.
- Use as many blocks as the idea needs; they are applied in order.
- Only `{target}` can be changed; do not propose other files.
- Make the target work as a whole: the evaluation runs it as it is."""


def whole_file_contract(target: str, fence: str) -> str:
    """The answer format for a whole new file."""
    lang = language_of(target)
    return f"""## Your answer

Propose ONE idea likely to improve the metric and write the complete new `{target}`.
Answer in exactly this format:

DESCRIPTION: <one line saying what you changed and why>

{fence}{lang}
<the complete new content of {target}>
{fence}

Rules:
- Exactly one code block, holding the whole file: not a diff, nothing left out, no "..." or
  "rest unchanged" placeholders.
- Open and close the block with {fence} exactly as shown."""


def json_contract(target: str) -> str:
    """The answer format for edits as JSON (EDIT_SCHEMA)."""
    example = {"description": "raise the learning rate to 0.02", "edits": [
        {"search": "LEARNING_RATE = 0.01", "replace": "LEARNING_RATE = 0.02"}]}
    return f"""## Your answer

Propose ONE idea likely to improve the metric and implement it as edits to `{target}`.
Answer with one JSON object and nothing else, like this:

{json.dumps(example)}

Rules:
- "description": one line saying what you changed and why.
- "edits": each "search" is text copied exactly from the current `{target}` (matching exactly
  one place), each "replace" the text that replaces it. They are applied in order."""


def constants_contract(target: str, constants: Sequence[tuple[str, str]]) -> str:
    """The answer format for new values of the target's constants (CONSTANTS_SCHEMA)."""
    listed = "\n".join(f"{name} = {value}" for name, value in constants)
    name = constants[0][0] if constants else "LEARNING_RATE"
    example = {"description": f"change {name} to explore a new setting", "values": {name: 0.02}}
    return f"""## Your answer

These are the tunable constants of `{target}` and their current values:

{listed}

Propose ONE idea likely to improve the metric: new values for one or a few of these constants.
Answer with one JSON object and nothing else, like this:

{json.dumps(example)}

Rules:
- "values": only names from the list above, each with a number different from its current value.
- "description": one line saying what you changed and why."""


def chat_messages(inputs: PromptInputs, output: str, constants: Sequence[tuple[str, str]] = (),
                  problem: str = "") -> list[dict[str, str]]:
    """System and user messages for a chat-completions request (`target_text` must be given).

    `constants` (name, current value) are listed for the constants format, which shows no
    code: small models do better with less to read. `problem`, for a retry, says what was
    wrong with an earlier answer — stated at the end of a fresh conversation rather than
    replaying the bad answer, which small models would copy.
    """
    if inputs.target_text is None:
        raise ValueError("chat prompts include the target; pass target_text")
    if output == OUTPUT_CONSTANTS:
        program = inputs.program.strip() or "(no program.md: improve the metric as you see fit)"
        parts = ["## program.md (the goals and rules of this study)", program, *_memory(inputs),
                 constants_contract(inputs.target, constants)]
    else:
        if output == OUTPUT_EDITS:
            contract = edits_contract(inputs.target)
        elif output == OUTPUT_WHOLE_FILE:
            contract = whole_file_contract(inputs.target, fence_for(inputs.target_text))
        elif output == OUTPUT_JSON:
            contract = json_contract(inputs.target)
        else:
            raise ValueError(f"unknown output format {output!r}; use one of {', '.join(OUTPUT_FORMATS)}")
        parts = [*_context(inputs), contract]
    if problem:
        parts.append(retry_message(problem, output))
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def retry_message(problem: str, output: str) -> str:
    """What the model is told after an unusable answer, so that the next one can be used."""
    shape = {
        OUTPUT_EDITS: "a DESCRIPTION line, then SEARCH/REPLACE blocks whose SEARCH lines are copied exactly "
                      "from the current file",
        OUTPUT_WHOLE_FILE: "a DESCRIPTION line, then exactly one code block holding the complete file",
        OUTPUT_JSON: 'one JSON object with "description" and "edits" whose "search" texts are copied exactly '
                     "from the current file",
        OUTPUT_CONSTANTS: 'one JSON object with "description" and "values" for constants from the list',
    }[output]
    return (f"## Note\n\nAn earlier answer to this request could not be applied: {problem}\n"
            f"Answer in the required format: {shape}.")


def agent_prompt(inputs: PromptInputs) -> str:
    """The prompt for an agent CLI (Claude Code, Codex, aider...) working in the scratch copy."""
    contract = f"""## Your task

Your working directory is a scratch copy of the study. Propose ONE idea likely to improve the
metric and implement it by editing `{inputs.target}` in place.

Rules:
- Change only `{inputs.target}`. Creating, modifying or deleting any other file in this
  directory discards your work (temporary files belong in $TMPDIR, outside this directory).
- Do not run the evaluation: the swarm runs it after you finish, under its time budget.
- When you are done, print as the last line of your output:
  DESCRIPTION: {DESCRIPTION_PLACEHOLDER}"""
    return "\n\n".join([*_context(inputs), contract]) + "\n"
