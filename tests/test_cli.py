"""End to end: ``python -m qbench`` as a user runs it, in a scratch directory."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from qbench.results.columns import (
    META_CONFIG,
    META_SCHEMA_VERSION,
    META_STATUS,
    META_SYSINFO,
    SCHEMA_VERSION,
)

from .conftest import run_qbench

# every test here runs `python -m qbench` in a subprocess
pytestmark = pytest.mark.slow

SMALL = ["tasks=120", "iterations=2", "warmup=1", "history_rows=50", "ceiling.tasks=100"]


def test_sweep_writes_one_parquet_per_job_loadable_without_qbench(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_qbench(
        ["-m", "workers=1,3", "journal=wal,delete", *SMALL, f"hydra.sweep.dir={sweep}"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted(glob.glob(str(sweep / "**" / "metrics.parquet"), recursive=True))
    assert len(files) == 4
    # one headline line per finished job
    assert proc.stdout.count("audit ok") + proc.stderr.count("audit ok") == 4

    # pandas, reading the whole sweep from a glob of files
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert len(df) == 4 * 3
    assert set(df["workers"]) == {1, 3} and set(df["journal_mode"]) == {"wal", "delete"}
    assert set(df.loc[df["journal_mode"] == "delete", "synchronous"]) == {"full"}
    assert (df["phase"] == "warmup").sum() == 4
    assert df["audit_ok"].all() and (df["tasks_lost"] == 0).all()

    # pyarrow.dataset over the sweep directory
    table = ds.dataset(files, format="parquet").to_table()
    assert table.num_rows == 12
    assert "throughput_tps" in table.column_names

    meta = pq.read_schema(files[0]).metadata
    assert meta[META_SCHEMA_VERSION.encode()].decode() == SCHEMA_VERSION
    assert b"workers:" in meta[META_CONFIG.encode()]
    sysinfo = json.loads(meta[META_SYSINFO.encode()])
    assert sysinfo["sqlite_version"] and sysinfo["cpu_count_logical"]
    assert json.loads(meta[META_STATUS.encode()])["status"] == "ok"
    # no database files left behind
    assert not glob.glob(str(sweep / "**" / "*.db*"), recursive=True)

    # the sweep was aggregated when it ended
    summary = pd.read_parquet(sweep / "summary.parquet")
    assert len(summary) == 4 and (summary["iterations"] == 2).all()
    assert len(pd.read_parquet(sweep / "scaling.parquet")) == 2
    recs = pd.read_parquet(sweep / "recommendations.parquet")
    assert set(recs["journal_mode"]) == {"wal", "delete"}
    assert (sweep / "recommendations.csv").exists() and (sweep / "report.html").exists()
    report = (sweep / "report.md").read_text()
    assert "## Key findings" in report and "## Configuration recommendations" in report
    assert "too_few_points" in report  # two worker counts cannot carry a USL fit


def test_single_run_goes_under_outputs_runs(tmp_path: Path) -> None:
    proc = run_qbench(["tasks=50", "iterations=1", "warmup=0", "history_rows=0"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    [path] = glob.glob(str(tmp_path / "outputs" / "runs" / "*" / "*" / "metrics.parquet"))
    assert len(pd.read_parquet(path)) == 1


def test_yaml_synchronous_off_means_off(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "mine.yaml").write_text(
        "defaults:\n  - config\n  - _self_\nsynchronous: off\ntasks: 40\niterations: 1\nwarmup: 0\n"
    )
    run_dir = tmp_path / "run"
    proc = run_qbench(["--config-dir", "mine", "--config-name", "mine", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert set(pd.read_parquet(run_dir / "metrics.parquet")["synchronous"]) == {"off"}


def test_failed_job_fails_the_process_and_is_named(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_qbench(
        [
            "-m",
            "iteration_timeout_s=0.000001,600",
            "tasks=200",
            "iterations=1",
            "warmup=0",
            "ceiling.enabled=false",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert proc.returncode == 1
    assert "1 job(s) failed" in proc.stderr
    assert str(sweep / "0") in proc.stderr and "DrainTimeoutError" in proc.stderr
    assert (sweep / "1" / "metrics.parquet").exists()


def test_existing_results_are_never_overwritten(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["tasks=30", "iterations=1", "warmup=0", f"hydra.run.dir={run_dir}"]
    assert run_qbench(args, tmp_path).returncode == 0
    before = (run_dir / "metrics.parquet").read_bytes()
    again = run_qbench(args, tmp_path)
    assert again.returncode == 1
    assert "never overwrites" in again.stderr
    assert (run_dir / "metrics.parquet").read_bytes() == before


BAD_INPUT = [
    (["workers=0"], "workers=0"),
    (["workers=-3"], "workers=-3"),
    (["workers=abc"], "workers='abc'"),
    (["tasks=0"], "tasks=0"),
    (["iterations=0"], "iterations=0"),
    (["warmup=-1"], "warmup=-1"),
    (["journal=bogus"], "journal='bogus'"),
    (["synchronous=bogus"], "synchronous='bogus'"),
    (["busy.timeout_ms=-1"], "busy.timeout_ms=-1"),
    (["claim.batch=0"], "claim.batch=0"),
    (["pool=fixed", "pool.size=0"], "pool.size=0"),
    (["payload_bytes=-1"], "payload_bytes=-1"),
    (["db.dir=/no/such/dir"], "db.dir='/no/such/dir'"),
    (["db.dir=/proc"], "db.dir='/proc'"),
    (["-m", "workers=1,5,0"], "workers=0"),
    (["-m", "journal=wal,bogus"], "journal='bogus'"),
    (["no_such_key=1"], "no_such_key"),
    (["workers=1,2"], "workers='1,2'"),
]


@pytest.mark.parametrize(("args", "named"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_gets_one_line_exit_2_and_nothing_written(
    tmp_path: Path, args: list[str], named: str
) -> None:
    proc = run_qbench(args, tmp_path)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("qbench: error: ") and named in lines[0]
    assert "allowed" in lines[0] or "expected" in lines[0] or "unknown key" in lines[0] or "sweep" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_hydra_flags_work(tmp_path: Path) -> None:
    cfg = run_qbench(["--cfg", "job", "workers=7", "journal=delete"], tmp_path)
    assert cfg.returncode == 0
    assert "workers: 7" in cfg.stdout and "mode: delete" in cfg.stdout and "synchronous: full" in cfg.stdout
    helped = run_qbench(["--help"], tmp_path)
    assert helped.returncode == 0 and "journal: delete, persist, truncate, wal" in helped.stdout
    completion = run_qbench(["-sc", "query=bash"], tmp_path, env_extra={"COMP_LINE": "qbench journal="})
    assert completion.returncode == 0
    assert set(completion.stdout.split()) == {
        f"journal={m}" for m in ("delete", "persist", "truncate", "wal")
    }
    assert list(tmp_path.iterdir()) == []


def test_environment_values_are_not_copied_into_results(tmp_path: Path) -> None:
    secret_dir = tmp_path / "secret-place"
    secret_dir.mkdir()
    run_dir = tmp_path / "run"
    proc = run_qbench(
        [
            "db.dir=${oc.env:QBENCH_TEST_DB_DIR}",
            "tasks=20",
            "iterations=1",
            "warmup=0",
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
        env_extra={"QBENCH_TEST_DB_DIR": str(secret_dir)},
    )
    assert proc.returncode == 0, proc.stderr
    path = run_dir / "metrics.parquet"
    assert set(pd.read_parquet(path)["db_dir"]) == {"<from environment>"}
    assert b"secret-place" not in pq.read_schema(path).metadata[META_CONFIG.encode()]
