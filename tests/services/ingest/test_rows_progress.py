from __future__ import annotations

import pytest
from ingest_builders import T0, make_event, make_sample

from gpufleet.contracts import GpuSample
from services.ingest.progress import Mark, token
from services.ingest.rows import SAMPLE_COLUMNS, SampleRows, event_row, to_columns
from services.ingest.sink import Column, convert


def test_samples_flatten_to_one_row_per_gpu() -> None:
    rows = SampleRows()
    n = rows.add(make_sample("n1").at(T0).gpu(0, 10.0).gpu(3, None, temp_c=50).build())
    cols = rows.columns()
    assert n == 2 and set(cols) == set(SAMPLE_COLUMNS)
    assert cols["gpu"] == [0, 3] and cols["node"] == ["n1", "n1"] and cols["ts"] == [T0, T0]
    assert cols["util_gpu"] == [10.0, None]  # absent stays absent, not zero
    assert cols["temp_c"] == [None, 50]
    assert all(len(v) == 2 for v in cols.values())


def test_sample_columns_are_the_scalar_fields() -> None:
    scalars = {f for f in GpuSample.__struct_fields__ if f not in {"index", "processes"}}
    assert set(SAMPLE_COLUMNS) == scalars | {"cluster", "node", "gpu", "ts"}


def test_rows_to_columns_fill_missing_keys() -> None:
    cols = to_columns([event_row(make_event("a").build()),
                       event_row(make_event("b").on("n1", 0).build())])
    assert cols["job_id"] == ["a", "b"] and cols["node"] == [None, "n1"]


@pytest.mark.parametrize(
    ("type_", "values", "expected"),
    [
        ("DateTime64(3)", [1.5, None], [1500, None]),
        ("DateTime", [61.9], [61]),
        ("String", ["a", None], ["a", ""]),
        ("LowCardinality(String)", [None], [""]),
        ("Nullable(String)", [None], [None]),
        ("UInt32", [None, 3], [0, 3]),
        ("Array(UInt16)", [None], [[]]),
        ("Nullable(UInt8)", [12.6, None], [13, None]),
        ("LowCardinality(Nullable(String))", [None], [None]),
        ("Map(String, String)", [None], [{}]),
        ("DateTime64(3, 'UTC')", [1.5, 1.5, 2.25], [1500, 1500, 2250]),
        ("Nullable(DateTime64(6))", [None, 1.5, None], [None, 1_500_000, None]),
        ("Nullable(UInt8)", [12.4, 99.6], [12, 100]),
        ("Int16", [3, None], [3, 0]),
    ],
)
def test_sink_converts_to_the_column_type(type_: str, values: list[object],
                                          expected: list[object]) -> None:
    assert convert(Column("x", type_), values) == expected


@pytest.mark.parametrize(("type_", "without_null"), [
    ("Nullable(UInt8)", "UInt8"),
    ("LowCardinality(Nullable(String))", "LowCardinality(String)"),
    ("Nullable(DateTime64(3, 'UTC'))", "DateTime64(3, 'UTC')"),
    ("Array(Nullable(UInt32))", "Array(Nullable(UInt32))"),  # NULL inside: not known here
    ("String", "String"),
])
def test_a_batch_without_null_is_sent_as_the_type_without_nullable(type_: str,
                                                                   without_null: str) -> None:
    assert Column("x", type_).not_null == without_null


@pytest.mark.parametrize(
    "mark",
    [Mark(), Mark(end=10), Mark(end=10, replay=3, watermark=T0 + 0.25), Mark(replay=0)],
)
def test_marks_round_trip(mark: Mark) -> None:
    assert Mark.decode(mark.encode()) == mark


@pytest.mark.parametrize("text", [None, "", "garbage", "e=x;r=1"])
def test_unreadable_marks_are_empty(text: str | None) -> None:
    assert Mark.decode(text) == Mark()


def test_token_names_topic_partition_range_and_table() -> None:
    got = token("p.gpu.samples", 2, 100, 250, "gpu_samples")
    assert got == "p.gpu.samples:2:100-250:gpu_samples"
