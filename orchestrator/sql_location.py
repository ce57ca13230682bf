"""Where in a SQL asset's file an error is: the file, and a line of the file when known.

Header lines, checks and the query are read by different modules, and each of their errors
must name the file and the line of the file (header included, not of the query alone) so that
it can be fixed without searching. `Where` is how they all build those errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import DefinitionError, SqlParseError


@dataclass(frozen=True)
class Where:
    """Location for error messages: the file and a line in it."""

    file: str
    line: int | None
    asset: str | None = None

    def error(self, message: str) -> DefinitionError:
        return DefinitionError(message, asset=self.asset, file=self.file, line=self.line)

    def parse_error(self, message: str, line: int | None = None) -> SqlParseError:
        at = self.line if line is None else line
        return SqlParseError(message, asset=self.asset, file=self.file, line=at)
