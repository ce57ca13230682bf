"""Catalog settings: what `pyiceberg.catalog.load_catalog` receives.

A plain frozen dataclass rather than a pydantic model: every `sluice` command reads it, and
`sluice plan` on an unchanged project must not pay for importing pydantic.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class CatalogConfig:
    """A named pyiceberg catalog and its properties (`type`, `uri`, `warehouse`, ...).

    Any catalog pyiceberg supports works (sql, rest, glue, hive); paths must already be absolute.
    Raises `TypeError` unless the name and every property key and value are strings.
    """

    name: str = "sluice"
    properties: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"catalog name must be a string, got {self.name!r}")
        if not isinstance(self.properties, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.properties.items()
        ):
            raise TypeError(f"catalog properties must map strings to strings: {self.properties!r}")

    def model_dump_json(self) -> str:
        """This configuration as JSON, e.g. to hand it to another process."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def model_validate_json(cls, data: str | bytes) -> CatalogConfig:
        """The configuration `model_dump_json` wrote; other keys are ignored."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise TypeError(f"expected a JSON object, got {raw!r}")
        return cls(**{k: v for k, v in raw.items() if k in ("name", "properties")})
