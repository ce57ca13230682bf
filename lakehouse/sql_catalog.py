"""pyiceberg's SQL catalog, parsing each table metadata file once per process.

Every load of a table, including the one pyiceberg's `commit_table` makes to validate a commit,
reads and parses the table's current metadata file: 1.5-2 ms for a small table, more as its
history grows, five times or more per write-audit-publish cycle. A metadata file never changes
once written (each commit writes a new one under a new name), so the parsed metadata is kept
by location: a load still asks the catalog database which file is current (so it always sees
other writers' commits), and parses it only if it is new to this process. A commit's own new
metadata is kept as it is returned, so the next load needs no parse at all. That question is
one prepared Core query for the location alone (0.04 ms against 0.3 ms for pyiceberg's ORM
session and row object, asked four or five times per cycle). A commit to an existing table
swaps the row's location with one prepared Core statement too, instead of pyiceberg's ORM
session and freshly built update (1.2-1.4 ms against 1.8-2.1 ms a commit, two per cycle). It
first takes the caller's table as the current one, which the swap from its location proves (or
disproves: then it goes pyiceberg's way), so a commit does not ask which file is current either.

A commit applies its updates to the current metadata as pyiceberg does, without pyiceberg's deep
copy of the result (see `_updated`). The catalog's pooled connections follow a database file
replaced since they were opened (`lakehouse.sqlite_files`): `lakehouse.catalog` keeps a catalog
for the life of the process. An SQLite catalog's journal is WAL (`journal_in_wal`): a commit
does not wait for the disk (two commits per cycle, 0.7-0.8 ms each with the default journal).
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.io import FileIO, load_file_io
from pyiceberg.serializers import Compressor, FromInputFile
from pyiceberg.table import CommitTableResponse, StagedTable, Table
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import (
    TableRequirement,
    TableUpdate,
    _apply_table_update,
    _TableMetadataUpdateContext,
    _update_table_metadata_log,
)
from pyiceberg.typedef import Identifier
from pyiceberg.utils.config import Config
from pyiceberg.utils.datetime import datetime_to_millis
from sqlalchemy import Select, Update, bindparam, select, update

from lakehouse.lru import LruCache
from lakehouse.sqlite_files import follow_replaced_file, journal_in_wal

BUDGET = 4096
"""What the kept metadata may weigh, counted in snapshots (each file weighs one more than the
snapshots it lists, a few kilobytes each once parsed): a thousand small tables, or a dozen with
a year of daily partitions each. The least recently used files go first."""


def _weight(metadata: TableMetadata) -> int:
    return 1 + len(metadata.snapshots)


def new_metadata_cache(budget: int = BUDGET) -> LruCache[TableMetadata]:
    """Parsed table metadata by metadata file location, within `budget` (in snapshots)."""
    return LruCache(budget, weight=_weight)


_parsed = new_metadata_cache()
"""Shared by every catalog of the process: a file's location names its content, whichever
catalog reads it."""


def applied(
    base: TableMetadata, updates: tuple[TableUpdate, ...]
) -> tuple[TableMetadata, _TableMetadataUpdateContext]:
    """`base` with `updates` applied, without a deep copy: every update builds new models and
    never changes the ones it was given, so nothing is shared that anyone changes. Also the
    context that says whether anything changed."""
    context = _TableMetadataUpdateContext()
    metadata = base
    for change in updates:
        metadata = _apply_table_update(change, metadata, context)
    return metadata, context


def _updated(base: TableMetadata, location: str, updates: tuple[TableUpdate, ...]) -> TableMetadata:
    """`base` with `updates` applied, as pyiceberg's `update_table_metadata` makes it for a
    commit to an existing table, without its final deep copy of the whole result (0.5-1 ms a
    commit, growing with the snapshots a table keeps; see `applied`)."""
    metadata, context = applied(base, updates)
    if context.has_changes():
        metadata = _update_table_metadata_log(metadata, location, base.last_updated_ms)
        if base.last_updated_ms == metadata.last_updated_ms:
            now = datetime_to_millis(datetime.now().astimezone())
            metadata = metadata.model_copy(update={"last_updated_ms": now})
    metadata.spec().check_compatible(metadata.schema())
    metadata.sort_order().check_compatible(metadata.schema())
    return metadata


def _response(metadata: TableMetadata, location: str) -> CommitTableResponse:
    return CommitTableResponse(metadata=metadata, metadata_location=location)  # type: ignore[call-arg]


class CachingSqlCatalog(SqlCatalog):
    """`SqlCatalog` whose table loads reuse parsed metadata (see the module docstring)."""

    metadata_cache = _parsed

    def __init__(self, name: str, **properties: str) -> None:
        super().__init__(name, **properties)
        follow_replaced_file(self.engine)  # the catalog is kept (see `lakehouse.catalog`)
        journal_in_wal(self.engine)
        self.engine.dispose()  # the connection pyiceberg opened has the default journal
        self._location_query = self._location_select()
        self._swap_statement = self._swap()
        # pyiceberg reads its configuration (environment, .pyiceberg.yaml in three folders)
        # at every metadata file it writes, for this one setting: read once, as the catalog's.
        self._none_written = Config().get_bool("legacy-current-snapshot-id") or False

    def _write_metadata(  # type: ignore[override]
        self, metadata: TableMetadata, io: FileIO, metadata_path: str
    ) -> None:
        """pyiceberg's `ToOutputFile.table_metadata`, with pyiceberg's configuration read when
        the catalog was opened."""
        output = io.new_output(metadata_path)
        with output.create(overwrite=False) as stream:
            data = metadata.model_dump_json(exclude_none=not self._none_written).encode()
            stream.write(Compressor.get_compressor(metadata_path).bytes_compressor()(data))

    def _location_select(self) -> Select[str | None]:
        """The current metadata location of table `:namespace.:name`, as pyiceberg's
        `load_table` finds its row (views of other engines excluded)."""
        stmt = select(IcebergTables.metadata_location).where(
            IcebergTables.catalog_name == self.name,
            IcebergTables.table_namespace == bindparam("namespace"),
            IcebergTables.table_name == bindparam("name"),
        )
        if (type_filter := self._iceberg_type_filter()) is not None:
            stmt = stmt.where(type_filter)
        return stmt

    def _swap(self) -> Update:
        """Point table `:namespace.:name` at `:new_location` if it is still at `:old_location`
        (pyiceberg's compare-and-swap of a commit to an existing table)."""
        return (
            update(IcebergTables)
            .where(
                IcebergTables.catalog_name == self.name,
                IcebergTables.table_namespace == bindparam("namespace"),
                IcebergTables.table_name == bindparam("name"),
                IcebergTables.metadata_location == bindparam("old_location"),
            )
            .values(
                metadata_location=bindparam("new_location"),
                previous_metadata_location=bindparam("old_location"),
            )
        )

    def _current_location(self, namespace: str, name: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(self._location_query, {"namespace": namespace, "name": name})
            location: str | None = found.scalar_one_or_none()
        return location

    def load_table(self, identifier: str | Identifier) -> Table:
        """The table as the catalog database holds it now (raises `NoSuchTableError`)."""
        namespace = Catalog.namespace_to_string(Catalog.namespace_from(identifier))
        name = Catalog.table_name_from(identifier)
        location = self._current_location(namespace, name)
        if location is None:
            raise NoSuchTableError(f"Table does not exist: {namespace}.{name}")
        return self._table_at(namespace, name, location)

    def _convert_orm_to_iceberg(self, orm_table: IcebergTables) -> Table:
        location, namespace, name = (
            orm_table.metadata_location,
            orm_table.table_namespace,
            orm_table.table_name,
        )
        if not (location and namespace and name):
            return super()._convert_orm_to_iceberg(orm_table)
        return self._table_at(namespace, name, location)

    def _table_at(self, namespace: str, name: str, location: str) -> Table:
        """Table `namespace.name` at metadata file `location`, parsed once per process."""
        metadata = self.metadata_cache.get(location)
        if metadata is None:
            io = load_file_io(properties=self.properties, location=location)
            metadata = FromInputFile.table_metadata(io.new_input(location))
            self.metadata_cache.put(location, metadata)
        return Table(
            identifier=Catalog.identifier_to_tuple(namespace) + (name,),
            metadata=metadata,
            metadata_location=location,
            io=self._load_file_io(metadata.properties, location),
            catalog=self,
        )

    def commit_table(
        self,
        table: Table,
        requirements: tuple[TableRequirement, ...],
        updates: tuple[TableUpdate, ...],
    ) -> CommitTableResponse:
        """pyiceberg's commit (requirements checked against the table's current metadata, a new
        metadata file, then a compare-and-swap of the table's row), with the swap as one
        prepared Core statement for a table that exists.

        The caller's table is most often current: it is tried first as the current metadata,
        without asking the database which file is current; the swap from its location then
        proves it was. If it was not (another writer committed since it was loaded), that
        attempt leaves nothing behind, and the commit is checked against and applied to the
        metadata the database points at, as pyiceberg does."""
        namespace = Catalog.namespace_to_string(Catalog.namespace_from(table.name()))
        name = Catalog.table_name_from(table.name())
        sane = self.engine.dialect.supports_sane_rowcount
        response = None
        if sane and not isinstance(table, StagedTable):
            response = self._swapped(table, namespace, name, requirements, updates, last=False)
        if response is None:
            location = self._current_location(namespace, name)
            if location is None or not sane:
                response = super().commit_table(table, requirements, updates)
            else:
                current = self._table_at(namespace, name, location)
                response = self._swapped(current, namespace, name, requirements, updates)
        assert response is not None
        self.metadata_cache.put(response.metadata_location, response.metadata)
        return response

    def _swapped(
        self,
        base: Table,
        namespace: str,
        name: str,
        requirements: tuple[TableRequirement, ...],
        updates: tuple[TableUpdate, ...],
        *,
        last: bool = True,
    ) -> CommitTableResponse | None:
        """The commit applied to `base` and swapped in if `base` is still current. Otherwise its
        metadata file is removed and it raises `CommitFailedException`, or returns None when
        this is not the `last` attempt."""
        try:
            staged = self._update_and_stage_table(base, base.name(), requirements, updates)
        except CommitFailedException:
            if last:
                raise
            return None
        if staged.metadata == base.metadata:  # nothing to swap: only a current `base` proves it
            return _response(base.metadata, base.metadata_location) if last else None
        self._write_metadata(staged.metadata, staged.io, staged.metadata_location)
        swap = {
            "namespace": namespace,
            "name": name,
            "old_location": base.metadata_location,
            "new_location": staged.metadata_location,
        }
        with self.engine.begin() as conn:
            swapped = conn.execute(self._swap_statement, swap).rowcount >= 1
        if swapped:
            return _response(staged.metadata, staged.metadata_location)
        with contextlib.suppress(OSError):
            staged.io.delete(staged.metadata_location)
        if last:
            raise CommitFailedException(
                f"Table has been updated by another process: {namespace}.{name}"
            )
        return None

    def _update_and_stage_table(
        self,
        current_table: Table | None,
        table_identifier: Identifier,
        requirements: tuple[TableRequirement, ...],
        updates: tuple[TableUpdate, ...],
    ) -> StagedTable:
        if current_table is None:
            return super()._update_and_stage_table(
                current_table, table_identifier, requirements, updates
            )
        for requirement in requirements:
            requirement.validate(current_table.metadata)
        metadata = _updated(current_table.metadata, current_table.metadata_location, updates)
        version = self._parse_metadata_version(current_table.metadata_location) + 1
        provider = load_location_provider(metadata.location, metadata.properties)
        location = provider.new_table_metadata_file_location(version)
        return StagedTable(
            identifier=table_identifier,
            metadata=metadata,
            metadata_location=location,
            io=self._load_file_io(properties=metadata.properties, location=location),
            catalog=self,
        )
