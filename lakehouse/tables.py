"""Tables: creation from a first result, Iceberg-storable Arrow types, safe schema evolution.

Evolution follows dbt's `append_new_columns`: new columns are added, legal promotions (int ->
long, float -> double, wider decimals) are applied, a column missing from a new result stays in
the table as nulls. A table type is never narrowed: a result whose column is narrower than the
table's (int into long) is written at the table's type, losslessly. Anything else that would
lose data (a type change, dropping a required column) is rejected before a file is written.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
from pyiceberg.io.pyarrow import _pyarrow_to_schema_without_ids, schema_to_pyarrow
from pyiceberg.schema import Schema, promote
from pyiceberg.table import Table, TableProperties
from pyiceberg.transforms import Transform
from pyiceberg.types import IcebergType, NestedField

from lakehouse.catalog import ensure_namespace
from lakehouse.errors import SchemaChangeError, UnsupportedTypeError
from lakehouse.lru import LruCache

INITIAL_PROPERTY = "sluice.initial"
TABLE_PROPERTIES = {
    TableProperties.MANIFEST_MERGE_ENABLED: "true",
    TableProperties.MANIFEST_MIN_MERGE_COUNT: "16",
    TableProperties.METADATA_PREVIOUS_VERSIONS_MAX: "10",
}
"""Given to every table Sluice creates (and by maintenance to older tables that lack them).
Appends and `add_files` merge small manifests once 16 have piled up, so planning a scan of a
table written one partition at a time reads a few manifests, not one per write. The metadata
log names the 10 previous metadata files, not Iceberg's default 100: every commit copies and
rewrites the log, and nothing in Sluice reads it (rollback goes through snapshots, which
`[maintenance] keep_last` keeps)."""


def split_identifier(identifier: str) -> tuple[str, str]:
    """`"silver.orders"` -> `("silver", "orders")`."""
    namespace, _, name = identifier.rpartition(".")
    return namespace, name


def load_table(catalog: Catalog, identifier: str) -> Table | None:
    """The table, freshly loaded, or None when it does not exist yet."""
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        return None


def _storable(dtype: pa.DataType, column: str) -> pa.DataType:
    """The Arrow type Iceberg can store for `dtype` (raises for types it cannot)."""
    t = pa.types
    if t.is_dictionary(dtype):
        return _storable(dtype.value_type, column)
    if t.is_int8(dtype) or t.is_int16(dtype) or t.is_uint8(dtype) or t.is_uint16(dtype):
        return pa.int32()
    if t.is_uint32(dtype) or t.is_uint64(dtype):
        return pa.int64()
    if t.is_float16(dtype):
        return pa.float32()
    if t.is_large_string(dtype) or t.is_string_view(dtype) or t.is_null(dtype):
        return pa.string()
    if t.is_large_binary(dtype) or t.is_binary_view(dtype):
        return pa.binary()
    if t.is_date64(dtype):
        return pa.date32()
    if t.is_time(dtype):
        return pa.time64("us")
    if t.is_timestamp(dtype):
        return pa.timestamp("us", tz="UTC" if dtype.tz else None)
    if t.is_decimal(dtype):
        if dtype.precision > 38:
            raise UnsupportedTypeError(
                f"column {column!r}: decimal precision {dtype.precision} exceeds Iceberg's 38"
            )
        return pa.decimal128(dtype.precision, dtype.scale)
    if t.is_list(dtype) or t.is_large_list(dtype) or t.is_fixed_size_list(dtype):
        return pa.list_(_storable_field(dtype.value_field, column))
    if t.is_map(dtype):
        return pa.map_(_storable(dtype.key_type, column), _storable_field(dtype.item_field, column))
    if t.is_struct(dtype):
        return pa.struct([_storable_field(dtype.field(i), column) for i in range(dtype.num_fields)])
    if t.is_duration(dtype) or t.is_interval(dtype):
        raise UnsupportedTypeError(f"column {column!r}: Iceberg cannot store {dtype}; cast it")
    return dtype


def _storable_field(field: pa.Field, column: str) -> pa.Field:
    return pa.field(field.name, _storable(field.type, column), nullable=field.nullable)


def storable_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with every type mapped to one Iceberg can store; field metadata dropped."""
    if len(set(schema.names)) != len(schema.names):
        dupes = sorted({n for n in schema.names if schema.names.count(n) > 1})
        raise SchemaChangeError(f"result has duplicate column names: {', '.join(dupes)}")
    return pa.schema([_storable_field(f, f.name) for f in schema])


def cast_batch(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """Cast `batch` to `target` (same column names, storable types)."""
    if batch.schema.equals(target, check_metadata=False):
        return batch
    columns = []
    for field in target:
        column = batch.column(field.name)
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        safe = not (pa.types.is_timestamp(field.type) or pa.types.is_time(field.type))
        columns.append(pc.cast(column, field.type, safe=safe))
    return pa.RecordBatch.from_arrays(columns, schema=target)


_arrow_schemas: LruCache[pa.Schema] = LruCache(256)
_storable_schemas: LruCache[pa.Schema] = LruCache(256)
_unchanged: LruCache[bool] = LruCache(256)
"""By table uuid and schema id (Iceberg never gives a schema id of a table to another schema):
a table schema's Arrow form (as it is, and as results are written), and the results it was
found to take as they are. Converting schemas both ways is most of planning an evolution (0.4
ms a write of a small table), and of building a snapshot's select."""


def _schema_key(table: Table) -> tuple[str, int]:
    return str(table.metadata.table_uuid), table.metadata.current_schema_id


def schema_in_arrow(table: Table, schema: Schema | None = None) -> pa.Schema:
    """`schema`, one of the table's (its current one unless told), in Arrow without field ids."""
    schema = schema if schema is not None else table.schema()
    key = (str(table.metadata.table_uuid), schema.schema_id)
    return _arrow_schemas.get_or_make(
        key, lambda: schema_to_pyarrow(schema, include_field_ids=False)
    )


def _table_arrow_schema(table: Table) -> pa.Schema:
    """The table's current schema in Arrow, as results are written (`storable_schema`)."""
    return _storable_schemas.get_or_make(
        _schema_key(table), lambda: storable_schema(schema_in_arrow(table))
    )


def _promotable(narrow: IcebergType, wide: IcebergType) -> bool:
    try:
        promote(narrow, wide)
    except Exception:
        return False
    return True


def plan_evolution(identifier: str, current: Table, new: pa.Schema) -> bool:
    """Whether writing `new` into `current` needs a schema update; raises if it would lose data."""
    key = (*_schema_key(current), new)
    if _unchanged.get(key):
        return False
    changes = _evolution(identifier, current, new)
    if not changes:
        _unchanged.put(key, True)
    return changes


def _evolution(identifier: str, current: Table, new: pa.Schema) -> bool:
    old_arrow = _table_arrow_schema(current)
    # Fields converted without ids all share id -1, so look them up by name, not find_field.
    new_fields = {f.name: f for f in _pyarrow_to_schema_without_ids(new).fields}
    problems: list[str] = []
    changes = False
    for old_field in current.schema().fields:
        if old_field.name not in new.names:
            if old_field.required:
                problems.append(f"{old_field.name}: required column missing from the new result")
            continue
        new_field: NestedField = new_fields[old_field.name]
        if old_field.field_type == new_field.field_type:
            continue
        if new.field(old_field.name).type.equals(old_arrow.field(old_field.name).type):
            continue
        if _promotable(new_field.field_type, old_field.field_type):
            continue  # narrower data fits the wider column losslessly; the table keeps its type
        try:
            promote(old_field.field_type, new_field.field_type)
        except Exception:
            problems.append(f"{old_field.name}: {old_field.field_type} -> {new_field.field_type}")
            continue
        changes = True
    old_names = {f.name for f in current.schema().fields}
    for field in new:
        if field.name not in old_names and not field.nullable:
            # Rows already in the table have no value for it: Iceberg cannot add it as required.
            problems.append(
                f"{field.name}: new column is required (non-nullable); make it nullable"
            )
    if problems:
        raise SchemaChangeError(
            f"incompatible schema change: {'; '.join(problems)} "
            "(keep the old types, or drop the table to rebuild it)",
            asset=identifier,
        )
    return changes or any(name not in old_arrow.names for name in new.names)


def ensure_table(
    catalog: Catalog,
    identifier: str,
    schema: pa.Schema,
    partitioning: Callable[[Schema], Transform | None] | None = None,  # type: ignore[type-arg]
    partition_column: str | None = None,
) -> Table:
    """Create the table from `schema`, or evolve it to accept `schema`; returns it freshly loaded.

    A new table gets an empty first snapshot on `main` (marked `sluice.initial`) so that audit
    branches always have a parent: consumers see an empty table, never unaudited rows; and it
    gets `TABLE_PROPERTIES`. With `partitioning`, the table's spec gets that transform of
    `partition_column` (replacing a partition is then a metadata operation on whole files);
    without a transform, the spec loses its partition fields (files already written keep
    theirs), so that a result spanning partitions can be added.
    """
    table = load_table(catalog, identifier)
    if table is None:
        ensure_namespace(catalog, split_identifier(identifier)[0])
        try:
            table = catalog.create_table(identifier, schema=schema, properties=TABLE_PROPERTIES)
        except TableAlreadyExistsError:
            table = catalog.load_table(identifier)
    if plan_evolution(identifier, table, schema):
        with table.update_schema() as update:
            update.union_by_name(schema)
        table = catalog.load_table(identifier)
    transform = None
    if partitioning is not None and partition_column is not None:
        transform = partitioning(table.schema())
    if transform is not None and partition_column is not None:
        if not _has_partition(table, partition_column, transform):
            source_id = table.schema().find_field(partition_column).field_id
            with table.update_spec() as update:
                for field in table.spec().fields:
                    update.remove_field(field.name)
                update.add_field(partition_column, transform, f"{partition_column}_{transform}")
            table = catalog.load_table(identifier)
            assert any(f.source_id == source_id for f in table.spec().fields)
    elif table.spec().fields:
        # No partition transform any more (the asset stopped being partitioned, or its
        # partitions no longer align with Iceberg's UTC transforms): new files are unpartitioned.
        with table.update_spec() as update:
            for field in table.spec().fields:
                update.remove_field(field.name)
        table = catalog.load_table(identifier)
    if table.metadata.current_snapshot_id is None:
        with table.transaction() as tx:
            tx.update_snapshot(
                snapshot_properties={INITIAL_PROPERTY: "true"}
            ).fast_append().commit()
        table = catalog.load_table(identifier)
    return table


def _has_partition(table: Table, column: str, transform: Transform) -> bool:  # type: ignore[type-arg]
    source_id = table.schema().find_field(column).field_id
    return [(f.source_id, str(f.transform)) for f in table.spec().fields] == [
        (source_id, str(transform))
    ]


def write_schema(table: Table, result: pa.Schema) -> pa.Schema:
    """The schema files are written with: the result's columns with the table's (wider) types."""
    table_schema = _table_arrow_schema(table)
    return pa.schema([table_schema.field(f.name) for f in result])
