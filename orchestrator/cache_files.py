"""The JSON files of `catalog/cache/`: written atomically, read back only if they are the
version the reader expects. A cache file that is missing, unreadable, half-written by another
tool or of another version reads as absent: a cache only ever saves time."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, data: object) -> None:
    """Replace `path` with `data` as JSON, or leave it as it was: readers never see half a file.

    Failures (read-only folder, full disk) are ignored: a cache that cannot be written only
    costs the next run some time.
    """
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, separators=(",", ":"))
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise


def read_json_object(path: Path, **expected: object) -> dict[str, Any] | None:
    """The JSON object stored at `path` if it holds every `expected` key with exactly that
    value (a format or version tag); None otherwise."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or any(data.get(k) != v for k, v in expected.items()):
        return None
    return data


def section(data: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """`data[name]` when it is an object, else empty (a cache without that section)."""
    found = data.get(name) if data is not None else None
    return found if isinstance(found, dict) else {}
