"""The prompts the `llm` and `command` mutators give a model or an agent CLI.

One place decides what an agent sees: program.md (the person's goals and rules), the current
target, the swarm memory (what other workers already tried), and the output contract (edit
blocks, a whole file, or "edit the file in place"), always with a one-line description.
Pure functions of their inputs, so the same task gives the same prompt on every worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

OUTPUT_EDITS = "edits"
OUTPUT_WHOLE_FILE = "whole-file"
OUTPUT_FORMATS = (OUTPUT_EDITS, OUTPUT_WHOLE_FILE)

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


def _context(inputs: PromptInputs) -> list[str]:
    program = inputs.program.strip() or "(no program.md: improve the metric as you see fit)"
    memory = inputs.memory.strip() or "Nothing recorded yet: yours is among the first ideas."
    parts = [
        "## program.md (the goals and rules of this study)",
        program,
        "## Swarm memory (what other agents already tried; do not repeat it)",
        memory,
    ]
    if inputs.target_text is not None:
        fence = fence_for(inputs.target_text)
        text = inputs.target_text if inputs.target_text.endswith("\n") or not inputs.target_text \
            else inputs.target_text + "\n"
        parts += [f"## The current `{inputs.target}`", f"{fence}{language_of(inputs.target)}\n{text}{fence}"]
    return parts


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


def chat_messages(inputs: PromptInputs, output: str) -> list[dict[str, str]]:
    """System and user messages for a chat-completions request (`target_text` must be given)."""
    if inputs.target_text is None:
        raise ValueError("chat prompts include the target; pass target_text")
    if output == OUTPUT_EDITS:
        contract = edits_contract(inputs.target)
    elif output == OUTPUT_WHOLE_FILE:
        contract = whole_file_contract(inputs.target, fence_for(inputs.target_text))
    else:
        raise ValueError(f"unknown output format {output!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    user = "\n\n".join([*_context(inputs), contract])
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def retry_message(problem: str, output: str) -> str:
    """What the model is told after an unusable answer, so that the next one can be used."""
    shape = ("SEARCH/REPLACE blocks whose SEARCH lines are copied exactly from the current file"
             if output == OUTPUT_EDITS else "exactly one code block holding the complete file")
    return (f"Your answer could not be applied: {problem}\n\n"
            f"Answer again in the required format: a DESCRIPTION line, then {shape}.")


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
