"""Terminal output that cannot be garbled by the text it shows.

rich reads `[...]` as markup in every string it prints, table cells included: a worker named
`lab[gpu] box` would show as `lab box`, the hint `pip install 'autoswarm[plot]'` as
`pip install 'autoswarm'`. Text that a user, a study or a worker supplied goes through here.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text


def plain(cell: RenderableType) -> RenderableType:
    """A table cell shown as it is: strings become Text (never parsed as markup)."""
    return Text(cell) if isinstance(cell, str) else cell


def add_plain_row(table: Table, *cells: RenderableType) -> None:
    """`table.add_row` with every string cell shown literally."""
    table.add_row(*(plain(c) for c in cells))


def labelled(label: str, style: str, message: str) -> Text:
    """`label message` with the label styled and the message literal (errors, warnings)."""
    return Text.assemble((label, style), " ", message)
