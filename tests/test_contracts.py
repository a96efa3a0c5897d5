"""Contracts of the restructured package: typed thresholds, JobStatus, versioned readers, registries."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbench.analysis.thresholds import Thresholds
from qbench.app.callbacks import AggregateCallback, AggregateCallbackConfig
from qbench.errors import ConfigError, QbenchError
from qbench.kinds import JobState
from qbench.results.columns import COLUMNS, META_SCHEMA_VERSION, SCHEMA_VERSION
from qbench.results.load import load_results
from qbench.results.readers import READERS, read_table
from qbench.results.status import JobStatus, read_status, write_status
from qbench.results.writer import write_atomic

from .conftest import run_qbench
from .synthetic import config_columns, write_job

BAD_THRESHOLDS = [
    ("hydra.callbacks.aggregate.knee_fraction=abc", "hydra.callbacks.aggregate.knee_fraction='abc'"),
    ("hydra.callbacks.aggregate.cv=1.5", "hydra.callbacks.aggregate.cv=1.5"),
    ("hydra.callbacks.aggregate.bootstrap_resamples=5", "hydra.callbacks.aggregate.bootstrap_resamples=5"),
    ("hydra.callbacks.aggregate.enabled=maybe", "hydra.callbacks.aggregate.enabled='maybe'"),
    ("+hydra.callbacks.aggregate.knee=0.5", "hydra.callbacks.aggregate.knee=0.5"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("override", "named"), BAD_THRESHOLDS, ids=[o for o, _ in BAD_THRESHOLDS])
def test_a_bad_threshold_is_one_line_exit_2_nothing_written(
    tmp_path: Path, override: str, named: str
) -> None:
    proc = run_qbench(["-m", "workers=1,2", "tasks=20", override], tmp_path)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("qbench: error: ") and named in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_thresholds_from_a_mapping_are_checked_and_typed() -> None:
    assert Thresholds.from_mapping({}) == Thresholds()
    assert Thresholds.from_mapping({"knee_fraction": 0.9, "bootstrap_resamples": 500}).knee_fraction == 0.9
    with pytest.raises(ConfigError, match=r"--knee-fraction=0 is not allowed: expected a number in \(0, 1\]"):
        Thresholds.from_mapping({"knee_fraction": 0}, "--")
    with pytest.raises(ConfigError, match="unknown threshold"):
        Thresholds.from_mapping({"kneee": 0.5})
    with pytest.raises(ConfigError, match="expected a number > 0"):
        Thresholds.from_mapping({"cpu_cores": float("nan")})


def test_the_callback_takes_a_typed_config() -> None:
    callback = AggregateCallback(_target_="x", enabled=False, knee_fraction=0.8)
    assert callback.config == AggregateCallbackConfig(False, Thresholds(knee_fraction=0.8))
    with pytest.raises(ConfigError, match=r"hydra\.callbacks\.aggregate\.alpha"):
        AggregateCallback(alpha="abc")


def test_job_status_round_trips_and_refuses_what_it_did_not_write(tmp_path: Path) -> None:
    status = JobStatus(JobState.INTERRUPTED, "SIGINT", job_num=3, run_id="r", elapsed_s=1.5)
    write_status(tmp_path, status)
    assert read_status(tmp_path) == status
    assert json.loads((tmp_path / JobStatus.FILE).read_text())["status"] == "interrupted"
    (tmp_path / JobStatus.FILE).write_text('{"status": "ok", "job_num": 2, "unknown": [1]}')
    assert read_status(tmp_path) == JobStatus(JobState.OK, job_num=2)
    for text in (
        "{}",
        "[1]",
        '{"status": "weird"}',
        "not json",
        '{"status": "ok", "job_num": "x"}',
        '{"status": "ok", "FILE": 1, "state": "ok", "job_num": "1"}',
        '{"status": "ok", "job_num": "x", "bad": 1}',
        '{"status": "ok", "job_num": true}',
        '{"status": "ok", "job_num": 1.5}',
        '{"status": "ok", "reason": 3}',
        '{"status": "ok", "run_id": 7}',
        '{"status": "ok", "metrics": ["metrics.parquet"]}',
        '{"status": "ok", "started_at": {}}',
        '{"status": "ok", "throughput_tps_median": "abc"}',
        '{"status": "ok", "throughput_tps_median": true}',
        '{"status": "ok", "throughput_tps_median": NaN}',
        '{"status": "ok", "throughput_tps_median": Infinity}',
        '{"status": "ok", "elapsed_s": "1"}',
        '{"status": "ok", "elapsed_s": -Infinity}',
    ):
        (tmp_path / JobStatus.FILE).write_text(text)
        assert read_status(tmp_path) is None, text
    assert read_status(tmp_path / "nowhere") is None


def test_every_job_status_field_has_a_type_check() -> None:
    from qbench.results.status import _FIELD_CHECKS

    assert set(_FIELD_CHECKS) == {f.name for f in dataclasses.fields(JobStatus)} - {"state"}


def test_the_writer_leaves_nothing_behind_when_writing_fails(tmp_path: Path) -> None:
    def fail(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomic(tmp_path / "report.md", fail, replace=True)
    assert list(tmp_path.iterdir()) == []


def _as_version_1(path: Path) -> None:
    """Rewrite a current file the way schema version 1 wrote it: no field metadata."""
    table = pq.read_table(path)
    meta = dict(table.schema.metadata or {})
    meta[META_SCHEMA_VERSION.encode()] = b"1"
    plain = pa.schema([pa.field(f.name, f.type) for f in table.schema], metadata=meta)
    path.unlink()
    pq.write_table(table.cast(plain), path)


def test_a_file_of_the_previous_schema_version_is_read_and_upgraded(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == "2" and set(READERS) == {"1", "2"}
    current = write_job(tmp_path / "current", config_columns(workers=2), [1000.0, 1010.0])
    old = write_job(tmp_path / "old", config_columns(workers=2), [900.0, 910.0])
    _as_version_1(old)
    assert pq.read_schema(old).field("throughput_tps").metadata is None
    table, meta = read_table(old)
    assert meta[META_SCHEMA_VERSION] == "1"
    assert table.schema.field("throughput_tps").metadata[b"unit"] == b"tasks/s"
    assert table.schema == read_table(current)[0].schema
    loaded = load_results([tmp_path])
    assert loaded.skipped == [] and len(loaded.files) == 2
    assert sorted(loaded.frame.loc[loaded.frame.phase == "measure", "throughput_tps"]) == [
        900,
        910,
        1000,
        1010,
    ]


def test_every_field_carries_its_unit_and_doc(tmp_path: Path) -> None:
    path = write_job(tmp_path, config_columns(), [1000.0])
    schema = pq.read_schema(path)
    for name, column in COLUMNS.items():
        meta = schema.field(name).metadata
        assert meta[b"doc"].decode() == column.doc
        assert meta[b"unit"].decode() == column.unit
    assert schema.field("duration_s").metadata[b"unit"] == b"s"
    assert schema.field("rss_peak_bytes").metadata[b"sampled"] == b"true"
    assert schema.field("busy_total").metadata[b"unit"] == b"count"


def test_every_error_qbench_raises_on_purpose_is_in_one_tree() -> None:
    import qbench.errors as errors
    from qbench.run.queues.sql import BusyError, UnknownQueryError

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert all(issubclass(c, QbenchError) for c in [*classes, BusyError, UnknownQueryError])
    for cls in [*classes, BusyError, UnknownQueryError]:
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} is not drawn in the errors docstring"


def test_signal_name_is_the_one_named_or_sigint() -> None:
    from qbench.errors import signal_name

    assert signal_name(KeyboardInterrupt("SIGTERM")) == "SIGTERM"
    assert signal_name(KeyboardInterrupt()) == signal_name(KeyboardInterrupt("other")) == "SIGINT"
