"""Errors raised while loading, validating and running assets.

All derive from `lakehouse.errors.SluiceError`, so one `except SluiceError` catches every user
mistake; the CLI prints them with their location and exits 2 (definition) or 1 (run).
"""

from __future__ import annotations

from lakehouse.errors import SluiceError


class DefinitionError(SluiceError):
    """An asset or project definition is invalid; nothing runs."""


class InvalidNameError(DefinitionError):
    """An asset, layer or schedule name that is not a valid identifier."""


class DuplicateAssetError(DefinitionError):
    """Two definitions produce the same asset key."""


class UnknownAssetError(DefinitionError):
    """A reference (upstream, selection, check target) names no asset."""


class CycleError(DefinitionError):
    """The asset graph has a dependency cycle."""


class SqlParseError(DefinitionError):
    """A SQL asset or header that sqlglot cannot parse."""


class SelectionError(SluiceError):
    """A selection expression matches nothing or cannot be parsed."""


class AssetExecutionError(SluiceError):
    """User code raised, or returned something Sluice cannot write."""


class UnsupportedReturnTypeError(AssetExecutionError):
    """An asset function returned a type Sluice cannot write."""
