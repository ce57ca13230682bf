"""pyiceberg's SQL catalog, parsing each table metadata file once per process.

Every load of a table, including the one pyiceberg's `commit_table` makes to validate a commit,
reads and parses the table's current metadata file: 1.5-2 ms for a small table, more as its
history grows, five times or more per write-audit-publish cycle. A metadata file never changes
once written (each commit writes a new one under a new name), so the parsed metadata is kept
by location: a load still asks the catalog database which file is current (so it always sees
other writers' commits), and parses it only if it is new to this process. A commit's own new
metadata is kept as it is returned, so the next load needs no parse at all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.table import CommitTableResponse, Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import TableRequirement, TableUpdate

BUDGET = 4096
"""What the kept metadata may weigh, counted in snapshots (each file weighs one more than the
snapshots it lists, a few kilobytes each once parsed): a thousand small tables, or a dozen with
a year of daily partitions each. The least recently used files go first."""


def _weight(metadata: TableMetadata) -> int:
    return 1 + len(metadata.snapshots)


class MetadataCache:
    """Parsed table metadata by metadata file location, within `BUDGET`; thread-safe."""

    def __init__(self, budget: int = BUDGET) -> None:
        self._budget = budget
        self._weight = 0
        self._lock = threading.Lock()
        self._items: OrderedDict[str, TableMetadata] = OrderedDict()

    def get(self, location: str) -> TableMetadata | None:
        with self._lock:
            found = self._items.get(location)
            if found is not None:
                self._items.move_to_end(location)
            return found

    def put(self, location: str, metadata: TableMetadata) -> None:
        with self._lock:
            if location not in self._items:
                self._items[location] = metadata
                self._weight += _weight(metadata)
            self._items.move_to_end(location)
            while self._weight > self._budget and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._weight -= _weight(dropped)


_parsed = MetadataCache()
"""Shared by every catalog of the process: a file's location names its content, whichever
catalog reads it."""


class CachingSqlCatalog(SqlCatalog):
    """`SqlCatalog` whose table loads reuse parsed metadata (see the module docstring)."""

    metadata_cache = _parsed

    def _convert_orm_to_iceberg(self, orm_table: IcebergTables) -> Table:
        location, namespace, name = (
            orm_table.metadata_location,
            orm_table.table_namespace,
            orm_table.table_name,
        )
        metadata = self.metadata_cache.get(location) if location else None
        if metadata is None or not (location and namespace and name):
            table = super()._convert_orm_to_iceberg(orm_table)
            self.metadata_cache.put(table.metadata_location, table.metadata)
            return table
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
        response = super().commit_table(table, requirements, updates)
        self.metadata_cache.put(response.metadata_location, response.metadata)
        return response
