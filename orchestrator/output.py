"""Where a command prints: rich's console, created only when a line needs it."""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PLAIN_WIDTH = 240
"""Width of the console when it is not a terminal (output to a file or a pipe)."""


class Output:
    """Where a command prints: a rich `Console`, made on first use.

    Importing rich is a sizeable share of a `sluice plan` that finds nothing to do, which
    prints one unstyled line: `line` prints such lines without rich, byte for byte as the
    console would.
    """

    def __init__(self) -> None:
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            console = Console(highlight=False)
            if not console.is_terminal:
                console = Console(highlight=False, width=PLAIN_WIDTH)
            self._console = console
        return self._console

    def line(self, text: str) -> None:
        """`console.print(text)`: rich is imported only if it could print something else."""
        if self._console is None and _prints_as_is(text):
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        else:
            self.console.print(text)


_EMOJI_CODE = re.compile(r":\S*:")


def _prints_as_is(text: str) -> bool:
    """Whether the console prints `text` as it is, plus a newline: one line of printable ASCII
    (one cell per character) without markup (`[`) or emoji codes (`:name:`), and narrower than
    any width the console could take (see `_narrowest_width`), so that it is never wrapped."""
    return (
        text.isascii()
        and text.isprintable()
        and "[" not in text
        and _EMOJI_CODE.search(text) is None
        and len(text) < _narrowest_width()
    )


def _narrowest_width() -> int:
    """At most the console's width: rich takes `$COLUMNS` or the size of a standard stream's
    terminal, else 80 (`PLAIN_WIDTH` when not a terminal); 0 counts as unknown."""
    widths = [80]
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        widths.append(int(columns))
    for fd in (0, 1, 2):
        try:
            widths.append(os.get_terminal_size(fd).columns)
        except (OSError, ValueError):
            continue
    return min(width for width in widths if width > 0)
