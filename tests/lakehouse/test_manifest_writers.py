"""A manifest written with the kept Avro set-up is the one pyiceberg writes, for every schema and
partition spec a table goes through; so is a manifest list, whoever commits the snapshot."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.avro.file import AvroFile
from pyiceberg.catalog import Catalog
from pyiceberg.manifest import (
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    ManifestWriter,
    read_manifest_list,
    write_manifest,
    write_manifest_list,
)
from pyiceberg.table import Table
from pyiceberg.table.update import snapshot as snapshot_producers
from pyiceberg.types import StringType

from lakehouse.catalog import ensure_namespace, open_catalog
from lakehouse.config import CatalogConfig
from lakehouse.data_files import describe_file
from lakehouse.manifest_writers import manifest_list_writer, manifest_writer

ROWS = pa.table({"id": pa.array([7, 7], pa.int64()), "amount": pa.array([1.5, 2.5])})
SNAPSHOT = 1234


def _table(catalog_config: CatalogConfig) -> tuple[Catalog, Table]:
    catalog = open_catalog(catalog_config)
    ensure_namespace(catalog, "bronze")
    table = catalog.create_table("bronze.t", schema=ROWS.schema)
    with table.update_spec() as spec:
        spec.add_identity("id")
    return catalog, catalog.load_table("bronze.t")


def _write(table: Table, make: Any, rows: pa.Table) -> ManifestFile:
    """A manifest of one data file holding `rows`, written by `make` (pyiceberg's
    `write_manifest` or ours) for the table's current schema and spec."""
    name = uuid.uuid4().hex
    data = Path(table.location().removeprefix("file://")) / "data" / f"{name}.parquet"
    data.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, data)
    data_file = describe_file(table.io, table.metadata, f"{table.location()}/data/{data.name}")
    output = table.io.new_output(f"{table.location()}/metadata/{name}-m0.avro")
    first = table.metadata if make is manifest_writer else table.metadata.format_version
    writer: ManifestWriter
    with make(first, table.spec(), table.schema(), output, SNAPSHOT, "zstandard") as writer:
        writer.add(
            ManifestEntry.from_args(
                status=ManifestEntryStatus.ADDED,
                snapshot_id=SNAPSHOT,
                data_file=data_file,
            )
        )
    return writer.to_manifest_file()


def _read(table: Table, manifest: ManifestFile) -> tuple[dict[str, str], list[ManifestEntry]]:
    """The manifest's header metadata and its entries, as pyiceberg reads them."""
    with AvroFile[Any](table.io.new_input(manifest.manifest_path)) as avro:
        header = dict(avro.header.meta)
    return header, manifest.fetch_manifest_entry(table.io, discard_deleted=False)


def _same_as_pyicebergs(table: Table, rows: pa.Table) -> tuple[dict[str, str], ManifestEntry]:
    ours, theirs = _write(table, manifest_writer, rows), _write(table, write_manifest, rows)
    (our_header, our_entries), (their_header, their_entries) = (
        _read(table, ours),
        _read(table, theirs),
    )
    assert our_header == their_header
    [entry], [their_entry] = our_entries, their_entries
    assert entry.data_file.partition == their_entry.data_file.partition
    assert entry.data_file.record_count == their_entry.data_file.record_count
    assert entry.data_file.lower_bounds == their_entry.data_file.lower_bounds
    assert ours.partitions == theirs.partitions
    assert ours.added_rows_count == theirs.added_rows_count == rows.num_rows
    return our_header, entry


def test_manifests_are_pyicebergs_through_schema_and_spec_changes(
    catalog_config: CatalogConfig,
) -> None:
    catalog, table = _table(catalog_config)
    header, entry = _same_as_pyicebergs(table, ROWS)
    assert entry.data_file.partition[0] == 7
    _same_as_pyicebergs(table, ROWS)  # the kept set-up

    with table.update_schema() as update:
        update.add_column("region", StringType())
    table = catalog.load_table("bronze.t")
    wider = ROWS.append_column("region", pa.array(["eu", "eu"]))
    header, _ = _same_as_pyicebergs(table, wider)
    assert '"region"' in header["schema"]

    with table.update_spec() as spec:
        spec.add_identity("region")
    table = catalog.load_table("bronze.t")
    header, entry = _same_as_pyicebergs(table, wider)
    assert '"region"' in header["partition-spec"]
    assert (entry.data_file.partition[0], entry.data_file.partition[1]) == (7, "eu")


def test_manifest_lists_are_pyicebergs_for_every_commit(catalog_config: CatalogConfig) -> None:
    assert snapshot_producers.write_manifest_list is manifest_list_writer  # pyiceberg's commits
    _, table = _table(catalog_config)
    manifests = [_write(table, manifest_writer, ROWS), _write(table, manifest_writer, ROWS)]
    lists = []
    for make in (manifest_list_writer, write_manifest_list):
        path = f"{table.location()}/metadata/snap-{uuid.uuid4().hex}.avro"
        with make(2, table.io.new_output(path), SNAPSHOT, 99, 7, "zstandard") as writer:
            writer.add_manifests(manifests)
        lists.append(table.io.new_input(path))
    ours, theirs = lists
    with AvroFile[Any](ours) as mine, AvroFile[Any](theirs) as pyicebergs:
        assert dict(mine.header.meta) == dict(pyicebergs.header.meta)
        assert mine.header.meta["parent-snapshot-id"] == "99"
    read = list(read_manifest_list(ours))
    assert read == list(read_manifest_list(theirs))
    assert [m.manifest_path for m in read] == [m.manifest_path for m in manifests]
    assert {m.sequence_number for m in read} == {7}

    table.append(ROWS)  # a commit of pyiceberg's own: its manifest list is read back whole
    assert table.scan().to_arrow().num_rows == ROWS.num_rows
