"""Names: what a layer, an asset or a column may be called."""

from __future__ import annotations

import re

from orchestrator.errors import InvalidNameError

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate_name(
    value: str, what: str, *, file: str | None = None, line: int | None = None
) -> str:
    """Return `value` if it is a valid identifier part, else raise `InvalidNameError`."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise InvalidNameError(
            f"invalid {what} {value!r}: use letters, digits and underscores, "
            "not starting with a digit",
            file=file,
            line=line,
        )
    return value
