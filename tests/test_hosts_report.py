"""The report's per-host section: machine facts and each host's recommendation side by side."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qbench.analysis.pipeline import aggregate
from qbench.results.columns import (
    META_CONFIG,
    META_SCHEMA_VERSION,
    META_STATUS,
    META_SYSINFO,
    METRICS_FILE,
    SCHEMA_VERSION,
    build_table,
)
from qbench.results.load import load_results
from qbench.results.machine import machine_facts
from qbench.results.writer import write_new_file

from .synthetic import config_columns, measure_row, write_job

RNG = np.random.default_rng(11)
MACHINES: dict[str, dict[str, Any]] = {
    "fast-nvme": {
        "cpu_model": "AMD EPYC 7763",
        "cpu_count_logical": 64,
        "memory_total_bytes": 256 * 2**30,
        "os": "Linux-6.8",
        "db_fs_type": "ext4",
        "sqlite_version": "3.45.1",
        "python_version": "3.11.7",
    },
    "slow-nfs": {
        "cpu_model": "Intel Xeon E5-2670",
        "cpu_count_logical": 8,
        "memory_total_bytes": 16 * 2**30,
        "os": "Linux-5.15",
        "db_fs_type": "nfs4",
        "sqlite_version": "3.37.2",
        "python_version": "3.10.12",
    },
}


def write_host_job(job_dir: Path, host: str, workers: int, tps: float, fsync_us: float) -> None:
    """A job file like tests/synthetic.write_job's, with the machine facts sysinfo records."""
    config = config_columns(workers=workers)
    run_id = uuid.uuid4().hex
    values = tps * (1 + RNG.normal(0, 0.01, 6))
    rows = [
        {
            "run_id": run_id,
            "host": host,
            "job_num": 0,
            "iteration": i,
            "phase": "warmup" if i == 0 else "measure",
            "started_at": datetime.now(UTC),
            **config,
            **measure_row(float(x), workers),
        }
        for i, x in enumerate(values)
    ]
    sysinfo = {"host": host, **MACHINES[host], "fsync_latency_us": fsync_us, "sqlite_compile_options": ["X"]}
    metadata = {
        META_SCHEMA_VERSION: SCHEMA_VERSION,
        META_CONFIG: "synthetic: true\n",
        META_SYSINFO: json.dumps(sysinfo),
        META_STATUS: json.dumps({"status": "ok", "reason": ""}),
    }
    job_dir.mkdir(parents=True)
    write_new_file(job_dir / METRICS_FILE, build_table(rows, dict(config), metadata))


def two_hosts(root: Path) -> None:
    # fast-nvme keeps scaling to 8 workers; slow-nfs peaks at 2 and falls
    curves = {
        "fast-nvme": {1: 1000.0, 2: 1900.0, 4: 3600.0, 8: 6500.0},
        "slow-nfs": {1: 300.0, 2: 420.0, 4: 300.0, 8: 200.0},
    }
    fsync = {"fast-nvme": [40.0, 60.0, 50.0, 45.0], "slow-nfs": [2500.0, 3500.0, 3000.0, 2800.0]}
    for host, curve in curves.items():
        for (workers, tps), probe in zip(curve.items(), fsync[host], strict=True):
            write_host_job(root / f"{host}-{workers}", host, workers, tps, probe)


def section(md: str) -> str:
    start = md.index("## Hosts")
    return md[start : md.index("\n## ", start + 1)]


def test_load_keeps_each_hosts_machine_facts(tmp_path: Path) -> None:
    two_hosts(tmp_path)
    hosts = load_results([tmp_path]).hosts
    assert sorted(hosts) == ["fast-nvme", "slow-nfs"]
    nfs = hosts["slow-nfs"]
    assert nfs.files == 4
    assert nfs.values["db_fs_type"] == ["nfs4"] and nfs.values["sqlite_version"] == ["3.37.2"]
    assert nfs.fsync_median_us() == pytest.approx(2900.0)  # median of 2500, 2800, 3000, 3500
    assert hosts["fast-nvme"].values["cpu_model"] == ["AMD EPYC 7763"]


def test_report_puts_hosts_side_by_side_with_their_machines(tmp_path: Path) -> None:
    two_hosts(tmp_path)
    result = aggregate([tmp_path])
    md = (tmp_path / "report.md").read_text()
    hosts = section(md)
    # the machine facts, one row per host
    facts = [
        "AMD EPYC 7763",
        "Intel Xeon E5-2670",
        "ext4",
        "nfs4",
        "3.45.1",
        "3.37.2",
        "47.5 \N{MICRO SIGN}s",
    ]
    for fact in [*facts, "2.9 ms (2.5 ms\N{EN DASH}3.5 ms over 4 jobs)"]:
        assert fact in hosts, fact
    # the side-by-side table: one row for the one workload and storage setting, a column per host
    table = [line for line in hosts.splitlines() if line.startswith("| drain, wal/normal")]
    assert len(table) == 1
    cells = [c.strip() for c in table[0].strip("|").split("|")]
    recs = result.recommendations
    recs = recs[recs["tier"] == "development"] if "tier" in recs else recs
    by_host = {r["host"]: r for r in recs.to_dict("records")}
    assert cells[1].startswith(f"{by_host['fast-nvme']['recommended_workers']} worker")
    assert cells[2].startswith(f"{by_host['slow-nfs']['recommended_workers']} worker")
    assert by_host["fast-nvme"]["recommended_workers"] == 8
    assert by_host["slow-nfs"]["recommended_workers"] == 2
    # a section per host, with its configurations and jobs
    assert "### fast-nvme" in hosts and "### slow-nfs" in hosts
    assert "4 configurations measured in 4 jobs; CPU Intel Xeon E5-2670" in hosts
    assert ">Hosts</h2>" in (tmp_path / "report.html").read_text()


def test_one_host_has_no_hosts_section(tmp_path: Path) -> None:
    for workers, tps in {1: 100.0, 2: 190.0, 4: 350.0}.items():
        write_job(tmp_path / str(workers), config_columns(workers=workers), [tps] * 4)
    aggregate([tmp_path])
    assert "## Hosts" not in (tmp_path / "report.md").read_text()


def test_host_without_recorded_facts_shows_dashes(tmp_path: Path) -> None:
    two_hosts(tmp_path)
    for workers, tps in {1: 100.0, 2: 190.0, 4: 350.0}.items():
        write_job(tmp_path / f"bare-{workers}", config_columns(workers=workers), [tps] * 4, host="bare")
    aggregate([tmp_path])
    hosts = section((tmp_path / "report.md").read_text())
    assert "3 configurations measured in 3 jobs; no machine facts recorded." in hosts
    bare = next(line for line in hosts.splitlines() if line.startswith("| bare |"))
    assert bare.count("\N{EM DASH}") >= 7


@pytest.mark.parametrize(
    "sysinfo",
    ["not json", "[1, 2]", json.dumps({"cpu_model": ["a list"], "fsync_latency_us": "fast"}), "x" * 300_000],
)
def test_malformed_machine_facts_are_left_out(sysinfo: str) -> None:
    assert machine_facts({META_SYSINFO: sysinfo}) == {}


def test_machine_facts_take_scalars_only_and_one_line() -> None:
    facts = machine_facts(
        {META_SYSINFO: json.dumps({"cpu_model": "A\nB", "fsync_latency_us": 12.5, "cpu_count_logical": True})}
    )
    assert facts == {"cpu_model": "A B", "fsync_latency_us": 12.5}
