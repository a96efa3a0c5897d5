"""The answers a reader acts on: the stable knee, its bootstrap stability, bottlenecks, honest fits, words.

Every frame here goes through qbench's writer, loader and ``summarize()``: no hand-built summaries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qbench.analysis.bottleneck import bottleneck
from qbench.analysis.cli import _iteration_note
from qbench.analysis.compare import compare_sweeps
from qbench.analysis.knee import Point, stable_knee
from qbench.analysis.pipeline import aggregate
from qbench.analysis.recommend import recommendations
from qbench.analysis.scaling import fitted_points, scaling_table
from qbench.analysis.summary import key_columns, summarize
from qbench.analysis.thresholds import Thresholds
from qbench.report.document import write_report
from qbench.results.load import load_results

from .synthetic import config_columns, write_job

# Fixed relative deviations of ten iterations (sd about 1.2%): runs are reproducible.
SPREAD = np.array([-0.02, -0.01, 0.0, 0.01, 0.02, -0.015, 0.015, -0.005, 0.005, 0.0])
Extra = Callable[[int], dict[str, Any]]


def sweep(
    root: Path,
    curve: dict[int, float],
    *,
    spread: np.ndarray = SPREAD,
    extra: Extra | None = None,
    cfg: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Write one job per worker count and return the loaded frame."""
    for workers, tps in curve.items():
        write_job(
            root / f"w{workers}",
            config_columns(workers=workers, **(cfg or {})),
            list(tps * (1 + spread)),
            extra=extra,
        )
    return load_results([root]).frame


def recommend(frame: pd.DataFrame, t: Thresholds | None = None) -> list[dict[str, Any]]:
    t = t or Thresholds()
    keys = key_columns(frame)
    summary = summarize(frame, t)
    recs = recommendations(frame, summary, scaling_table(frame, summary, keys), keys, t)
    return [dict(r) for r in recs.to_dict("records")]


# --- the stable knee --------------------------------------------------------------


def test_flat_curve_recommends_the_fewest_workers_not_the_best_median(tmp_path: Path) -> None:
    frame = sweep(tmp_path, {1: 1000.0, 5: 1004.0, 10: 1008.0, 20: 1002.0})
    [rec] = recommend(frame)
    assert rec["best_workers"] == 10  # the best median is noise on a flat curve
    assert rec["recommended_workers"] == 1  # nothing is significantly slower than it
    assert rec["recommended_throughput_ci_low"] <= rec["recommended_throughput_tps"]
    assert rec["workers_stability"] >= 0.8


def test_a_significantly_slower_count_is_not_recommended(tmp_path: Path) -> None:
    frame = sweep(tmp_path, {1: 300.0, 2: 600.0, 4: 1000.0, 8: 1005.0})
    [rec] = recommend(frame)
    assert rec["best_workers"] == 8
    assert rec["recommended_workers"] == 4  # 0.5% below the best: within the noise; 2 is 40% below


def test_with_three_iterations_disjoint_intervals_still_separate_counts(tmp_path: Path) -> None:
    # 3 iterations a side: the rank test can never reach p < 0.05, the order-statistic CIs can.
    frame = sweep(tmp_path, {1: 200.0, 4: 800.0, 8: 810.0}, spread=np.array([-0.01, 0.0, 0.01]))
    [rec] = recommend(frame)
    assert rec["recommended_workers"] == 4


def test_stability_is_the_share_of_resamples_picking_the_same_count() -> None:
    clear = [Point(0, 1, np.full(10, 100.0) * (1 + SPREAD)), Point(0, 4, np.full(10, 400.0) * (1 + SPREAD))]
    assert stable_knee(clear, alpha=0.05).stability == 1.0
    rng = np.random.default_rng(3)
    close = [Point(0, w, 1000.0 * (1 + 0.01 * w / 8) * (1 + rng.normal(0, 0.02, 6))) for w in (1, 2, 4, 8)]
    pick = stable_knee(close, alpha=0.05, resamples=300)
    assert 0.0 < pick.stability < 1.0  # an ambiguous curve: resamples disagree
    assert stable_knee(close, alpha=0.05, resamples=300) == pick  # seeded: the same figure twice
    assert np.isnan(stable_knee(close, alpha=0.05, resamples=0).stability)


def test_two_runs_of_a_flat_curve_recommend_the_same_or_adjacent_counts(tmp_path: Path) -> None:
    picks = []
    for run, seed in enumerate((11, 12)):
        spread = np.random.default_rng(seed).normal(0, 0.03, 10)
        frame = sweep(tmp_path / str(run), {1: 1290.0, 5: 1300.0, 10: 1310.0, 20: 1295.0}, spread=spread)
        [rec] = recommend(frame)
        picks.append([1, 5, 10, 20].index(rec["recommended_workers"]))
    assert abs(picks[0] - picks[1]) <= 1


# --- bottlenecks ------------------------------------------------------------------


def _saturated(_: int) -> dict[str, Any]:
    return {"cpu_util_cores": 0.98, "ceiling_tps": 12_000.0, "harness_efficiency": 1300 / 12_000}


def test_a_saturated_worker_process_is_the_bottleneck_not_crosstalk(tmp_path: Path) -> None:
    # 10 ms sleeping tasks levelling off at 1,300 tasks/s, and falling: a USL peak inside the range.
    curve = {1: 95.0, 5: 470.0, 10: 900.0, 20: 1300.0, 40: 1150.0}
    frame = sweep(tmp_path, curve, extra=_saturated, cfg={"service.kind": "sleep", "service.ms": 10.0})
    [rec] = recommend(frame)
    assert rec["bottleneck"] == "the worker process"
    assert "0.98 cores" in rec["bottleneck_evidence"] and "12,000 tasks/s" in rec["bottleneck_evidence"]
    assert "processes" in rec["bottleneck_advice"]


def test_the_process_executor_is_judged_by_its_busiest_process(tmp_path: Path) -> None:
    frame = sweep(tmp_path, {1: 900.0, 4: 1000.0}, extra=_saturated, cfg={"executor.kind": "process"})
    frame["cpu_util_cores"] = 1.9  # the job total over two processes: no single one is known
    keys = key_columns(frame)
    without = summarize(frame)
    row = without.loc[without["throughput_tps_median"].idxmax()]
    assert bottleneck(row, frame, None, Thresholds()).name != "the worker process"
    frame["process_cpu_util_max_cores"] = 0.97
    summary = summarize(frame)
    assert "process_cpu_util_max_cores" not in keys and len(summary) == len(without)
    row = summary.loc[summary["throughput_tps_median"].idxmax()]
    found = bottleneck(row, frame, None, Thresholds())
    assert found.name == "the worker process" and "busiest worker process kept 0.97 cores" in found.evidence


def test_crosstalk_needs_an_ok_fit_and_unsaturated_workers(tmp_path: Path) -> None:
    falling = {1: 100.0, 2: 192.0, 4: 200.0, 8: 150.0}
    [rec] = recommend(sweep(tmp_path / "a", falling))
    assert rec["bottleneck"] == "crosstalk and retries" and "R²" in rec["bottleneck_evidence"]
    zigzag = {1: 100.0, 2: 300.0, 4: 110.0, 8: 290.0, 16: 120.0}
    [rec] = recommend(sweep(tmp_path / "b", zigzag))
    assert rec["bottleneck"] not in ("crosstalk and retries", "serialization on the write lock")


def test_above_the_ceiling_is_explained(tmp_path: Path) -> None:
    def above(_: int) -> dict[str, Any]:
        return {"ceiling_tps": 1000.0, "harness_efficiency": 1.07}

    sweep(tmp_path, {1: 1070.0, 2: 1071.0}, extra=above, cfg={"synchronous": "full"})
    aggregate([tmp_path])
    md = (tmp_path / "report.md").read_text()
    assert "measured above the single-connection ceiling" in md and "read these as at the ceiling" in md
    assert "measured 107% of it" in md


# --- honest fits and plots --------------------------------------------------------


def test_a_poor_fit_shows_no_n_star_and_draws_no_line(tmp_path: Path) -> None:
    sweep(tmp_path, {1: 100.0, 2: 300.0, 4: 110.0, 8: 290.0, 16: 120.0})
    aggregate([tmp_path])
    scaling = pd.read_parquet(tmp_path / "scaling.parquet")
    assert list(scaling["usl_status"]) == ["poor_fit"]
    frame = load_results([tmp_path]).frame
    summary = summarize(frame)
    assert fitted_points(summary, scaling, key_columns(frame)).empty
    md = (tmp_path / "report.md").read_text()
    assert "N*=" not in md and "predicted peak" not in md
    [usl_row] = [line for line in md.splitlines() if "| USL |" in line]
    cells = [c.strip() for c in usl_row.strip("|").split("|")]
    r2 = f"{scaling['usl_r_squared'].iloc[0]:.3g}"
    assert cells[4:10] == ["—", "—", "—", r2, "—", "—"]  # lambda sigma kappa R² N* peak
    assert "poor_fit" in cells[10]


def _plot_axes(frame: pd.DataFrame, name: str) -> Any:
    """The axes of one plot of the report, drawn from ``frame`` as the report draws it."""
    from qbench.report.curves import _curves
    from qbench.report.plots import _DRAW

    summary = summarize(frame)
    curves, _ = _curves(summary, scaling_table(frame, summary, key_columns(frame)))
    return _DRAW[name](curves, 0.001).axes[0]


@pytest.mark.parametrize(("wal", "log"), [(10_000.0, True), (1_500.0, False)])
def test_curves_far_apart_get_a_log_value_axis_that_says_so(tmp_path: Path, wal: float, log: bool) -> None:
    sweep(tmp_path / "delete", {1: 500.0, 2: 480.0, 4: 450.0}, cfg={"journal.mode": "delete"})
    sweep(tmp_path / "wal", {1: wal, 2: wal * 1.1, 4: wal * 1.2}, cfg={"journal.mode": "wal"})
    frame = load_results([tmp_path]).frame
    for name in ("throughput", "efficiency"):
        ax = _plot_axes(frame, name)
        assert ax.get_yscale() == ("log" if log else "linear")
        assert ("log scale, not from 0" in ax.get_ylabel()) is log
        if not log:
            assert ax.get_ylim()[0] == 0
    assert _plot_axes(frame, "busy_rate").get_yscale() == "linear"  # rates of 0 have no log


# --- words ----------------------------------------------------------------------


def test_plurals_p_values_and_settings(tmp_path: Path) -> None:
    for tasks, tps in ((200, 500.0), (300, 800.0)):
        sweep(tmp_path / str(tasks), {1: tps}, cfg={"tasks": tasks})
    result = aggregate([tmp_path])
    md = (tmp_path / "report.md").read_text()
    assert "at 1 worker;" in md and "at 1 workers" not in md
    assert "| Setting |" in md and "tasks=200" in md and "tasks=300" in md
    comparisons = pd.DataFrame(
        [{"host": "h", "key": "journal", "value_a": "delete", "value_b": "wal", "context": "workers=1"}]
    ).assign(throughput_a_tps=1.0, throughput_b_tps=2.0, ratio=2.0, ratio_ci_low=1.9, ratio_ci_high=2.1)
    comparisons = comparisons.assign(p_value=0.0001, significant=True)
    out = tmp_path / "words"
    write_report(out, result.summary, pd.DataFrame(), result.recommendations, comparisons)
    assert "p<0.001" in (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert "p&lt;0.001" in page and "&amp;lt;" not in page and "p=&lt;" not in page


def test_noisy_configs_are_named_by_what_tells_them_apart(tmp_path: Path) -> None:
    wide = np.array([-0.3, 0.0, 0.3])
    sweep(tmp_path, {1: 100.0, 2: 200.0}, spread=wide, cfg={"journal.mode": "delete"})
    aggregate([tmp_path])
    md = (tmp_path / "report.md").read_text()
    assert "2 of 2 configurations are noisy (throughput CV above 10%): workers=1; workers=2." in md


def test_compare_notes_different_iteration_counts(tmp_path: Path) -> None:
    sweep(tmp_path / "base", {1: 100.0, 2: 200.0})
    sweep(tmp_path / "cand", {1: 100.0, 2: 200.0}, spread=SPREAD[:4])
    sweep(tmp_path / "short", {1: 100.0})
    result = compare_sweeps(tmp_path / "base", tmp_path / "cand", threshold=0.05, alpha=0.05)
    assert _iteration_note(result.table) == (
        "note: the baseline has 10 iterations per config, the candidate 4 iterations: "
        "the rank test allows for it, but noise differs between the sides"
    )
    missing = compare_sweeps(tmp_path / "base", tmp_path / "short", threshold=0.05, alpha=0.05).missing
    assert missing == ["workers=2"]
