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

import ast
import difflib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from autoswarm.worker.mutators.base import MutatorError
from autoswarm.worker.mutators.params import constant_values, in_flight_constants, set_constants

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


def json_contract(target: str, example: tuple[str, str] | None = None) -> str:
    """The answer format for edits as JSON (EDIT_SCHEMA).

    `example` (a real line of the target, and that line edited; see `example_edit`) is shown
    as the sample answer. Without one the sample holds placeholders only: a small model copies
    its example, and a made-up line would be a SEARCH text that is not in the target.
    """
    if example is not None:
        search, replace = example
        sample = json.dumps({"description": f"try {replace.split('#')[0].strip()}",
                             "edits": [{"search": search, "replace": replace}]})
    else:
        sample = ('{"description": "<what you changed and why>", "edits": [{"search": "<a line copied from '
                  f'{target}>", "replace": "<that line changed>"}}]}}')
    return f"""## Your answer

Propose ONE idea likely to improve the metric and implement it as edits to `{target}`.
Answer with one JSON object and nothing else, like this:

{sample}

Rules:
- "description": one line saying what you changed and why.
- "edits": each "search" is text copied exactly from the current `{target}` (matching exactly
  one place), each "replace" the text that replaces it. They are applied in order."""


def constants_contract(target: str, constants: Sequence[tuple[str, str]],
                       example: tuple[str, int | float] | None = None, tried: Sequence[str] = ()) -> str:
    """The answer format for new values of the target's constants (CONSTANTS_SCHEMA).

    `example` (a listed constant and a plausible new value; see `example_value`) is the
    sample answer; `tried` ("NAME = value" settings the swarm already evaluated from these
    values) are listed as off limits, so a small model is steered away from repeating them.
    """
    listed = "\n".join(f"{name} = {value}" for name, value in constants)
    if example is None:
        example = (constants[0][0], 2 * _number(constants[0][1])) if constants else ("NAME", 1)
    name, value = example
    sample = {"description": f"change {name} to explore a new setting", "values": {name: value}}
    avoid = ("\n\nAlready tried by the swarm (do not propose these again):\n" + "\n".join(tried)) if tried else ""
    return f"""## Your answer

These are the tunable constants of `{target}` and their current values:

{listed}{avoid}

Propose ONE idea likely to improve the metric: new values for one or a few of these constants.
Answer with one JSON object and nothing else, like this:

{json.dumps(sample)}

Rules:
- "values": only names from the list above, each with a number different from its current value.
- "description": one line saying what you changed and why."""


def chat_messages(inputs: PromptInputs, output: str, constants: Sequence[tuple[str, str]] = (),
                  problem: str = "", *, example_line: tuple[str, str] | None = None,
                  example_value: tuple[str, int | float] | None = None,
                  tried: Sequence[str] = ()) -> list[dict[str, str]]:
    """System and user messages for a chat-completions request (`target_text` must be given).

    `constants` (name, current value) are listed for the constants format, which shows no
    code: small models do better with less to read. `problem`, for a retry, says what was
    wrong with an earlier answer — stated at the end of a fresh conversation rather than
    replaying the bad answer, which small models would copy. `example_line` (json) and
    `example_value` (constants) are the sample answer's content, see `example_edit` and
    `example_setting`; `tried` the settings the constants format lists as already tried.
    """
    if inputs.target_text is None:
        raise ValueError("chat prompts include the target; pass target_text")
    if output == OUTPUT_CONSTANTS:
        program = inputs.program.strip() or "(no program.md: improve the metric as you see fit)"
        parts = ["## program.md (the goals and rules of this study)", program, *_memory(inputs),
                 constants_contract(inputs.target, constants, example_value, tried)]
    else:
        if output == OUTPUT_EDITS:
            contract = edits_contract(inputs.target)
        elif output == OUTPUT_WHOLE_FILE:
            contract = whole_file_contract(inputs.target, fence_for(inputs.target_text))
        elif output == OUTPUT_JSON:
            contract = json_contract(inputs.target, example_line)
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


# -- steering a small model: real examples, fresh constants, what was tried -----------------

OFFERED_CONSTANTS = 4   # constants offered per task in the constants format: fewer to read, rotated
_CANDIDATES = 3         # lines of the target suggested when a SEARCH text is not found
_MEMORY_LINE = re.compile(r"^- (?:\[[^\]]*\] )?(?:\([^)]*\) )?(.+)$")
_SETTING = re.compile(r"(_*[A-Z][A-Z0-9_]*) (-? ?[^\s,]+) -> (-? ?[^\s,]+)")


def _number(text: str) -> int | float:
    """A constant's value as written ("128", "-0.5", "1e-3") as a number."""
    value = ast.literal_eval(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {text!r}")
    return value


def _new_value(current: int | float, factor: float) -> int | float:
    """`current` times `factor`, written like it: ints stay ints and always change."""
    if isinstance(current, int):
        new = round(current * factor)
        return new if new not in (0, current) else current + (1 if current > 0 else -1)
    return float(f"{current * factor:.3g}")


def offered_constants(constants: Sequence[tuple[str, str]], seed: int, memory: str = "",
                      limit: int = OFFERED_CONSTANTS) -> list[tuple[str, str]]:
    """The constants one task offers the model: up to `limit`, drawn by the task's seed.

    A small model tends to change the first or the sample's constant; drawing a different
    few per task spreads the swarm over all of them. Constants other workers are editing
    right now (the memory's in-flight section) are left out while others remain. Source order.
    """
    busy = in_flight_constants(memory)
    pool = [c for c in constants if c[0] not in busy] or list(constants)
    if len(pool) > limit:
        chosen = set(random.Random(seed).sample(range(len(pool)), limit))
        pool = [c for i, c in enumerate(pool) if i in chosen]
    return pool


def tried_edits(memory: str) -> set[str]:
    """The edits the swarm memory lists (tried or in flight), without the agents' comments.

    A memory line reads `- [discard] (+0.01) NAME 1 -> 2 — comment` (or `- NAME 1 -> 2` in
    flight); the result holds `NAME 1 -> 2`, which is how the params mutator and the
    constants format describe an edit.
    """
    edits = set()
    for line in memory.splitlines():
        match = _MEMORY_LINE.match(line.strip())
        if match:
            edits.add(match.group(1).split(" — ", 1)[0].strip())
    return edits


def tried_settings(memory: str, constants: Sequence[tuple[str, str]]) -> list[str]:
    """`NAME = value` for each setting the memory shows tried from a constant's current value."""
    current = dict(constants)
    seen: list[str] = []
    for edit in sorted(tried_edits(memory)):
        for setting in edit_settings(edit, current):
            if setting not in seen:
                seen.append(setting)
    return seen


def edit_settings(edit: str, current: dict[str, str] | None = None) -> list[str]:
    """`NAME = new` for each `NAME old -> new` in an edit's description (only those whose old
    value is `current`'s, when given)."""
    return [setting_text(name, new) for name, old, new in _SETTING.findall(edit)
            if current is None or current.get(name) == old]


def example_setting(constants: Sequence[tuple[str, str]], seed: int,
                    tried: Sequence[str] = ()) -> tuple[str, int | float] | None:
    """A (constant, new value) for the constants format's sample answer, drawn by the task's seed.

    The value is near the current one (half or double): a sample a model copies is then a
    sensible edit rather than an absurd one (a sample of 0.02 became `NUM_FEATURES 128 -> 1`
    on a real model). A setting in `tried` is avoided where another draw is not.
    """
    rng = random.Random(seed)
    usable = []
    for name, text in constants:
        try:
            usable.append((name, _number(text)))
        except (ValueError, SyntaxError):
            continue
    if not usable:
        return None
    rng.shuffle(usable)
    # Half or double, in a drawn order: each constant's first choice, then its other one.
    factors = [rng.choice(((0.5, 2.0), (2.0, 0.5))) for _ in usable]
    draws = [(name, _new_value(value, pair[0])) for (name, value), pair in zip(usable, factors)]
    draws += [(name, _new_value(value, pair[1])) for (name, value), pair in zip(usable, factors)]
    fresh = [d for d in draws if setting_text(*d) not in tried]
    return (fresh or draws)[0]


def setting_text(name: str, value: int | float | str) -> str:
    """How a setting is written in the constants prompt's tried list: `NAME = value`."""
    return f"{name} = {value}"


def example_edit(source: str, seed: int) -> tuple[str, str] | None:
    """(a line of `source`, that line with a constant changed) for the json format's sample.

    The line is real, so a model that copies the sample still makes an edit that applies;
    drawn by the task's seed, so copies differ from task to task. None when the target has
    no constants to change (not Python, or none): the sample then holds placeholders.
    """
    try:
        constants = constant_values(source)
    except MutatorError:
        return None
    setting = example_setting(constants, seed)
    if setting is None:
        return None
    try:
        new_source, _ = set_constants(source, dict([setting]))
    except MutatorError:
        return None
    for old, new in zip(source.splitlines(), new_source.splitlines()):
        if old != new:
            return old.rstrip(), new.rstrip()
    return None


def candidate_lines(source: str, wanted: str, count: int = _CANDIDATES) -> list[str]:
    """Lines of `source` most like `wanted` (a SEARCH text that is not in it), for a retry."""
    lines = [line.rstrip() for line in source.splitlines() if line.strip()]
    first = next((line.strip() for line in wanted.splitlines() if line.strip()), wanted.strip())
    close = difflib.get_close_matches(first, [line.strip() for line in lines], n=count, cutoff=0.0)
    by_stripped = {line.strip(): line for line in lines}
    return [by_stripped[c] for c in close]


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
