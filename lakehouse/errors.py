"""The one exception hierarchy of Sluice.

Every error a user can cause or fix is a `SluiceError`. It carries an optional location
(asset, file, line) so that the CLI can print where the problem is without a traceback.
`orchestrator` re-exports these and adds its own subclasses.
"""

from __future__ import annotations


class SluiceError(Exception):
    """Root of every user-facing Sluice error."""

    def __init__(
        self,
        message: str,
        *,
        asset: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.asset = asset
        self.file = file
        self.line = line

    def location(self) -> str:
        """`file:line (asset x)`, or the empty string when nothing is known."""
        where = ""
        if self.file:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.asset:
            where = f"{where} (asset {self.asset})" if where else f"asset {self.asset}"
        return where

    def __str__(self) -> str:
        where = self.location()
        return f"{where}: {self.message}" if where else self.message


class ConfigError(SluiceError):
    """Invalid configuration (sluice.toml, catalog settings)."""


class SchemaChangeError(SluiceError):
    """A new result cannot be written to the existing table without losing data."""


class UnsupportedTypeError(SluiceError):
    """A column type that Iceberg cannot store."""


class PublishConflictError(SluiceError):
    """Another writer published the same data while this one was auditing."""


class BranchError(SluiceError):
    """A branch is missing or not where a write-audit-publish cycle expects it."""


class AuditQueryError(SluiceError):
    """A check's SQL could not be run (bad column, bad predicate)."""
