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
from qbench.results.columns import (
    COLUMNS,
    HOST_LOCK_COLUMNS,
    META_SCHEMA_VERSION,
    OPEN_LOOP_COLUMNS,
    PROCESS_COLUMNS,
    SCHEMA_VERSION,
)
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


# the settings schema version 3 added
V3_SETTINGS = (
    "executor_processes",
    "workload_rate",
    "workload_arrivals",
    "workload_duration_s",
    "workload_burst_rate",
    "workload_burst_every_s",
    "workload_burst_s",
    "service_dist",
    "service_sigma",
    "seed",
    "faults_kill",
    "host_lock",
)


def _as_version(path: Path, version: str) -> None:
    """Rewrite a current file the way schema version 1 or 2 wrote it: without version 3's
    settings and optional blocks, and (version 1) without field metadata."""
    table = pq.read_table(path)
    old_blocks = {c.name for c in (*OPEN_LOOP_COLUMNS, *HOST_LOCK_COLUMNS, *PROCESS_COLUMNS)}
    table = table.drop_columns([n for n in table.column_names if n in old_blocks or n in V3_SETTINGS])
    meta = dict(table.schema.metadata or {})
    meta[META_SCHEMA_VERSION.encode()] = version.encode()
    if version == "1":
        table = table.cast(pa.schema([pa.field(f.name, f.type) for f in table.schema], metadata=meta))
    else:
        table = table.replace_schema_metadata(meta)
    path.unlink()
    pq.write_table(table, path)


def test_files_of_earlier_schema_versions_are_read_and_upgraded(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == "4" and set(READERS) == {"1", "2", "3", "4"}
    current = write_job(tmp_path / "current", config_columns(workers=2), [1000.0, 1010.0])
    v2 = write_job(tmp_path / "v2", config_columns(workers=2), [950.0, 960.0])
    _as_version(v2, "2")
    table, _ = read_table(v2)
    row = table.slice(0, 1).to_pylist()[0]
    # what held before the settings existed: fixed service, no kills, no processes, no host lock
    assert row["service_dist"] == "fixed" and row["faults_kill"] == 0 and row["executor_processes"] == 1
    assert row["host_lock"] == "off" and row["workload_kind"] == "drain"
    assert "achieved_rate_tps" not in table.column_names
    old = write_job(tmp_path / "old", config_columns(workers=2), [900.0, 910.0])
    _as_version(old, "1")
    assert pq.read_schema(old).field("throughput_tps").metadata is None
    table, meta = read_table(old)
    assert meta[META_SCHEMA_VERSION] == "1"
    assert table.schema.field("throughput_tps").metadata[b"unit"] == b"tasks/s"
    assert set(read_table(current)[0].column_names) - set(table.column_names) <= {
        c.name for c in (*OPEN_LOOP_COLUMNS, *HOST_LOCK_COLUMNS, *PROCESS_COLUMNS)
    }
    loaded = load_results([tmp_path])
    assert loaded.skipped == [] and len(loaded.files) == 3
    assert sorted(loaded.frame.loc[loaded.frame.phase == "measure", "throughput_tps"]) == [
        900,
        910,
        950,
        960,
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
