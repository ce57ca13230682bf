"""Validation of `sluice.toml` with pydantic, imported only when a file must be validated.

The pydantic models are built from the dataclasses of `orchestrator.config`, which stay the
single definition of every setting: a model per section with the same field names, types and
defaults, each field's `metadata` as its constraints (`ge`, `gt`, `le`: pydantic `Field`
arguments; `validator`: an `AfterValidator`), frozen and rejecting unknown keys.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from lakehouse.errors import ConfigError
from orchestrator.config import SECTIONS

_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid")


def validate(raw: dict[str, Any], file: str) -> dict[str, Any]:
    """`raw` (a parsed `sluice.toml`) validated, as plain data: `catalog` and every section.

    Raises `ConfigError` naming `file` and the first invalid key, as `[section.key] message`.
    """
    try:
        parsed = config_file_model().model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"[{where}] {first['msg']}", file=file) from exc
    return parsed.model_dump()


@functools.cache
def config_file_model() -> type[BaseModel]:
    """The model of a whole `sluice.toml`: `[catalog]` (any keys) and every section."""
    fields: dict[str, Any] = {"catalog": (dict[str, Any], Field(default_factory=dict))}
    for name, section in SECTIONS.items():
        model = section_model(section)
        fields[name] = (model, Field(default_factory=model))
    return create_model("_ConfigFile", __config__=_MODEL_CONFIG, **fields)


def section_model(section: type[Any]) -> type[BaseModel]:
    """The pydantic model of one section dataclass of `orchestrator.config`."""
    hints = typing.get_type_hints(section)
    fields: dict[str, Any] = {}
    for spec in dataclasses.fields(section):
        constraints = dict(spec.metadata)
        annotation: Any = hints[spec.name]
        validator = constraints.pop("validator", None)
        if validator is not None:
            annotation = Annotated[annotation, AfterValidator(validator)]
        if spec.default is dataclasses.MISSING:
            raise TypeError(f"{section.__name__}.{spec.name} needs a default")
        fields[spec.name] = (annotation, Field(default=spec.default, **constraints))
    return create_model(
        section.__name__, __config__=_MODEL_CONFIG, __doc__=section.__doc__, **fields
    )
