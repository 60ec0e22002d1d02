"""Structured answers of the `llm` mutator: edits or new constant values as JSON.

A server that constrains its output to a JSON schema (response_format, Ollama's format)
returns exactly one object; one that does not may wrap it in prose or a code fence. Either
way the object is taken from the answer, checked against the shape the prompt asked for, and
turned into what the edit machinery applies. Errors are EditFormatErrors worded for a retry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from autoswarm.worker.mutators.edits import EditBlock, EditFormatError, one_line, strip_thinking


def json_object(answer: str) -> dict[str, Any]:
    """The JSON object in an answer: the whole answer, or the first `{...}` that parses."""
    text = strip_thinking(answer).strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
        decoder = json.JSONDecoder()
        for start in (i for i, ch in enumerate(text) if ch == "{"):
            try:
                value, _ = decoder.raw_decode(text, start)
                break
            except ValueError:
                continue
    if not isinstance(value, dict):
        raise EditFormatError("the answer holds no JSON object; answer with one JSON object and nothing else")
    return value


def _description(data: Mapping[str, Any]) -> str:
    description = data.get("description", "")
    return one_line(description) if isinstance(description, str) else ""


def json_edits(answer: str) -> tuple[list[EditBlock], str]:
    """(edit blocks, description) from an answer shaped like prompt.EDIT_SCHEMA."""
    data = json_object(answer)
    edits = data.get("edits")
    if not isinstance(edits, list) or not edits:
        raise EditFormatError('the JSON answer has no "edits" list; give at least one {"search": ..., "replace": ...}')
    blocks = []
    for number, edit in enumerate(edits, start=1):
        if not isinstance(edit, dict) or not isinstance(edit.get("search"), str) \
                or not isinstance(edit.get("replace"), str):
            raise EditFormatError(f'edit {number} must be an object with "search" and "replace" strings')
        if not edit["search"]:
            raise EditFormatError(f'edit {number} has an empty "search": copy the text to replace from the file')
        blocks.append(EditBlock(edit["search"], edit["replace"]))
    return blocks, _description(data)


def json_values(answer: str) -> tuple[dict[str, object], str]:
    """(new values by constant name, description) from an answer shaped like prompt.CONSTANTS_SCHEMA."""
    data = json_object(answer)
    values = data.get("values")
    if not isinstance(values, dict) or not values:
        raise EditFormatError('the JSON answer has no "values" object; give new values such as {"LR": 0.02}')
    return dict(values), _description(data)
