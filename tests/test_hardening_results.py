"""Hostile and broken results files: listed with a reason and left out, never a crash, hang or double count.

Also the writer and the aggregation on a full or read-only file system, and the
compare gate on invalid, missing, corrupt and too-few-iteration candidates.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbench.analysis import pipeline
from qbench.analysis.cli import aggregate_main, compare_main
from qbench.analysis.pipeline import aggregate
from qbench.analysis.stats import min_p_value
from qbench.errors import (
    AggregateError,
    BadValueError,
    JobFailedError,
    ResultsError,
    ResultsWriteError,
    UnreadableResultsError,
)
from qbench.kinds import JobState
from qbench.results.files import one_line
from qbench.results.load import Loaded, load_results, read_job_table
from qbench.results.status import JobStatus, read_status, write_status
from qbench.results.writer import write_atomic, write_bytes, write_new_file

from .conftest import run_qbench
from .synthetic import config_columns, write_job

TPS = [1000.0, 1010.0, 990.0, 1005.0, 995.0]


def reasons(loaded: Loaded) -> dict[str, str]:
    """Skipped entries by the name of the directory that holds them (or of the job directory)."""
    return {
        Path(p).name if Path(p).name != "metrics.parquet" else Path(p).parent.name: r
        for p, r in loaded.skipped
    }


def good(root: Path, name: str = "good", workers: int = 1, tps: list[float] | None = None) -> Path:
    return write_job(root / name, config_columns(workers=workers), tps or TPS)


def rewrite(
    source: Path,
    target_dir: Path,
    *,
    table: Callable[[pa.Table], pa.Table] = lambda t: t,
    meta: Callable[[dict[bytes, bytes]], dict[bytes, bytes]] = lambda m: m,
) -> Path:
    """A copy of ``source`` with its table and key-value metadata changed."""
    original = pq.read_table(source)
    changed = table(original)
    changed = changed.replace_schema_metadata(meta(dict(original.schema.metadata or {})))
    target_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(changed, target_dir / "metrics.parquet")
    return target_dir / "metrics.parquet"


def with_meta(key: bytes, value: bytes, meta: dict[bytes, bytes]) -> dict[bytes, bytes]:
    return meta | {key: value}


def with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)


def finishes(action: Callable[[], object], seconds: float = 20.0) -> object:
    """Run ``action`` in a thread; fail (instead of hanging the suite) if it does not return in time.

    What ``action`` raises is raised here.
    """
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = action()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "hung"
    if isinstance(error := box.get("error"), BaseException):
        raise error
    return box.get("value")


# --- not a regular file -----------------------------------------------------------


def test_a_fifo_named_metrics_parquet_is_left_out_without_hanging(tmp_path: Path) -> None:
    good(tmp_path)
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "metrics.parquet")
    (tmp_path / "dir" / "metrics.parquet").mkdir(parents=True)
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "metrics.parquet").symlink_to(tmp_path / "loop" / "metrics.parquet")
    (tmp_path / "device").mkdir()
    (tmp_path / "device" / "metrics.parquet").symlink_to("/dev/zero")
    loaded = finishes(lambda: load_results([tmp_path]))
    assert isinstance(loaded, Loaded)
    found = reasons(loaded)
    assert found["fifo"] == "not a regular file (a FIFO)"
    assert found["dir"] == "not a regular file (a directory)"
    assert found["device"] == "not a regular file (a character device)"
    assert "symlink loop" in found["loop"]
    assert len(loaded.files) == 1 and len(loaded.unreadable) == 4
    # a FIFO given by name is refused the same way, and a FIFO for a status is no status
    with pytest.raises(UnreadableResultsError, match="not a regular file"):
        finishes(lambda: read_job_table(tmp_path / "fifo" / "metrics.parquet"))
    os.mkfifo(tmp_path / "fifo" / JobStatus.FILE)
    assert finishes(lambda: read_status(tmp_path / "fifo")) is None


# --- wrong types, metadata ------------------------------------------------------------


def test_wrong_column_types_are_left_out_with_the_column_named(tmp_path: Path) -> None:
    source = good(tmp_path)
    as_text = pa.array([str(x) for x in range(6)])
    rewrite(source, tmp_path / "tps_text", table=lambda t: with_column(t, "throughput_tps", as_text))
    rewrite(source, tmp_path / "workers_text", table=lambda t: with_column(t, "workers", as_text))
    nested = pa.array([[1]] * 6)
    rewrite(source, tmp_path / "nested", table=lambda t: t.append_column("extra", nested))
    rewrite(source, tmp_path / "reserved", table=lambda t: t.append_column("x_median", pa.array([1.0] * 6)))
    big = pa.array([2**63 + 5] * 6, type=pa.uint64())
    rewrite(source, tmp_path / "overflow", table=lambda t: with_column(t, "tasks_lost", big))
    loaded = load_results([tmp_path])
    found = reasons(loaded)
    assert found["tps_text"] == "column throughput_tps has type string, expected double"
    assert found["workers_text"] == "column workers has type string, expected int64"
    assert found["nested"].startswith("column extra has type list<")
    assert found["nested"].endswith(": not a number, string or flag")
    assert found["reserved"] == "column x_median is not qbench's and its name is reserved"
    assert found["overflow"].startswith("column tasks_lost: values do not fit int64")
    assert [p.parent.name for p in loaded.files] == ["good"]


def test_extra_columns_of_conflicting_types_are_left_out(tmp_path: Path) -> None:
    source = good(tmp_path, "a")
    other = good(tmp_path, "b", workers=2)
    rewrite(source, tmp_path / "c_int", table=lambda t: t.append_column("note", pa.array([1] * 6)))
    rewrite(other, tmp_path / "d_text", table=lambda t: t.append_column("note", pa.array(["x"] * 6)))
    for name in ("a", "b"):
        shutil.rmtree(tmp_path / name)
    loaded = load_results([tmp_path])
    assert [p.parent.name for p in loaded.files] == ["c_int"]
    assert reasons(loaded)["d_text"].startswith("column note has type string here, int64 in ")


def test_invalid_utf8_and_non_json_metadata_are_left_out(tmp_path: Path) -> None:
    source = good(tmp_path)
    rewrite(source, tmp_path / "utf8", meta=lambda m: m | {b"qbench.config": b"\xff\xfe\x00"})
    rewrite(source, tmp_path / "utf8_key", meta=lambda m: m | {b"qbench.\xff": b"x"})
    for name, status in (("json", b"{not json"), ("list", b"[1, 2]"), ("deep", b"[" * 100_000)):
        rewrite(source, tmp_path / name, meta=functools.partial(with_meta, b"qbench.status", status))
    rewrite(source, tmp_path / "version", meta=lambda m: m | {b"qbench.schema_version": b"\xff"})
    found = reasons(load_results([tmp_path]))
    assert found["utf8"] == "metadata entry qbench.config is not valid UTF-8"
    assert found["utf8_key"] == "metadata entry qbench.\N{REPLACEMENT CHARACTER} is not valid UTF-8"
    assert found["version"] == "metadata entry qbench.schema_version is not valid UTF-8"
    for name in ("json", "list", "deep"):
        assert found[name] == "the job status in the metadata (qbench.status) is not a JSON object"


# --- bad values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"), [(float("inf"), "inf"), (float("nan"), "nan"), (-5.0, "-5.0"), (None, "null")]
)
def test_a_bad_throughput_leaves_the_file_out_and_never_reaches_a_median(
    tmp_path: Path, value: float | None, shown: str
) -> None:
    good(tmp_path, "a", tps=[1000.0, 1000.0, 1000.0])
    source = good(tmp_path, "tmp", tps=[1.0, 1.0, 1.0])
    tps = pa.array([1.0, 1.0, value, 1.0], type=pa.float64())  # warmup, then iterations 1..3
    rewrite(source, tmp_path / "bad", table=lambda t: with_column(t, "throughput_tps", tps))
    shutil.rmtree(tmp_path / "tmp")
    result = aggregate([tmp_path])
    rule = "a measured throughput must be a finite number >= 0"
    assert reasons(result.loaded)["bad"] == f"bad value: throughput_tps={shown} in iteration 2 ({rule})"
    [row] = result.summary.to_dict("records")
    assert row["throughput_tps_median"] == 1000.0 and row["iterations"] == 3
    report = (tmp_path / "report.md").read_text()
    assert "\N{INFINITY}" not in report and "best median throughput 1,000 tasks/s" in report


def test_a_nan_in_warmup_is_harmless_but_inf_elsewhere_is_refused(tmp_path: Path) -> None:
    source = good(tmp_path, "tmp")
    tps = pa.array([float("nan"), *TPS])
    rewrite(source, tmp_path / "warm", table=lambda t: with_column(t, "throughput_tps", tps))
    lat = pa.array([1.0, 1.0, float("inf"), 1.0, 1.0, 1.0])
    rewrite(source, tmp_path / "latency", table=lambda t: with_column(t, "e2e_latency_p99_ms", lat))
    lost = pa.array([0, 0, -1, 0, 0, 0])
    rewrite(source, tmp_path / "lost", table=lambda t: with_column(t, "tasks_lost", lost))
    shutil.rmtree(tmp_path / "tmp")
    loaded = load_results([tmp_path])
    found = reasons(loaded)
    assert [p.parent.name for p in loaded.files] == ["warm"]
    assert found["latency"] == "bad value: e2e_latency_p99_ms=inf in iteration 2 (must be finite and >= 0)"
    assert found["lost"] == "bad value: tasks_lost=-1 in iteration 2 (must be in [0, 2**53])"


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("e2e_latency_p99_ms", 1e308, "above 1e+12 ms: not a measurement"),
        ("duration_s", 2e9, "above 1e+09 s: not a measurement"),
        ("throughput_tps", 1e13, "above 1e+12 tasks/s: not a measurement"),
        ("ceiling_claim_us", 1e16, "above 1e+15 us: not a measurement"),
        ("busy_rate", 1e300, "above 1e+12: not a measurement"),
    ],
)
def test_absurdly_large_measurements_are_refused_by_unit(
    tmp_path: Path, name: str, value: float, rule: str
) -> None:
    source = good(tmp_path, "tmp")
    at_bound = pa.array([1.0, 1.0, 1e9 if name == "duration_s" else 1.0, 1.0, 1.0, 1.0])
    rewrite(source, tmp_path / "bound", table=lambda t: with_column(t, "duration_s", at_bound))
    values = pa.array([1.0, 1.0, value, 1.0, 1.0, 1.0])
    rewrite(source, tmp_path / "huge", table=lambda t: with_column(t, name, values))
    shutil.rmtree(tmp_path / "tmp")
    loaded = load_results([tmp_path])
    assert [p.parent.name for p in loaded.files] == ["bound"]
    assert reasons(loaded) == {"huge": f"bad value: {name}={value!r} in iteration 2 ({rule})"}


def test_identity_phase_and_timestamp_problems_are_bad_values(tmp_path: Path) -> None:
    source = good(tmp_path, "tmp")
    phases = pa.array(["warmup", "measure", "oops", "measure", "measure", "measure"])
    rewrite(source, tmp_path / "phase", table=lambda t: with_column(t, "phase", phases))
    ids = pa.array([None, "r", "r", "r", "r", "r"], type=pa.string())
    rewrite(source, tmp_path / "run_id", table=lambda t: with_column(t, "run_id", ids))
    warm = pa.array(["warmup"] * 6)
    rewrite(source, tmp_path / "warmup_only", table=lambda t: with_column(t, "phase", warm))
    when = pa.array([10**17] * 6, type=pa.timestamp("us", tz="UTC"))
    rewrite(source, tmp_path / "year", table=lambda t: with_column(t, "started_at", when))
    rewrite(source, tmp_path / "twice", table=lambda t: pa.concat_tables([t, t.slice(2, 1)]))
    shutil.rmtree(tmp_path / "tmp")
    found = reasons(load_results([tmp_path]))
    assert found["phase"] == "phase 'oops' is neither warmup nor measure"
    assert found["run_id"] == "run_id is missing in 1 row(s)"
    assert found["warmup_only"] == "no measured iteration (only warmup rows)"
    assert found["year"] == "bad value: started_at outside the years 1678 to 2261"
    assert found["twice"].startswith("iteration 2 of run_id ")
    assert found["twice"].endswith("job_num 0 appears twice")
    with pytest.raises(BadValueError):
        read_job_table(tmp_path / "twice" / "metrics.parquet")


def test_too_large_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import qbench.results.readers as readers

    good(tmp_path)
    monkeypatch.setattr(readers, "MAX_ROWS", 3)
    assert reasons(load_results([tmp_path]))["good"] == "6 rows, more than 3"


# --- duplicates -----------------------------------------------------------------


def test_a_copied_job_file_is_counted_once(tmp_path: Path) -> None:
    source = good(tmp_path, "0")
    shutil.copytree(tmp_path / "0", tmp_path / "1")
    (tmp_path / "2").mkdir()
    os.link(source, tmp_path / "2" / "metrics.parquet")
    rewrite(source, tmp_path / "3", table=lambda t: t.slice(0, 4))  # same job, other rows
    result = aggregate([tmp_path])
    [row] = result.summary.to_dict("records")
    assert row["iterations"] == len(TPS) and row["jobs"] == 1
    assert len(result.loaded.duplicates) == 3 and len(result.loaded.files) == 1
    found = reasons(result.loaded)
    assert found["1"].startswith(f"duplicate of {source.resolve()}: same run_id ")
    assert found["1"].endswith("and job_num 0, the same iteration rows")
    assert found["3"].endswith("other iteration rows")


def test_the_same_file_named_twice_is_read_once(tmp_path: Path) -> None:
    good(tmp_path)
    (tmp_path / "alias").symlink_to(tmp_path / "good")
    loaded = load_results([tmp_path, tmp_path / "good", tmp_path / "good" / "metrics.parquet"])
    assert len(loaded.files) == 1 and loaded.skipped == []


# --- jobs that failed or never finished -------------------------------------------


def hydra_job(root: Path, name: str, status: JobStatus | None, *, metrics: bool = True) -> Path:
    job_dir = root / name
    (job_dir / ".hydra").mkdir(parents=True)
    if metrics:
        write_job(job_dir, config_columns(workers=1 + len(name)), TPS)
    if status is not None:
        write_status(job_dir, status)
    return job_dir


def unfinished_sweep(root: Path) -> dict[str, str]:
    livelock = "livelock: 0 acks in 10 s, 14 claims given up"
    hydra_job(root, "ok", JobStatus(JobState.OK))
    hydra_job(root, "livelock", JobStatus(JobState.FAILED, livelock), metrics=False)
    hydra_job(root, "failed_with_file", JobStatus(JobState.FAILED, "audit failed: 3 tasks lost"))
    hydra_job(root, "interrupted", JobStatus(JobState.INTERRUPTED, "SIGINT"), metrics=False)
    hydra_job(root, "running", None, metrics=False)
    hydra_job(root, "no_status", None)
    hydra_job(root, "no_metrics", JobStatus(JobState.OK), metrics=False)
    (hydra_job(root, "garbage_status", None) / JobStatus.FILE).write_text("{oops")
    return {
        "livelock": f"job failed: {livelock}",
        "failed_with_file": "job failed: audit failed: 3 tasks lost",
        "interrupted": "job interrupted: SIGINT",
        "running": "job did not finish: no job_status.json, no metrics.parquet",
        "no_status": "job did not finish: no job_status.json",
        "no_metrics": "job did not finish: no metrics.parquet (its job_status.json says ok)",
        "garbage_status": "job did not finish: job_status.json is not a status qbench wrote",
    }


def test_jobs_that_failed_or_never_finished_are_named_with_their_reasons(tmp_path: Path) -> None:
    expected = unfinished_sweep(tmp_path)
    loaded = load_results([tmp_path])
    assert {Path(p).name: r for p, r in loaded.jobs} == expected
    assert set(loaded.jobs) <= set(loaded.skipped)  # the callback's log line reads `skipped`
    assert [p.parent.name for p in loaded.files] == ["ok"]
    with pytest.raises(JobFailedError, match="audit failed"):
        read_job_table(tmp_path / "failed_with_file" / "metrics.parquet")


def test_the_report_and_the_summary_line_name_missing_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = unfinished_sweep(tmp_path)
    assert aggregate_main([str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    [line] = out.splitlines()
    assert f"; {len(expected)} job(s) failed or did not finish: " in line
    for name, reason in expected.items():
        assert f"{tmp_path.resolve() / name} ({reason})" in line
        assert f"skipped {tmp_path.resolve() / name}: {reason}" in err
    for report in ("report.md", "report.html"):
        text = (tmp_path / report).read_text()
        assert f"{len(expected)} jobs failed or did not finish" in text  # issue 10: plurals right
        assert "livelock: 0 acks in 10 s, 14 claims given up" in text
        assert "result file left out" not in text and "result files left out" not in text


# --- reasons are one line -----------------------------------------------------------


def test_reasons_recorded_in_files_become_one_line(tmp_path: Path) -> None:
    hydra_job(tmp_path, "ok", JobStatus(JobState.OK))
    hydra_job(tmp_path, "evil", JobStatus(JobState.FAILED, "line one\nline two\x1b[31m\r" + "x" * 5000))
    [(_, reason)] = load_results([tmp_path]).jobs
    assert "\n" not in reason and "\x1b" not in reason and len(reason) <= 400
    assert reason.startswith("job failed: line one line two [31m")
    assert one_line("a\tb\n\nc") == "a b c"


# --- writing on a full or read-only file system --------------------------------------


def enospc(path: Path) -> None:
    path.write_bytes(b"half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_the_writer_surfaces_enospc_and_harms_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = write_bytes(tmp_path / "job_status.json", b"earlier")
    with pytest.raises(ResultsWriteError) as caught:
        write_atomic(target, enospc, replace=True)
    assert str(caught.value) == f"cannot write {target}: No space left on device"
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert target.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == [target.name]

    # a clean-up that fails too never hides the real error
    def unlink(self: Path, missing_ok: bool = False) -> None:
        raise FileNotFoundError(errno.ENOENT, "gone", str(self))

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(ResultsWriteError, match="No space left on device"):
        write_atomic(tmp_path / "metrics.parquet", enospc, replace=False)


def test_no_temporary_file_can_be_created_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(ResultsWriteError, match=r"^cannot write .*m\.parquet: No space left on device$"):
        write_new_file(tmp_path / "m.parquet", pa.table({"a": [1]}))


def test_aggregation_on_a_full_disk_keeps_the_earlier_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good(tmp_path)
    aggregate([tmp_path])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    def full(frame: object, path: Path) -> None:
        enospc(path)

    monkeypatch.setattr(pipeline, "_write_parquet", full)
    with pytest.raises(ResultsWriteError) as caught:
        aggregate([tmp_path])
    assert str(caught.value) == f"cannot write {tmp_path}: No space left on device"
    assert aggregate_main([str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"qbench.aggregate: error: cannot write {tmp_path}: No space left on device\n"
    )
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["good"]  # no scratch left


def test_a_read_only_output_directory_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good(tmp_path)

    def refuse(*args: object, **kwargs: object) -> str:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    assert aggregate_main([str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"qbench.aggregate: error: cannot write {tmp_path}: Read-only file system\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``path``; the test is skipped where mounting is not permitted."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8); the monkeypatched tests cover this")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if proc.returncode:
        pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    with contextlib.suppress(OSError), (directory / "filler").open("wb") as out:
        while True:
            out.write(b"\0" * 65536)
            out.flush()


@pytest.mark.slow
def test_a_real_full_tmpfs(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "2m") as mnt:
        good(mnt, "a")
        good(mnt, "b", workers=2)
        good(mnt, "c", workers=4)
        assert aggregate_main([str(mnt)]) == 0
        status = write_bytes(mnt / "job_status.json", b"earlier")
        before = {p.name: p.read_bytes() for p in mnt.iterdir() if p.is_file()}
        fill(mnt)
        with pytest.raises(ResultsWriteError, match="No space left on device") as caught:
            write_new_file(mnt / "new.parquet", pa.table({"a": list(range(100_000))}))
        assert caught.value.errno == errno.ENOSPC
        with pytest.raises(ResultsWriteError, match="No space left on device"):
            write_bytes(status, b"x" * 1_000_000)
        proc = run_qbench([str(mnt)], tmp_path, module="qbench.aggregate")
        assert proc.returncode == 2
        assert proc.stderr == f"qbench.aggregate: error: cannot write {mnt}: No space left on device\n"
        (mnt / "filler").unlink()
        after = {p.name: p.read_bytes() for p in mnt.iterdir() if p.is_file()}
        assert after == before, "no earlier result harmed, no temporary file left"
        assert sorted(p.name for p in mnt.iterdir() if p.is_dir()) == ["a", "b", "c"]


@pytest.mark.slow
def test_a_real_read_only_output_directory(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        good(mnt, "a")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        proc = run_qbench([str(mnt)], tmp_path, module="qbench.aggregate")
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr == f"qbench.aggregate: error: cannot write {mnt}: Read-only file system\n"
        assert [p.name for p in mnt.iterdir()] == ["a"]


# --- the compare gate -------------------------------------------------------------


def sweep(root: Path, curve: dict[int, list[float]], extra: dict[int, dict[str, Any]] | None = None) -> Path:
    for workers, values in curve.items():
        fixed = (extra or {}).get(workers)
        write_job(
            root / str(workers),
            config_columns(workers=workers),
            values,
            extra=functools.partial(same_values, fixed) if fixed else None,
        )
    return root


def same_values(values: dict[str, Any], iteration: int) -> dict[str, Any]:
    return dict(values)


TEN = [1000.0 + i for i in range(10)]


def gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], candidate: Path, *args: str
) -> tuple[int, str, str]:
    base = sweep(tmp_path / "base", {1: TEN, 4: [4 * x for x in TEN]})
    status = compare_main([str(base), str(candidate), *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out, err


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, -1.0])
def test_compare_fails_a_candidate_with_a_bad_throughput(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: float | None
) -> None:
    cand = sweep(tmp_path / "cand", {1: TEN, 4: [4 * x for x in TEN]}, {4: {"throughput_tps": bad}})
    status, out, err = gate(tmp_path, capsys, cand)
    assert status == 1
    assert "bad value: throughput_tps=" in err and "the candidate has no results for" in err
    assert "incomplete: 1 baseline config(s) missing from the candidate, 1 file(s) or job(s) left out" in out


def test_compare_fails_a_candidate_with_zero_throughput(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cand = sweep(tmp_path / "cand", {1: TEN, 4: [4 * x for x in TEN]}, {4: {"throughput_tps": 0.0}})
    status, out, _ = gate(tmp_path, capsys, cand)
    assert status == 1
    assert "INVALID (candidate throughput 0 tasks/s in 10 of 10 iteration(s))" in out
    assert "0 significantly slower by more than 5%, 1 with an invalid throughput" in out


def test_compare_fails_when_every_candidate_job_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cand = tmp_path / "cand"
    for workers in (1, 4):
        job = hydra_job(
            cand, str(workers), JobStatus(JobState.FAILED, "livelock: 0 acks in 10 s"), metrics=False
        )
        assert job.is_dir()
    status, out, err = gate(tmp_path, capsys, cand)
    assert status == 1
    assert err.count("job failed: livelock: 0 acks in 10 s") == 2
    assert "0 config(s) compared" in out and "2 baseline config(s) missing" in out


@pytest.mark.parametrize("case", ["corrupt", "utf8", "types"])
def test_a_corrupt_file_is_exit_2_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    cand = sweep(tmp_path / "cand", {1: TEN, 4: [4 * x for x in TEN]})
    if case == "corrupt":
        (cand / "x").mkdir()
        (cand / "x" / "metrics.parquet").write_bytes(b"PAR1 not parquet PAR1")
    elif case == "utf8":
        rewrite(cand / "4" / "metrics.parquet", cand / "x", meta=lambda m: m | {b"qbench.status": b"\xff"})
        shutil.rmtree(cand / "4")
    else:
        text = pa.array(["fast"] * 11)
        rewrite(
            cand / "4" / "metrics.parquet", cand / "x", table=lambda t: with_column(t, "throughput_tps", text)
        )
        shutil.rmtree(cand / "4")
    status, out, err = gate(tmp_path, capsys, cand)
    assert status == 2 and out == ""
    assert err.splitlines()[-1] == (
        "qbench.compare: error: 1 results file(s) cannot be read (listed above): the comparison is not usable"
    )


def test_too_few_iterations_is_inconclusive_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = sweep(tmp_path / "b2", {1: [1000.0, 1001.0]})
    cand = sweep(tmp_path / "c2", {1: [500.0, 501.0]})
    assert compare_main([str(base), str(cand)]) == 3
    out = capsys.readouterr().out
    assert (
        "ratio 0.500" in out and "INCONCLUSIVE (2 and 2 iterations: the smallest possible p is 0.333)" in out
    )
    assert "1 inconclusive (too few iterations for p < 0.05)" in out
    # the same slowdown with 4 iterations a side can be detected: a regression, exit 1
    base4 = sweep(tmp_path / "b4", {1: [1000.0, 1001.0, 1002.0, 1003.0]})
    cand4 = sweep(tmp_path / "c4", {1: [500.0, 501.0, 502.0, 503.0]})
    assert compare_main([str(base4), str(cand4)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    # with a stricter alpha, 4 a side are too few again (smallest p 0.029): inconclusive
    assert compare_main([str(base4), str(cand4), "--alpha", "0.01"]) == 3


def test_min_p_value_and_the_help_document_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert min_p_value(2, 2) == pytest.approx(1 / 3)
    assert min_p_value(3, 3) == pytest.approx(0.1)
    assert min_p_value(4, 4) == pytest.approx(2 / 70)
    assert min_p_value(1, 0) == 1.0 and min_p_value(1, 1) == 1.0
    with pytest.raises(SystemExit) as caught:
        compare_main(["--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for status in ("0  pass", "1  the gate failed", "2  unusable input", "3  inconclusive"):
        assert status in text
    assert "2/C(n1+n2, n1)" in text


def test_a_duplicate_candidate_file_does_not_fail_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cand = sweep(tmp_path / "cand", {1: TEN, 4: [4 * x for x in TEN]})
    shutil.copytree(cand / "4", cand / "copy")
    status, out, err = gate(tmp_path, capsys, cand)
    assert status == 0, out + err
    assert "duplicate of" in err and "2 config(s) compared, 0 significantly slower" in out


def test_nothing_usable_is_still_one_line(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "metrics.parquet").write_bytes(b"junk")
    with pytest.raises(AggregateError, match=r"^no usable results in .*not a readable Parquet file"):
        aggregate([tmp_path])


# --- the fuzzed reader ----------------------------------------------------------------


@functools.cache
def valid_file() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return write_job(Path(tmp), config_columns(workers=2), [100.0, 200.0, 300.0]).read_bytes()


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
META_BYTES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"{", b"[]", b"null", b'{"status": "ok"}', b'{"status": 5}', b"\xff\xfe", b"2"]),
)


@st.composite
def broken_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "truncated", "flipped", "columns", "metadata"]))
    data = valid_file()
    if kind == "bytes":
        return draw(st.binary(max_size=600)) + draw(st.sampled_from([b"", b"PAR1"]))
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flipped":
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    table = pq.read_table(pa.BufferReader(data))
    meta = dict(table.schema.metadata or {})
    if kind == "columns":
        for name in draw(st.lists(st.sampled_from(table.column_names), min_size=1, max_size=4)):
            values = draw(st.lists(VALUES, min_size=table.num_rows, max_size=table.num_rows))
            with contextlib.suppress(pa.ArrowException, OverflowError):
                table = with_column(table, name, pa.array(values))
    else:
        key = draw(
            st.sampled_from([b"qbench.status", b"qbench.schema_version", b"qbench.config", b"qbench.x"])
        )
        meta[key] = draw(META_BYTES)
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink)
    return bytes(sink.getvalue().to_pybytes())


@pytest.mark.slow
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=broken_files())
def test_fuzzed_files_are_read_or_listed_with_a_one_line_reason(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job"
        job.mkdir()
        path = job / "metrics.parquet"
        path.write_bytes(data)
        try:
            table = read_job_table(path)
        except ResultsError as exc:
            assert str(exc).strip()
        else:
            measured = [
                v
                for v, p in zip(table["throughput_tps"].to_pylist(), table["phase"].to_pylist(), strict=True)
                if p == "measure"
            ]
            assert measured and all(v is not None and 0 <= v < float("inf") for v in measured)
        loaded = load_results([Path(tmp)])
        assert len(loaded.files) + len(loaded.skipped) == 1
        for _, reason in loaded.skipped:
            assert reason and "\n" not in reason
        if loaded.files:
            tps = loaded.frame.loc[loaded.frame["phase"] == "measure", "throughput_tps"]
            assert tps.notna().all() and (tps >= 0).all() and (tps < float("inf")).all()


def test_the_hydra_status_wins_over_the_file(tmp_path: Path) -> None:
    """A job whose job_status.json says failed is not counted even if its file says ok."""
    hydra_job(tmp_path, "job", JobStatus(JobState.FAILED, "disk full while writing the status"))
    loaded = load_results([tmp_path])
    assert loaded.files == [] and json.dumps(loaded.jobs).count("disk full") == 1
