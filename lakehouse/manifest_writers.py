"""Manifest and manifest list writers whose Avro set-up is built once, not per file.

For every manifest it writes, pyiceberg rebuilds what depends only on the table's format
version, schema and partition spec: the manifest entry schema for the spec's partition type
(twice), the Avro writer tree that resolves one against the other, the JSON of the table
schema and of the Avro schema for the file header. That is 1 ms of a write-audit-publish
cycle of a small table, as much as writing the entries. `manifest_writer` keeps them per
(table uuid, schema id, spec id, compression), for format version 2 (the only one it prepares):
Iceberg never gives a schema or spec id of a table to another schema or spec, so the key names
exactly what was built.

Every snapshot also gets a manifest list, whose schema is fixed per format version: its writer
tree and Avro schema are built once per process. pyiceberg's snapshot producers (appends,
overwrites, deletes, Sluice's own) take their manifest list writer from
`pyiceberg.table.update.snapshot.write_manifest_list`, which this module replaces, on import,
by `manifest_list_writer`: the same writer with the set-up kept (0.4 ms a commit).

A file written here is the one pyiceberg would write (same schema, header and entries; only
the random sync marker differs). Format version 2 only, the version Sluice creates tables
with; other versions get pyiceberg's own writers. Relies on pyiceberg's `ManifestWriter`,
`ManifestListWriter` and `AvroOutputFile` internals, hence pyiceberg's pin to one minor
version.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any

from pyiceberg.avro.codecs import (
    AVRO_CODEC_KEY,
    CODEC_MAPPING_ICEBERG_TO_AVRO,
    AvroCompressionCodec,
)
from pyiceberg.avro.file import (
    _SCHEMA_KEY,
    MAGIC,
    META_SCHEMA,
    SYNC_SIZE,
    AvroFileHeader,
    AvroOutputFile,
)
from pyiceberg.avro.resolver import construct_writer, resolve_writer
from pyiceberg.avro.writer import Writer
from pyiceberg.io import OutputFile
from pyiceberg.manifest import (
    DEFAULT_READ_VERSION,
    MANIFEST_LIST_FILE_SCHEMAS,
    ManifestEntry,
    ManifestListWriter,
    ManifestListWriterV2,
    ManifestWriter,
    ManifestWriterV2,
    write_manifest,
    write_manifest_list,
)
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import snapshot as snapshot_producers
from pyiceberg.typedef import TableVersion
from pyiceberg.utils.schema_conversion import AvroSchemaConversion

from lakehouse.lru import LruCache


@dataclass(frozen=True)
class _Prepared:
    file_schema: Schema
    writer: Writer
    metadata: dict[str, str]
    """The manifest's metadata (codec by its Iceberg name), as the writer's `_meta` gives it."""
    header: dict[str, str]
    """The file header's: `metadata` with the Avro schema and codec."""


KEPT = 64
_prepared: LruCache[_Prepared] = LruCache(KEPT)


@functools.cache
def _header_writer() -> Writer:
    return construct_writer(META_SCHEMA)


def _header(metadata: dict[str, str], avro_schema: str) -> dict[str, str]:
    """The file header's metadata, as pyiceberg's `AvroOutputFile._write_header` makes it."""
    codec = metadata[AVRO_CODEC_KEY]
    return {
        **metadata,
        _SCHEMA_KEY: avro_schema,
        AVRO_CODEC_KEY: CODEC_MAPPING_ICEBERG_TO_AVRO.get(codec, codec),
    }


def _prepare(writer: ManifestWriterV2) -> _Prepared:
    """What pyiceberg's `new_writer` and `_write_header` build for this writer's manifests."""
    file_schema = writer._with_partition(writer.version)
    record_schema = writer._with_partition(DEFAULT_READ_VERSION)
    metadata = writer._meta
    avro_schema = AvroSchemaConversion().iceberg_to_avro(file_schema, schema_name="manifest_entry")
    return _Prepared(
        file_schema,
        resolve_writer(record_schema=record_schema, file_schema=file_schema),
        metadata,
        _header(metadata, json.dumps(avro_schema)),
    )


class _PreparedAvroFile(AvroOutputFile[Any]):
    def __init__(self, output_file: OutputFile, prepared: _Prepared, schema_name: str) -> None:
        # AvroOutputFile's own __init__ would build the writer tree again.
        self.output_file = output_file
        self.file_schema = prepared.file_schema
        self.schema_name = schema_name
        self.sync_bytes = os.urandom(SYNC_SIZE)
        self.writer = prepared.writer
        self.metadata = prepared.metadata
        self._header = prepared.header

    def _write_header(self) -> None:
        _header_writer().write(self.encoder, AvroFileHeader(MAGIC, self._header, self.sync_bytes))


class _PreparedManifestWriter(ManifestWriterV2):
    def __init__(self, *args: Any, key: tuple[object, ...]) -> None:
        super().__init__(*args)
        self._key = key

    def new_writer(self) -> AvroOutputFile[ManifestEntry]:
        prepared = _prepared.get_or_make(self._key, lambda: _prepare(self))
        return _PreparedAvroFile(self._output_file, prepared, "manifest_entry")


def manifest_writer(
    metadata: TableMetadata,
    spec: PartitionSpec,
    schema: Schema,
    output_file: OutputFile,
    snapshot_id: int,
    avro_compression: AvroCompressionCodec,
) -> ManifestWriter:
    """pyiceberg's `write_manifest` for a table with this `metadata`, its Avro set-up kept."""
    if metadata.format_version != 2:
        return write_manifest(
            metadata.format_version, spec, schema, output_file, snapshot_id, avro_compression
        )
    key = (str(metadata.table_uuid), schema.schema_id, spec.spec_id, avro_compression)
    return _PreparedManifestWriter(
        spec, schema, output_file, snapshot_id, avro_compression, key=key
    )


@functools.cache
def _list_setup() -> tuple[Schema, Writer, str]:
    """The v2 manifest list's file schema, writer tree and Avro schema (JSON)."""
    schema = MANIFEST_LIST_FILE_SCHEMAS[2]
    record_schema = MANIFEST_LIST_FILE_SCHEMAS[DEFAULT_READ_VERSION]
    avro_schema = AvroSchemaConversion().iceberg_to_avro(schema, schema_name="manifest_file")
    writer = resolve_writer(record_schema=record_schema, file_schema=schema)
    return schema, writer, json.dumps(avro_schema)


class _PreparedManifestListWriter(ManifestListWriterV2):
    def __enter__(self) -> ManifestListWriter:
        schema, writer, avro_schema = _list_setup()
        prepared = _Prepared(schema, writer, self._meta, _header(self._meta, avro_schema))
        self._writer = _PreparedAvroFile(self._output_file, prepared, "manifest_file")
        self._writer.__enter__()
        return self


def manifest_list_writer(
    format_version: TableVersion,
    output_file: OutputFile,
    snapshot_id: int,
    parent_snapshot_id: int | None,
    sequence_number: int | None,
    avro_compression: AvroCompressionCodec,
) -> ManifestListWriter:
    """pyiceberg's `write_manifest_list`, its Avro set-up kept for format version 2."""
    if format_version != 2 or sequence_number is None:
        return write_manifest_list(
            format_version,
            output_file,
            snapshot_id,
            parent_snapshot_id,
            sequence_number,
            avro_compression,
        )
    return _PreparedManifestListWriter(
        output_file, snapshot_id, parent_snapshot_id, sequence_number, avro_compression
    )


snapshot_producers.write_manifest_list = manifest_list_writer  # type: ignore[attr-defined]
