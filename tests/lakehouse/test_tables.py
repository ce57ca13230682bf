"""Table creation, storable Arrow types and safe schema evolution."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from pyiceberg.types import LongType, StringType

from lakehouse.branches import Lakehouse, main_snapshot_id, publish, write_branch
from lakehouse.errors import SchemaChangeError, UnsupportedTypeError
from lakehouse.provenance import Provenance
from lakehouse.tables import INITIAL_PROPERTY, ensure_table, storable_schema, write_schema
from lakehouse.writes import write_data_files

# --- storable types ---------------------------------------------------------------------------


def test_storable_schema_maps_arrow_types_iceberg_cannot_store() -> None:
    schema = pa.schema(
        [
            pa.field("u8", pa.uint8()),
            pa.field("u16", pa.uint16()),
            pa.field("u32", pa.uint32()),
            pa.field("u64", pa.uint64(), nullable=False),
            pa.field("i8", pa.int8()),
            pa.field("big_text", pa.large_string()),
            pa.field("category", pa.dictionary(pa.int8(), pa.string())),
            pa.field("big_category", pa.dictionary(pa.int32(), pa.large_string())),
            pa.field("ts_ns", pa.timestamp("ns")),
            pa.field("ts_ns_tz", pa.timestamp("ns", tz="Europe/Paris")),
            pa.field("nothing", pa.null()),
            pa.field("texts", pa.large_list(pa.large_string())),
            pa.field("plain", pa.int64()),
        ]
    )
    assert storable_schema(schema) == pa.schema(
        [
            pa.field("u8", pa.int32()),
            pa.field("u16", pa.int32()),
            pa.field("u32", pa.int64()),
            pa.field("u64", pa.int64(), nullable=False),
            pa.field("i8", pa.int32()),
            pa.field("big_text", pa.string()),
            pa.field("category", pa.string()),
            pa.field("big_category", pa.string()),
            pa.field("ts_ns", pa.timestamp("us")),
            pa.field("ts_ns_tz", pa.timestamp("us", tz="UTC")),
            pa.field("nothing", pa.string()),
            pa.field("texts", pa.list_(pa.field("item", pa.string()))),
            pa.field("plain", pa.int64()),
        ]
    )


@pytest.mark.parametrize(
    "dtype",
    [pa.duration("s"), pa.duration("ns"), pa.decimal256(39, 2), pa.decimal256(76, 0)],
    ids=["duration_s", "duration_ns", "decimal256_39", "decimal256_76"],
)
def test_storable_schema_rejects_types_iceberg_cannot_hold(dtype: pa.DataType) -> None:
    schema = pa.schema([("ok", pa.int64()), ("bad_col", dtype)])
    with pytest.raises(UnsupportedTypeError, match="bad_col"):
        storable_schema(schema)


def test_decimal256_within_38_digits_is_stored_as_decimal128() -> None:
    schema = storable_schema(pa.schema([("amount", pa.decimal256(38, 4))]))
    assert schema.field("amount").type == pa.decimal128(38, 4)


def test_duplicate_column_names_are_rejected() -> None:
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("id", pa.string())])
    with pytest.raises(SchemaChangeError, match="duplicate column names: id"):
        storable_schema(schema)


def test_awkward_arrow_types_round_trip_through_a_materialization(wap, rows) -> None:
    data = pa.table(
        {
            "u32": pa.array([1, 4_000_000_000], pa.uint32()),
            "text": pa.array(["a", "b"], pa.large_string()),
            "category": pa.array(["x", "y"]).dictionary_encode(),
            "ts": pa.array([1_700_000_000_123_456_789, 0], pa.timestamp("ns")),
            "nothing": pa.nulls(2),
        }
    )
    assert wap("t.types", data).status == "published"
    assert rows("t.types") == [
        {
            "u32": 1,
            "text": "a",
            "category": "x",
            "ts": dt.datetime(2023, 11, 14, 22, 13, 20, 123456),
            "nothing": None,
        },
        {
            "u32": 4_000_000_000,
            "text": "b",
            "category": "y",
            "ts": dt.datetime(1970, 1, 1),
            "nothing": None,
        },
    ]


# --- creation ---------------------------------------------------------------------------------


def test_ensure_table_creates_an_empty_first_snapshot_marked_initial(lh: Lakehouse) -> None:
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    table = ensure_table(lh.catalog, "bronze.customers", schema)

    assert [f.name for f in table.schema().fields] == ["id", "name"]
    [snapshot] = table.snapshots()
    assert main_snapshot_id(table) == snapshot.snapshot_id
    assert table.metadata.current_snapshot_id == snapshot.snapshot_id
    assert snapshot.summary is not None
    props = snapshot.summary.additional_properties
    assert props[INITIAL_PROPERTY] == "true"
    assert props["total-records"] == "0"
    assert table.scan().to_arrow().num_rows == 0

    # Asking again for the same schema changes nothing.
    again = ensure_table(lh.catalog, "bronze.customers", schema)
    assert [s.snapshot_id for s in again.snapshots()] == [snapshot.snapshot_id]
    assert again.schema() == table.schema()


# --- evolution --------------------------------------------------------------------------------


def _append(lh: Lakehouse, identifier: str, data: pa.Table, run_id: str) -> None:
    """Add `data` to main's rows (no replace) through a branch and a publish."""
    table = ensure_table(lh.catalog, identifier, storable_schema(data.schema))
    base = main_snapshot_id(table)
    assert base is not None
    written = write_data_files(
        table,
        pa.RecordBatchReader.from_batches(data.schema, data.to_batches()),
        write_schema(table, storable_schema(data.schema)),
        prefix=f"sluice-{run_id}",
    )
    head, _ = write_branch(
        lh,
        identifier,
        branch=f"sluice-{run_id}",
        base_snapshot_id=base,
        paths=written.paths,
        properties=Provenance(run_id=run_id, code_version="v1").to_properties(),
        replace=False,
    )
    publish(lh, identifier, branch=f"sluice-{run_id}", base_snapshot_id=base, head=head)


def test_new_column_is_added_and_old_rows_read_as_null(lh: Lakehouse, wap, rows) -> None:
    wap("t.evolve", {"id": [1, 2]}, "r1")
    _append(lh, "t.evolve", pa.table({"id": [3], "email": ["c@x"]}), "r2")

    table = lh.table("t.evolve")
    assert [f.name for f in table.schema().fields] == ["id", "email"]
    assert rows("t.evolve") == [
        {"id": 1, "email": None},
        {"id": 2, "email": None},
        {"id": 3, "email": "c@x"},
    ]


def test_int_to_long_promotion_is_applied(lh: Lakehouse, wap, rows) -> None:
    wap("t.promote", {"n": pa.array([1, 2], pa.int32())}, "r1")
    assert lh.table("t.promote").schema().find_field("n").field_type != LongType()

    result = wap("t.promote", {"n": pa.array([2**40], pa.int64())}, "r2")
    assert result.status == "published"
    assert lh.table("t.promote").schema().find_field("n").field_type == LongType()
    assert rows("t.promote") == [{"n": 2**40}]


def _problems(error: SchemaChangeError) -> list[str]:
    """The per-column problems listed in a schema-change message."""
    listed = error.message.removeprefix("incompatible schema change: ").split(" (keep")[0]
    return listed.split("; ")


@pytest.mark.parametrize(
    ("old", "first", "new", "second", "problem"),
    [
        (pa.string(), "7", pa.int32(), 8, "amount: string -> int"),
        (pa.int64(), 7, pa.string(), "8", "amount: long -> string"),
        (pa.float64(), 7.5, pa.int64(), 8, "amount: double -> long"),
    ],
    ids=["string_to_int", "long_to_string", "double_to_long"],
)
def test_type_change_is_rejected_before_any_file_is_written(
    lh: Lakehouse, wap, rows, data_files, old, first, new, second, problem
) -> None:
    wap("t.change", {"id": [1], "amount": pa.array([first], old), "note": ["a"]}, "r1")
    table_before = lh.table("t.change")
    files_before = data_files("t.change")

    with pytest.raises(SchemaChangeError) as info:
        wap("t.change", {"id": [2], "amount": pa.array([second], new), "note": ["b"]}, "r2")

    assert _problems(info.value) == [problem]  # names the column, and only that column
    assert info.value.asset == "t.change"
    table_after = lh.table("t.change")
    assert table_after.schema() == table_before.schema()
    assert main_snapshot_id(table_after) == main_snapshot_id(table_before)
    assert data_files("t.change") == files_before
    assert rows("t.change") == [{"id": 1, "amount": first, "note": "a"}]


@pytest.mark.parametrize(
    ("wide", "narrow", "value"),
    [(pa.int64(), pa.int32(), 8), (pa.float64(), pa.float32(), 0.5)],
    ids=["long_gets_int", "double_gets_float"],
)
def test_table_type_is_never_narrowed_by_a_narrower_result(
    lh: Lakehouse, wap, rows, wide: pa.DataType, narrow: pa.DataType, value: float
) -> None:
    wap("t.wide", {"n": pa.array([2**40 if wide == pa.int64() else 1e300], wide)}, "r1")
    schema_before = lh.table("t.wide").schema()

    result = wap("t.wide", {"n": pa.array([value], narrow)}, "r2")

    assert result.status == "published"
    assert lh.table("t.wide").schema() == schema_before  # still long / double
    assert rows("t.wide") == [{"n": value}]
    # A wide value written afterwards still fits: nothing was narrowed.
    big = 2**40 if wide == pa.int64() else 1e300
    wap("t.wide", {"n": pa.array([big], wide)}, "r3")
    assert rows("t.wide") == [{"n": big}]


def test_string_to_int_is_rejected_by_ensure_table_naming_the_column(lh: Lakehouse) -> None:
    ensure_table(lh.catalog, "t.codes", pa.schema([("id", pa.int64()), ("code", pa.string())]))
    with pytest.raises(SchemaChangeError) as info:
        ensure_table(lh.catalog, "t.codes", pa.schema([("id", pa.int64()), ("code", pa.int32())]))
    assert _problems(info.value) == ["code: string -> int"]
    assert lh.table("t.codes").schema().find_field("code").field_type == StringType()


def test_a_result_is_planned_against_the_tables_schema_as_it_is_now(lh: Lakehouse) -> None:
    narrow = pa.schema([("id", pa.int64()), ("code", pa.string())])
    for _ in range(2):  # unchanged, twice
        assert ensure_table(lh.catalog, "t.plans", narrow).schema().find_field("code")
    wide = pa.schema([*narrow, ("note", pa.string())])
    assert ensure_table(lh.catalog, "t.plans", wide).schema().find_field("note")
    ensure_table(lh.catalog, "t.plans", narrow)  # a column missing from a result stays
    retyped = pa.schema([("id", pa.int64()), ("note", pa.int32())])
    for _ in range(2):
        with pytest.raises(SchemaChangeError, match="note: string -> int"):
            ensure_table(lh.catalog, "t.plans", retyped)
    assert lh.table("t.plans").schema().find_field("note").field_type == StringType()


def test_column_missing_from_a_new_result_stays_as_nulls(lh: Lakehouse, wap, rows) -> None:
    wap("t.keep", {"id": [1], "note": ["hello"]}, "r1")
    result = wap("t.keep", {"id": [2, 3]}, "r2")

    assert result.status == "published"
    assert [f.name for f in lh.table("t.keep").schema().fields] == ["id", "note"]
    assert rows("t.keep") == [{"id": 2, "note": None}, {"id": 3, "note": None}]


def test_required_column_missing_from_a_new_result_is_rejected(lh: Lakehouse, wap, rows) -> None:
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])
    wap("t.required", pa.table({"id": [1], "v": ["a"]}, schema=schema), "r1")
    assert lh.table("t.required").schema().find_field("id").required

    with pytest.raises(SchemaChangeError, match="id: required column missing"):
        wap("t.required", {"v": ["b"]}, "r2")
    assert rows("t.required") == [{"id": 1, "v": "a"}]


def test_new_required_column_on_an_existing_table_is_a_schema_change_error(
    lh: Lakehouse, wap, rows
) -> None:
    wap("t.addreq", {"id": [1]}, "r1")
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("k", pa.int64(), nullable=False)])
    with pytest.raises(SchemaChangeError, match="k: new column is required"):
        wap("t.addreq", pa.table({"id": [2], "k": [5]}, schema=schema), "r2")
    assert [f.name for f in lh.table("t.addreq").schema().fields] == ["id"]
    assert rows("t.addreq") == [{"id": 1}]
