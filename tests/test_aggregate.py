"""Aggregation, recommendation rules and comparisons on hand-made results with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbench.analysis.comparisons import comparisons
from qbench.analysis.pipeline import aggregate
from qbench.analysis.recommend import recommendations
from qbench.analysis.scaling import scaling_table
from qbench.analysis.summary import key_columns, summarize
from qbench.analysis.thresholds import Thresholds
from qbench.results.load import load_results

from .conftest import run_qbench
from .synthetic import config_columns, write_job

RNG = np.random.default_rng(7)


def noisy(value: float, n: int = 10, rel: float = 0.01) -> list[float]:
    return list(value * (1 + RNG.normal(0, rel, n)))


def make_sweep(
    root: Path,
    curve: dict[int, float],
    *,
    journal: str = "wal",
    busy: dict[int, float] | None = None,
    start: int = 0,
    pool_wait_share: float = 0.0,
) -> None:
    for i, (workers, tps) in enumerate(sorted(curve.items())):
        cfg = config_columns(
            workers=workers, **{"journal.mode": journal}, synchronous="normal" if journal == "wal" else "full"
        )
        rate = (busy or {}).get(workers, 0.0)

        def extra(_: int, workers: int = workers, tps: float = tps, rate: float = rate) -> dict[str, float]:
            duration = 1000 / tps
            return {"busy_rate": rate, "pool_wait_total_s": pool_wait_share * duration * workers}

        write_job(root / str(start + i), cfg, noisy(tps), extra=extra)


def test_summary_uses_measured_iterations_only(tmp_path: Path) -> None:
    cfg = config_columns(workers=2)
    write_job(tmp_path / "0", cfg, [100.0, 110.0, 120.0, 130.0, 140.0], warmup=3)
    loaded = load_results([tmp_path])
    summary = summarize(loaded.frame)
    [row] = summary.to_dict("records")
    assert row["iterations"] == 5
    assert row["throughput_tps_median"] == 120.0  # warmup rows (100 x3) would pull it down
    assert row["throughput_tps_mean"] == 120.0
    assert row["throughput_tps_ci_low"] <= 120.0 <= row["throughput_tps_ci_high"]
    assert row["throughput_tps_cv"] == pytest.approx(np.std([100, 110, 120, 130, 140], ddof=1) / 120)
    assert row["noisy"] is True  # CV 13% > 10%
    assert row["host"] == "testhost"


def test_hosts_are_never_pooled(tmp_path: Path) -> None:
    cfg = config_columns(workers=1)
    write_job(tmp_path / "a", cfg, [100.0] * 3, host="alpha")
    write_job(tmp_path / "b", cfg, [300.0] * 3, host="beta")
    summary = summarize(load_results([tmp_path]).frame)
    assert sorted(summary["host"]) == ["alpha", "beta"]
    assert sorted(summary["throughput_tps_median"]) == [100.0, 300.0]


def test_recommendation_rules_on_a_known_curve(tmp_path: Path) -> None:
    make_sweep(
        tmp_path,
        {1: 100.0, 2: 192.0, 4: 200.0, 8: 150.0},
        busy={1: 0.0, 2: 0.0005, 4: 0.002, 8: 0.01},
    )
    frame = load_results([tmp_path]).frame
    keys = key_columns(frame)
    t = Thresholds()
    summary = summarize(frame, t)
    scaling = scaling_table(frame, summary, keys)
    [rec] = recommendations(frame, summary, scaling, keys, t).to_dict("records")
    assert rec["best_workers"] == 4
    assert rec["knee_workers"] == 2  # 192 >= 0.95 * 200
    assert rec["busy_onset_workers"] == 4  # first median busy rate above 0.1%
    assert rec["best_throughput_ci_low"] <= rec["best_throughput_tps"] <= rec["best_throughput_ci_high"]
    # throughput falls past 4 workers: the USL fit puts the peak inside the swept range
    assert rec["bottleneck"] == "crosstalk and retries"
    assert "N*=" in rec["bottleneck_evidence"]
    # with a stricter knee the answer moves
    strict = Thresholds(knee_fraction=0.99)
    [rec2] = recommendations(frame, summary, scaling, keys, strict).to_dict("records")
    assert rec2["knee_workers"] == 4


def test_pool_exhaustion_is_named_with_its_figure(tmp_path: Path) -> None:
    make_sweep(tmp_path, {1: 100.0, 2: 150.0, 4: 170.0, 8: 175.0}, pool_wait_share=0.6)
    frame = load_results([tmp_path]).frame
    keys = key_columns(frame)
    summary = summarize(frame)
    [rec] = recommendations(frame, summary, scaling_table(frame, summary, keys), keys, Thresholds()).to_dict(
        "records"
    )
    assert rec["bottleneck"] == "pool exhaustion"
    assert "60%" in rec["bottleneck_evidence"]


def test_comparison_between_journals_is_significant_only_when_it_is(tmp_path: Path) -> None:
    make_sweep(tmp_path / "wal", {1: 1000.0, 2: 1000.0}, journal="wal")
    make_sweep(tmp_path / "delete", {1: 500.0, 2: 995.0}, journal="delete", start=10)
    frame = load_results([tmp_path]).frame
    keys = key_columns(frame)
    table = comparisons(frame, summarize(frame), keys, Thresholds())
    journal = table[table["key"] == "journal"].set_index("context")
    assert len(journal) == 2
    at1, at2 = journal.loc["workers=1"], journal.loc["workers=2"]
    assert at1["significant"] and at1["p_value"] < 0.05
    assert min(at1["ratio"], 1 / at1["ratio"]) == pytest.approx(0.5, rel=0.05)
    assert at1["ratio_ci_low"] <= at1["ratio"] <= at1["ratio_ci_high"]
    assert not at2["significant"] or abs(at2["ratio"] - 1) < 0.02


def test_single_config_says_too_few_points(tmp_path: Path) -> None:
    write_job(tmp_path / "0", config_columns(workers=4), noisy(500.0))
    result = aggregate([tmp_path])
    scaling = pd.read_parquet(tmp_path / "scaling.parquet")
    assert list(scaling["usl_status"]) == ["too_few_points"]
    assert scaling["usl_sigma"].isna().all()
    recs = result.recommendations
    [rec] = recs[recs["tier"] == "development"].to_dict("records")  # one row per tier since the tiers
    assert "only 1 worker count" in rec["confidence"]


def test_bad_files_are_reported_and_left_out(tmp_path: Path) -> None:
    good = write_job(tmp_path / "good", config_columns(workers=1), [100.0] * 3)
    write_job(tmp_path / "failed", config_columns(workers=2), [50.0] * 3, status="failed")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "metrics.parquet").write_bytes(b"PAR1garbage")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "metrics.parquet").write_bytes(good.read_bytes()[:300])
    (tmp_path / "foreign").mkdir()
    pq.write_table(pa.table({"a": [1]}), tmp_path / "foreign" / "metrics.parquet")
    (tmp_path / "old").mkdir()
    pq.write_table(
        pa.table({"a": [1]}).replace_schema_metadata({"qbench.schema_version": "0"}),
        tmp_path / "old" / "metrics.parquet",
    )
    (tmp_path / "cols").mkdir()
    pq.write_table(
        pa.table({"workers": [1]}).replace_schema_metadata({"qbench.schema_version": "1"}),
        tmp_path / "cols" / "metrics.parquet",
    )
    loaded = load_results([tmp_path])
    assert loaded.files == [good.resolve()]
    reasons = {Path(p).parent.name: r for p, r in loaded.skipped}
    assert set(reasons) == {"failed", "corrupt", "truncated", "foreign", "old", "cols"}
    assert "job failed" in reasons["failed"]
    assert "not a readable Parquet file" in reasons["corrupt"]
    assert "not a readable Parquet file" in reasons["truncated"]
    assert "not a qbench results file" in reasons["foreign"]
    assert "schema version 0" in reasons["old"]
    assert "missing columns" in reasons["cols"]
    result = aggregate([tmp_path])
    assert len(result.summary) == 1
    report = (tmp_path / "report.md").read_text()
    assert "truncated" in report and "missing columns" in report


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "empty", "no-metrics", "only-corrupt"])
def test_bad_input_one_line_nonzero_nothing_written(tmp_path: Path, case: str) -> None:
    target = tmp_path / "dir"
    if case != "missing":
        target.mkdir()
    if case == "no-metrics":
        (target / "notes.txt").write_text("hello")
    if case == "only-corrupt":
        (target / "metrics.parquet").write_bytes(b"not parquet")
    before = sorted(p.name for p in target.iterdir()) if target.exists() else None
    proc = run_qbench([str(target)], tmp_path, module="qbench.aggregate")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("qbench.aggregate: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    after = sorted(p.name for p in target.iterdir()) if target.exists() else None
    assert after == before


@pytest.mark.slow
def test_compare_gates_on_a_significant_slowdown(tmp_path: Path) -> None:
    make_sweep(tmp_path / "base", {1: 1000.0, 4: 2000.0})
    make_sweep(tmp_path / "same", {1: 1000.0, 4: 2000.0})
    make_sweep(tmp_path / "slow", {1: 1000.0, 4: 1600.0})
    same = run_qbench([str(tmp_path / "base"), str(tmp_path / "same")], tmp_path, module="qbench.compare")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "0 significantly slower" in same.stdout
    slow = run_qbench([str(tmp_path / "base"), str(tmp_path / "slow")], tmp_path, module="qbench.compare")
    assert slow.returncode == 1
    assert "workers=4" in slow.stdout and "REGRESSION" in slow.stdout
    lenient = run_qbench(
        [str(tmp_path / "base"), str(tmp_path / "slow"), "--threshold", "0.5"],
        tmp_path,
        module="qbench.compare",
    )
    assert lenient.returncode == 0
    nothing = run_qbench([str(tmp_path / "base"), str(tmp_path / "nope")], tmp_path, module="qbench.compare")
    assert nothing.returncode == 2 and nothing.stderr.count("\n") == 1


def test_callback_thresholds_in_conf_match_the_defaults() -> None:
    import dataclasses

    from omegaconf import OmegaConf

    from qbench.app.paths import conf_dir

    conf = OmegaConf.load(conf_dir() / "config.yaml")
    configured = dict(conf.hydra.callbacks.aggregate)
    configured.pop("_target_")
    configured.pop("enabled")
    assert configured == dataclasses.asdict(Thresholds())


@pytest.mark.slow
def test_compare_fails_when_candidate_results_are_missing_or_hosts_mix(tmp_path: Path) -> None:
    make_sweep(tmp_path / "base", {1: 1000.0, 4: 2000.0})
    make_sweep(tmp_path / "cand", {1: 1000.0})  # the 4-worker job failed or never ran
    proc = run_qbench([str(tmp_path / "base"), str(tmp_path / "cand")], tmp_path, module="qbench.compare")
    assert proc.returncode == 1
    assert "the candidate has no results for" in proc.stderr and "workers=4" in proc.stderr
    assert "incomplete: 1 baseline config(s) missing" in proc.stdout
    write_job(tmp_path / "mixed" / "x", config_columns(workers=1), noisy(900.0), host="other")
    make_sweep(tmp_path / "mixed", {1: 1000.0}, start=5)
    mixed = run_qbench([str(tmp_path / "mixed"), str(tmp_path / "base")], tmp_path, module="qbench.compare")
    assert mixed.returncode == 2 and "mixes results of 2 hosts" in mixed.stderr


def test_recommendations_never_mix_workloads(tmp_path: Path) -> None:
    for i, (service_ms, tps) in enumerate([(0.0, 3000.0), (1.0, 800.0)]):
        for j, workers in enumerate([1, 4]):
            cfg = config_columns(workers=workers, **{"service.kind": "sleep", "service.ms": service_ms})
            write_job(tmp_path / f"{i}{j}", cfg, noisy(tps * (1 + j)))
    result = aggregate([tmp_path])
    recs = result.recommendations
    assert len(recs) == 2 * 4  # four tiers per workload
    assert sorted(recs["service_ms"].unique()) == [0.0, 1.0]


def test_recommendations_md_puts_settings_shared_by_every_row_on_one_line(tmp_path: Path) -> None:
    make_sweep(tmp_path / "wal", {1: 100.0, 2: 150.0, 4: 160.0})
    make_sweep(tmp_path / "delete", {1: 50.0, 2: 60.0, 4: 55.0}, journal="delete", start=10)
    out = tmp_path / "out"
    out.mkdir()
    aggregate([tmp_path / "wal", tmp_path / "delete"], out)
    common, _, table = (out / "recommendations.md").read_text().partition("\n\n")
    header = table.splitlines()[0]
    assert common.startswith("Every row: ") and "workload_kind=drain" in common
    assert "executor_kind=async" in common and "| workload_kind |" not in header
    assert "| journal_mode |" in header  # it differs between the rows, so it stays a column
    assert "journal_mode=" not in common
