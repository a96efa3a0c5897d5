"""The ceiling: interleaved repeats, their median and spread, on every row of the job."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qbench.analysis.pipeline import aggregate
from qbench.run.ceiling import MAX_REPEATS, Ceiling, CeilingRepeats, measure_ceiling, repeat_positions
from qbench.run.job import run_job

from .conftest import small_config
from .synthetic import config_columns, write_job


@pytest.mark.parametrize(
    ("warmup", "iterations", "positions"),
    [
        (0, 1, {0, 1}),  # before the only iteration and after it
        (1, 2, {1, 2, 3}),  # after the warmup, between each, after the last
        (2, 10, {2, 7, 12}),  # at most MAX_REPEATS, evenly spread
    ],
)
def test_repeats_run_after_the_warmup_between_iterations_and_after_the_last(
    warmup: int, iterations: int, positions: set[int]
) -> None:
    assert repeat_positions(warmup, iterations) == positions
    assert len(positions) <= MAX_REPEATS


def test_with_db_keep_no_repeat_runs_after_the_last_iteration() -> None:
    assert repeat_positions(1, 3, after_last=False) == {1, 2, 3}
    assert repeat_positions(0, 1, after_last=False) == {0}


def test_median_and_spread_of_the_repeats() -> None:
    runs = iter([1000.0, 1300.0, 1100.0])

    def measure() -> Ceiling:
        tps = next(runs)
        return Ceiling(tasks=100, tps=tps, enqueue_us=tps / 100, claim_us=1e6 / tps, ack_us=2e6 / tps)

    repeats = CeilingRepeats(measure, frozenset({1, 2, 3}))
    assert repeats.median() is None and repeats.spread() is None
    for iteration in range(5):
        repeats.before(iteration)
    assert len(repeats.done) == 3
    ceiling = repeats.median()
    assert ceiling is not None and ceiling.tps == 1100.0 and ceiling.claim_us == pytest.approx(1e6 / 1100)
    assert repeats.spread() == pytest.approx((1300 - 1000) / 1100)


def test_a_job_measures_its_ceiling_interleaved_and_records_the_median(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured_at: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> Ceiling:
        measured_at.append(time.time())
        return measure_ceiling(*args, **kwargs)

    monkeypatch.setattr("qbench.run.job.measure_ceiling", timed)
    cfg = small_config(tmp_path, tasks=60, iterations=2, warmup=1, history_rows=10)
    cfg = dataclasses.replace(cfg, ceiling=dataclasses.replace(cfg.ceiling, enabled=True, tasks=60))
    outcome = run_job(cfg, tmp_path)
    assert outcome.ok, outcome.reason
    assert outcome.metrics_path is not None
    frame = pd.read_parquet(outcome.metrics_path).sort_values("iteration")
    # one repeat after the warmup, one between the two measured iterations, one after the last
    assert len(measured_at) == 3
    started = [t.timestamp() for t in frame["started_at"]]
    assert started[0] < measured_at[0] < started[1] < measured_at[1] < started[2] < measured_at[2]
    # the job's ceiling, the same on each row (warmup included), with the repeats' spread
    assert (frame["ceiling_repeats"] == 3).all() and frame["ceiling_tps"].nunique() == 1
    assert frame["ceiling_tps_spread"].notna().all() and (frame["ceiling_tps_spread"] >= 0).all()
    ratio = frame["throughput_tps"] / frame["ceiling_tps"]
    assert frame["harness_efficiency"].to_numpy() == pytest.approx(ratio.to_numpy())
    assert frame["lock_wait_p999_ms"].notna().all()
    assert (frame["lock_wait_p999_ms"] >= frame["lock_wait_p99_ms"]).all()


def test_db_keep_keeps_the_last_iteration_database_with_the_ceiling_on(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, tasks=40, iterations=2, warmup=0, history_rows=10)
    cfg = dataclasses.replace(
        cfg,
        ceiling=dataclasses.replace(cfg.ceiling, enabled=True, tasks=40),
        db=dataclasses.replace(cfg.db, keep=True),
    )
    outcome = run_job(cfg, tmp_path)
    assert outcome.ok, outcome.reason
    assert outcome.metrics_path is not None
    frame = pd.read_parquet(outcome.metrics_path)
    assert (frame["ceiling_repeats"] == 2).all()
    kept = [p for p in tmp_path.iterdir() if p.suffix == ".db"]
    assert len(kept) == 1
    with sqlite3.connect(kept[0]) as conn:
        # the workers' database (history plus their drained backlog), not the ceiling's (removed)
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 10 + 40


@pytest.mark.parametrize(("spread", "said"), [(0.2, "more than the excess"), (0.02, "less than the excess")])
def test_above_the_ceiling_is_weighed_against_the_ceilings_own_spread(
    tmp_path: Path, spread: float, said: str
) -> None:
    def above(_: int) -> dict[str, Any]:
        return {
            "ceiling_tps": 1000.0,
            "harness_efficiency": 1.07,
            "ceiling_repeats": 5,
            "ceiling_tps_spread": spread,
        }

    for workers in (1, 2):
        write_job(
            tmp_path / f"w{workers}", config_columns(workers=workers), [1070.0, 1071.0, 1069.0], extra=above
        )
    aggregate([tmp_path])
    md = (tmp_path / "report.md").read_text()
    assert f"those runs spread up to {spread:.0%} (largest - smallest, of their median)" in md
    assert said in md and "read these as at the ceiling" in md
