"""Structured answers: the `llm` mutator's edits or new constant values as JSON, and the JSON
report an agent CLI may end with (what it cost).

A server that constrains its output to a JSON schema (response_format, Ollama's format)
returns exactly one object; one that does not may wrap it in prose or a code fence. Either
way the object is taken from the answer, checked against the shape the prompt asked for, and
turned into what the edit machinery applies. Errors are EditFormatErrors worded for a retry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from autoswarm.worker.mutators.base import Usage
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


def agent_report(output: str) -> tuple[Usage, str]:
    """What an agent CLI says it cost, and its answer text, from a JSON report in its output.

    Claude Code with `--output-format json` ends with one object such as {"type": "result",
    "result": "...", "total_cost_usd": 0.0123, "usage": {"input_tokens": ..., "output_tokens": ...}};
    other agents print nothing of the kind: (no usage, "").
    """
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict) or not ({"total_cost_usd", "cost_usd", "usage"} & data.keys()):
            continue
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens = Usage.of({"prompt_tokens": sum(_count(usage.get(k)) for k in (
            "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "prompt_tokens")),
            "completion_tokens": _count(usage.get("output_tokens")) + _count(usage.get("completion_tokens"))})
        cost = data.get("total_cost_usd", data.get("cost_usd", 0.0))
        cost = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0 else 0.0
        text = data.get("result") if isinstance(data.get("result"), str) else ""
        return Usage(tokens.prompt_tokens, tokens.completion_tokens, cost if math.isfinite(cost) else 0.0), text
    return Usage(), ""


def _count(value: object) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0
