"""Reading a model's answer: SEARCH/REPLACE edit blocks, whole-file answers, the description.

Pure text in, text out: no I/O, so every rule here is unit tested on its own.

The edit-block format is the one aider made common, which instruction-tuned models already
know::

    <<<<<<< SEARCH
    lines copied exactly from the target
    =======
    the lines that replace them
    >>>>>>> REPLACE

A whole-file answer is the complete new target inside one fenced code block. Either way the
answer carries a line `DESCRIPTION: <one line>` saying what the idea is.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

# Models sometimes write 5-9 marker characters instead of 7; accept what is unambiguous.
_SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
# `DESCRIPTION: x`, also as models decorate it: `**Description:** x`, `- DESCRIPTION: x`, `# Description: x`.
_DESCRIPTION = re.compile(r"^[\s#>*_-]*DESCRIPTION[*_]*\s*:[\s*_]*(.*?)[\s*_]*$", re.IGNORECASE)
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
# Reasoning models (DeepSeek-R1, Qwen3...) served by vLLM/llama.cpp/Ollama often prepend their
# chain of thought; it can contain drafts of edit blocks that must not be applied.
_THINKING = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.IGNORECASE | re.DOTALL)

DESCRIPTION_MAX_CHARS = 200


class EditError(ValueError):
    """An answer cannot be used; str() says why in words a model can act on when retried."""


class EditFormatError(EditError):
    """The answer does not follow the output contract (no block, unclosed block, no file...)."""


class EditApplyError(EditError):
    """The blocks are well formed but do not fit the target (SEARCH text missing or ambiguous)."""


@dataclass(frozen=True)
class EditBlock:
    """One SEARCH/REPLACE pair; both texts are whole lines, each ending with a newline."""

    search: str
    replace: str


def strip_thinking(answer: str) -> str:
    """The answer without `<think>...</think>` sections (and an unclosed leading one)."""
    text = _THINKING.sub("", answer)
    lowered = text.lstrip().lower()
    if lowered.startswith(("<think>", "<thinking>", "<reasoning>")):
        return ""  # the model ran out of tokens while thinking: nothing usable follows
    return text


def parse_edit_blocks(answer: str) -> list[EditBlock]:
    """The SEARCH/REPLACE blocks of an answer, in order.

    Prose, code fences and file names around the blocks are ignored. Raises EditFormatError
    when there is no block, or a block is not closed in the SEARCH, =======, REPLACE order.
    """
    lines = strip_thinking(answer).splitlines()
    blocks: list[EditBlock] = []
    i = 0
    while i < len(lines):
        if _DIVIDER.match(lines[i]) or _REPLACE.match(lines[i]):
            # A stray marker means the model mangled a block; applying the rest would be a guess.
            raise EditFormatError(
                f"line {i + 1}: {lines[i].strip()!r} appears outside a block; every block must be "
                "<<<<<<< SEARCH, the old lines, =======, the new lines, >>>>>>> REPLACE"
            )
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        where = f"block {len(blocks) + 1} (line {i + 1})"
        search, i = _section(lines, i + 1, _DIVIDER, where, "======= after the SEARCH lines",
                             "no ======= line after SEARCH")
        replace, i = _section(lines, i + 1, _REPLACE, where, ">>>>>>> REPLACE after the new lines",
                              "not closed; end it with >>>>>>> REPLACE (was the answer cut off?)")
        i += 1
        blocks.append(EditBlock(search=_joined(search), replace=_joined(replace)))
    if not blocks:
        raise EditFormatError(
            "no SEARCH/REPLACE block found; answer with blocks of the form "
            "<<<<<<< SEARCH / old lines / ======= / new lines / >>>>>>> REPLACE"
        )
    return blocks


def _section(lines: Sequence[str], i: int, end: re.Pattern[str], where: str, expected: str,
             missing: str) -> tuple[list[str], int]:
    """The lines from `i` up to the `end` marker, and the marker's index; any other marker on
    the way, or no end marker at all, is a format error."""
    body: list[str] = []
    while i < len(lines) and not end.match(lines[i]):
        if any(marker.match(lines[i]) for marker in (_SEARCH, _DIVIDER, _REPLACE) if marker is not end):
            raise EditFormatError(f"{where}: expected {expected}, found {lines[i].strip()!r} at line {i + 1}")
        body.append(lines[i])
        i += 1
    if i == len(lines):
        raise EditFormatError(f"{where}: {missing}")
    return body, i


def _joined(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def apply_edit_blocks(source: str, blocks: Sequence[EditBlock]) -> str:
    """`source` with each block applied in order (a block sees the result of the previous ones).

    A SEARCH text must occur exactly once: first as is, then comparing lines without their
    trailing whitespace (models often drop it). Line endings follow the source's (\\r\\n kept).
    Raises EditApplyError naming the block when its SEARCH text is empty, missing or ambiguous.
    """
    newline = "\r\n" if "\r\n" in source else "\n"
    # Work on \n text; a final line without a newline gets one for matching, removed after.
    text = source.replace("\r\n", "\n")
    missing_final_newline = bool(text) and not text.endswith("\n")
    if missing_final_newline:
        text += "\n"
    for number, block in enumerate(blocks, 1):
        if not block.search.strip():
            raise EditApplyError(
                f"block {number}: the SEARCH part is empty; copy the exact lines to replace from the target"
            )
        text = _apply_one(text, block, number)
    if missing_final_newline and text.endswith("\n"):
        text = text[:-1]
    return text.replace("\n", newline) if newline != "\n" else text


def _apply_one(text: str, block: EditBlock, number: int) -> str:
    count = text.count(block.search)
    if count == 1:
        return text.replace(block.search, block.replace, 1)
    if count > 1:
        raise EditApplyError(
            f"block {number}: the SEARCH lines occur {count} times in the target; "
            "include more surrounding lines so that they match exactly one place"
        )
    # Second chance: the same lines up to trailing whitespace.
    lines = text.splitlines(keepends=True)
    wanted = [line.rstrip() for line in block.search.splitlines()]
    stripped = [line.rstrip() for line in lines]
    starts = [i for i in range(len(lines) - len(wanted) + 1) if stripped[i:i + len(wanted)] == wanted]
    if len(starts) == 1:
        start = starts[0]
        return "".join(lines[:start]) + block.replace + "".join(lines[start + len(wanted):])
    if len(starts) > 1:
        raise EditApplyError(
            f"block {number}: the SEARCH lines occur {len(starts)} times in the target; "
            "include more surrounding lines so that they match exactly one place"
        )
    first = next((line for line in block.search.splitlines() if line.strip()), "")
    raise EditApplyError(
        f"block {number}: the SEARCH lines are not in the target (first line: {first.strip()[:80]!r}); "
        "copy them exactly, character for character, from the current target"
    )


def parse_whole_file(answer: str) -> str:
    """The new target from a whole-file answer: the content of its one fenced code block.

    A fence is three or more backticks (or tildes) and closes with at least as many, so a
    target that itself contains ``` is fenced with ````. Raises EditFormatError when there is
    no fenced block, when it is not closed, or when there are several (which one would be
    the file is a guess).
    """
    lines = strip_thinking(answer).splitlines()
    bodies: list[list[str]] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        marker = opening.group(2)
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if closing and closing.group(2)[0] == marker[0] and len(closing.group(2)) >= len(marker) \
                    and not closing.group(3).strip():
                break
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise EditFormatError(
                f"the code block opened with {marker} is not closed (was the answer cut off?); "
                f"end the file with a line {marker}"
            )
        bodies.append(body)
        i += 1
    if not bodies:
        raise EditFormatError("no fenced code block found; put the complete new file inside one ``` block")
    if len(bodies) > 1:
        raise EditFormatError(
            f"found {len(bodies)} code blocks; answer with exactly one, holding the complete new file"
        )
    return _joined(bodies[0])


def match_line_endings(new_text: str, old_text: str) -> str:
    """`new_text` with the old text's line-ending convention and final-newline presence."""
    newline = "\r\n" if "\r\n" in old_text else "\n"
    text = new_text.replace("\r\n", "\n")
    if old_text and not old_text.endswith(("\n", "\r")) and text.endswith("\n"):
        text = text[:-1]
    return text.replace("\n", newline) if newline != "\n" else text


def parse_description(answer: str) -> str:
    """The answer's first `DESCRIPTION:` line, as one line of at most 200 characters.

    Lines inside edit blocks never count; one outside code fences is preferred to one inside
    (a model that wraps its whole answer in a fence still has its description found). Returns
    "" when there is none; the caller decides on a fallback.
    """
    outside: list[str] = []
    inside: list[str] = []
    in_block = False
    fence = ""
    for line in strip_thinking(answer).splitlines():
        if _SEARCH.match(line):
            in_block = True
            continue
        if _REPLACE.match(line):
            in_block = False
            continue
        if in_block:
            continue
        opening = _FENCE.match(line)
        if opening:
            marker = opening.group(2)
            if not fence:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and not opening.group(3).strip():
                fence = ""
            continue
        match = _DESCRIPTION.match(line)
        if match and match.group(1).strip():
            (inside if fence else outside).append(match.group(1))
    found = (outside or inside or [""])[0]
    return one_line(found)


def last_description(output: str, ignore: str = "") -> str:
    """The last `DESCRIPTION:` line of an agent's output ("" when none), as one line.

    `ignore` is a description to skip: the prompt's own template line, in case the agent
    echoes its prompt.
    """
    for line in reversed(strip_thinking(output).splitlines()):
        match = _DESCRIPTION.match(line)
        if match and match.group(1).strip() and match.group(1).strip() != ignore:
            return one_line(match.group(1))
    return ""


def one_line(text: str, limit: int = DESCRIPTION_MAX_CHARS) -> str:
    """Whitespace collapsed to single spaces, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split()).strip("`")
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def describe_change(old: str, new: str) -> str:
    """A fallback description when the model gave none: the first changed line, before -> after."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        before = one_line(old_lines[i1], 80) if i1 < i2 else ""
        after = one_line(new_lines[j1], 80) if j1 < j2 else ""
        if before and after:
            return one_line(f"edit without description: {before} -> {after}")
        return one_line(f"edit without description: {'removed ' + before if before else 'added ' + after}")
    return "edit without description"
