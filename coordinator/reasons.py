"""Why a result failed, in one line: what `results.tsv`, `autoswarm show` and the web page print.

The reason is the last meaningful line of the log tail (for a Python crash, the exception),
kept from its front: a long message loses its end, never the exception's name.
"""

from __future__ import annotations

REASON_CHARS = 300
# Lines that carry no words: Python 3.11+ traceback carets and underlines.
_DECORATION = set("^~ -=")


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters at its end, with "…" when something was cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def last_line(log_tail: str) -> str:
    """The last line of a log that says something (not blank, not only carets)."""
    for line in reversed(log_tail.splitlines()):
        if line.strip() and not set(line.strip()) <= _DECORATION:
            return line.strip()
    return ""


def failure_reason(status: str, log_tail: str, limit: int = REASON_CHARS) -> str:
    """One line on why a result with this worker `status` failed; "" for a result that did not."""
    if status == "ok":
        return ""
    line = last_line(log_tail)
    return shorten(f"{status}: {line}" if line else f"{status} (the log says nothing more)", limit)
