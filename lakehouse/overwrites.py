"""The files of a snapshot as manifest entries, and the one-snapshot whole-table overwrite.

A full refresh replaces every live file of the branch head by the files just written. Finding
those files means reading the head's manifest list and manifests; a snapshot never changes, so
its entries are read once per process, and not at all when this process wrote the snapshot as
such an overwrite. `lakehouse.branches` commits what `replace_all` stages.
"""

from __future__ import annotations

from pyiceberg.io import FileIO
from pyiceberg.manifest import (
    DataFile,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    ManifestWriter,
)
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.table import Table, TableProperties, Transaction
from pyiceberg.table.snapshots import Operation
from pyiceberg.table.update.snapshot import _OverwriteFiles

from lakehouse.data_files import describe_files
from lakehouse.lru import LruCache
from lakehouse.manifest_writers import manifest_writer

KEPT_ENTRIES = 10_000
"""How many live manifest entries (a data file's path and statistics each) are kept in all."""
KEPT_PER_SNAPSHOT = 1_000
"""Snapshots with more data files are read again when asked: for them, reading the manifests
is a small part of a write anyway."""
_entries: LruCache[tuple[ManifestEntry, ...]] = LruCache(KEPT_ENTRIES, weight=lambda e: 1 + len(e))
"""(table uuid, snapshot id) -> the snapshot's live entries. A snapshot never changes, so they
are read once per process, or not at all when this process committed the snapshot as a
whole-table overwrite (its entries are then exactly the files it added): the next full refresh
of the table needs no read of its manifest list and manifests (3 ms a write)."""


def live_entries(table: Table, snapshot_id: int) -> list[ManifestEntry]:
    """The entries of every data file of a snapshot, empty files included (scans prune those)."""
    snapshot = table.snapshot_by_id(snapshot_id)
    if snapshot is None or (snapshot.summary and snapshot.summary.get("total-data-files") == "0"):
        return []
    key = (str(table.metadata.table_uuid), snapshot_id)
    found = _entries.get(key)
    if found is None:
        found = tuple(
            entry
            for manifest in snapshot.manifests(table.io)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
        )
        if len(found) <= KEPT_PER_SNAPSHOT:
            _entries.put(key, found)
    return list(found)


def remember_entries(table: Table, head: int, added: list[DataFile]) -> None:
    """Record the live entries of `head`, an overwrite snapshot of `table` that replaced every
    file by `added`, as reading its manifests would give them (sequence numbers and the spec
    id, which pyiceberg's file description leaves unset, inherited from the manifest that the
    files were written to, with the table's default spec)."""
    snapshot = table.snapshot_by_id(head)
    if snapshot is None or len(added) > KEPT_PER_SNAPSHOT:
        return
    sequence = snapshot.sequence_number
    for data_file in added:
        data_file.spec_id = table.metadata.default_spec_id
    entries = tuple(
        ManifestEntry.from_args(
            status=ManifestEntryStatus.ADDED,
            snapshot_id=head,
            sequence_number=sequence,
            file_sequence_number=sequence,
            data_file=data_file,
        )
        for data_file in added
    )
    _entries.put((str(table.metadata.table_uuid), head), entries)


def live_data_files(table: Table, snapshot_id: int) -> set[str]:
    return {entry.data_file.file_path for entry in live_entries(table, snapshot_id)}


class _ReplaceAll(_OverwriteFiles):
    """pyiceberg's overwrite snapshot, for the case where every live file of the branch head
    goes: the caller read those files' entries once, where `_OverwriteFiles` reads every
    manifest twice more to find them again.

    One overwrite snapshot rather than pyiceberg's delete-then-append pair leaves half the
    snapshots behind per full refresh and stages half the metadata updates. It relies on
    `_OverwriteFiles` internals, hence pyiceberg's pin to one minor version.
    """

    def __init__(
        self,
        tx: Transaction,
        io: FileIO,
        branch: str,
        properties: dict[str, str],
        replaced: list[ManifestEntry],
    ) -> None:
        super().__init__(
            operation=Operation.OVERWRITE,
            transaction=tx,
            io=io,
            branch=branch,
            snapshot_properties=properties,
        )
        self._replaced = replaced
        for entry in replaced:
            self.delete_data_file(entry.data_file)

    def _existing_manifests(self) -> list[ManifestFile]:
        return []  # nothing of the branch head survives

    def new_manifest_writer(self, spec: PartitionSpec) -> ManifestWriter:
        metadata = self._transaction.table_metadata
        return manifest_writer(
            metadata,
            spec,
            self.schema(),
            self.new_manifest_output(),
            self._snapshot_id,
            self._compression,
        )

    def _manifests(self) -> list[ManifestFile]:
        """One manifest holding the added files and the replaced ones as deleted entries (a
        manifest may mix them), written on this thread; pyiceberg writes one of each, on two
        worker threads (1 ms more per write for a small table). Replaced files of an older
        partition spec take pyiceberg's way: a manifest has one spec."""
        spec = self._transaction.table_metadata.spec()
        deleted = self._deleted_entries()
        if any(entry.data_file.spec_id != spec.spec_id for entry in deleted):
            return super()._manifests()
        with self.new_manifest_writer(spec=spec) as writer:
            for data_file in self._added_data_files:
                writer.add(
                    ManifestEntry.from_args(
                        status=ManifestEntryStatus.ADDED,
                        snapshot_id=self._snapshot_id,
                        sequence_number=None,
                        file_sequence_number=None,
                        data_file=data_file,
                    )
                )
            for entry in deleted:
                writer.add_entry(entry)
        return self._process_manifests([writer.to_manifest_file()])

    def _deleted_entries(self) -> list[ManifestEntry]:
        return [
            ManifestEntry.from_args(
                status=ManifestEntryStatus.DELETED,
                snapshot_id=self.snapshot_id,
                sequence_number=entry.sequence_number,
                file_sequence_number=entry.file_sequence_number,
                data_file=entry.data_file,
            )
            for entry in self._replaced
        ]


def replace_all(
    tx: Transaction,
    io: FileIO,
    replaced: list[ManifestEntry],
    paths: tuple[str, ...],
    properties: dict[str, str],
    branch: str,
) -> list[DataFile]:
    """Stage one overwrite snapshot on `branch`: the `replaced` entries out, `paths` in; returns
    the data files added.

    The files are described as `add_files` describes them (same name mapping, same statistics:
    `lakehouse.data_files`)."""
    metadata = tx.table_metadata
    if metadata.name_mapping() is None:  # as `add_files` does: the files carry no field ids
        mapping = metadata.schema().name_mapping.model_dump_json()
        tx.set_properties({TableProperties.DEFAULT_NAME_MAPPING: mapping})
        metadata = tx.table_metadata
    added = describe_files(io, metadata, paths)
    with _ReplaceAll(tx, io, branch, properties, replaced) as overwrite:
        for data_file in added:
            overwrite.append_data_file(data_file)
    return added
