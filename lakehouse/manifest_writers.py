"""Manifest writers whose Avro set-up is built once per table schema and partition spec.

For every manifest it writes, pyiceberg rebuilds what depends only on the table's format
version, schema and partition spec: the manifest entry schema for the spec's partition type
(twice), the Avro writer tree that resolves one against the other, the JSON of the table
schema and of the Avro schema for the file header. That is 1 ms of a write-audit-publish
cycle of a small table, as much as writing the entries. `manifest_writer` keeps them per
(table uuid, format version, schema id, spec id, compression): Iceberg never gives a schema or
spec id of a table to another schema or spec, so the key names exactly what was built.

A manifest written here is the one pyiceberg would write (same schema, header and entries;
only the random sync marker differs). Format version 2 only, the version Sluice creates
tables with; other versions get pyiceberg's own writer. Relies on pyiceberg's `ManifestWriter`
and `AvroOutputFile` internals, hence pyiceberg's pin to one minor version.
"""

from __future__ import annotations

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
    ManifestEntry,
    ManifestWriter,
    ManifestWriterV2,
    write_manifest,
)
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.metadata import TableMetadata
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
_header_writer = construct_writer(META_SCHEMA)


def _prepare(writer: ManifestWriterV2) -> _Prepared:
    """What pyiceberg's `new_writer` and `_write_header` build for this writer's manifests."""
    file_schema = writer._with_partition(writer.version)
    record_schema = writer._with_partition(DEFAULT_READ_VERSION)
    metadata = writer._meta
    codec = metadata[AVRO_CODEC_KEY]
    avro_schema = AvroSchemaConversion().iceberg_to_avro(file_schema, schema_name="manifest_entry")
    header = {
        **metadata,
        _SCHEMA_KEY: json.dumps(avro_schema),
        AVRO_CODEC_KEY: CODEC_MAPPING_ICEBERG_TO_AVRO.get(codec, codec),
    }
    return _Prepared(
        file_schema,
        resolve_writer(record_schema=record_schema, file_schema=file_schema),
        metadata,
        header,
    )


class _PreparedAvroFile(AvroOutputFile[ManifestEntry]):
    def __init__(self, output_file: OutputFile, prepared: _Prepared) -> None:
        # AvroOutputFile's own __init__ would build the writer tree again.
        self.output_file = output_file
        self.file_schema = prepared.file_schema
        self.schema_name = "manifest_entry"
        self.sync_bytes = os.urandom(SYNC_SIZE)
        self.writer = prepared.writer
        self.metadata = prepared.metadata
        self._header = prepared.header

    def _write_header(self) -> None:
        _header_writer.write(self.encoder, AvroFileHeader(MAGIC, self._header, self.sync_bytes))


class _PreparedManifestWriter(ManifestWriterV2):
    def __init__(self, *args: Any, key: tuple[object, ...]) -> None:
        super().__init__(*args)
        self._key = key

    def new_writer(self) -> AvroOutputFile[ManifestEntry]:
        prepared = _prepared.get(self._key)
        if prepared is None:
            prepared = _prepare(self)
            _prepared.put(self._key, prepared)
        return _PreparedAvroFile(self._output_file, prepared)


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
