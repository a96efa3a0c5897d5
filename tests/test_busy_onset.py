"""Busy answers: the onset per busy timeout ("never, up to N workers" included) and the busy
timeout recommended from the measured lock waits, through qbench's writer, loader and ``summarize()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbench.analysis.busy import FLOOR_MS, MARGIN, step_up
from qbench.analysis.pipeline import aggregate
from qbench.analysis.recommend import recommendations
from qbench.analysis.scaling import scaling_table
from qbench.analysis.summary import key_columns, summarize
from qbench.analysis.thresholds import Thresholds
from qbench.results.columns import META_SCHEMA_VERSION
from qbench.results.load import load_results
from qbench.results.readers import read_table

from .synthetic import config_columns, write_job

WORKERS = (1, 2, 4, 8, 16)
# busy rate per busy timeout and worker count: at 0 ms errors from 2 workers, at 100 ms from 8,
# at 5000 ms never (up to 16)
ONSET = {0: 2, 100: 8, 5000: None}


def _busy_rate(timeout: int, workers: int) -> float:
    first = ONSET[timeout]
    return 0.05 if first is not None and workers >= first else 0.0


def _lock_p999(timeout: int, workers: int, iteration: int) -> float:
    # waits grow with workers; a short timeout cuts them off at itself
    return min(float(timeout) if timeout else 0.05, 0.4 * workers + 0.1 * iteration)


def _sweep(root: Path, *, lock_waits: bool = True, busy_at_longest: bool = False) -> pd.DataFrame:
    for timeout in ONSET:
        for workers in WORKERS:

            def extra(i: int, timeout: int = timeout, workers: int = workers) -> dict[str, Any]:
                rate = _busy_rate(timeout, workers)
                if busy_at_longest and timeout == 5000 and workers >= 4:
                    rate = 0.01
                return {
                    "busy_rate": rate,
                    "busy_total": int(rate * 2000),
                    "lock_wait_p999_ms": _lock_p999(timeout, workers, i) if lock_waits else None,
                }

            # throughput rises to 4 workers and stays flat: 4 is the recommended count
            tps = 1000.0 * min(workers, 4) * {0: 0.7, 100: 0.85, 5000: 1.0}[timeout]
            write_job(
                root / f"t{timeout}w{workers}",
                config_columns(workers=workers, **{"busy.timeout_ms": timeout}),
                [tps * (1 + d) for d in (-0.01, 0.0, 0.01, 0.005, -0.005)],
                extra=extra,
            )
    return load_results([root]).frame


def _recommend(frame: pd.DataFrame) -> dict[str, Any]:
    t = Thresholds()
    keys = key_columns(frame)
    summary = summarize(frame, t)
    recs = recommendations(frame, summary, scaling_table(frame, summary, keys), keys, t)
    [row] = recs.to_dict("records")
    return dict(row)


@pytest.mark.parametrize(
    ("ms", "step"),
    [
        (0.0, FLOOR_MS),
        (3.2, FLOOR_MS),
        (10.0, 10),
        (10.5, 20),
        (21.0, 50),
        (50.0, 50),
        (51.0, 100),
        (2400.0, 5000),
    ],
)
def test_busy_timeout_rounds_up_to_a_1_2_5_step_and_the_floor(ms: float, step: int) -> None:
    assert step_up(ms) == step


def test_onset_per_busy_timeout_and_never_up_to_the_largest_count(tmp_path: Path) -> None:
    rec = _recommend(_sweep(tmp_path))
    assert rec["busy_onset_by_timeout"] == (
        "busy.timeout_ms=0: from 2 workers; busy.timeout_ms=100: from 8 workers; "
        "busy.timeout_ms=5000: never, up to 16 workers"
    )
    # the best config runs at busy.timeout_ms=5000, where busy errors never began
    assert rec["busy_timeout_ms"] == 5000
    assert pd.isna(rec["busy_onset_workers"]) and rec["busy_onset_tried_workers"] == 16


def test_busy_timeout_comes_from_the_lock_wait_p999_not_the_default(tmp_path: Path) -> None:
    rec = _recommend(_sweep(tmp_path))
    workers = int(rec["recommended_workers"])
    # the longest timeout measured at the recommended count: its worst iteration's p99.9
    worst = max(_lock_p999(5000, workers, i) for i in range(1, 6))
    assert rec["lock_wait_p999_ms"] == pytest.approx(worst)
    assert rec["busy_timeout_recommended_ms"] == step_up(MARGIN * worst) != 5000
    evidence = rec["busy_timeout_evidence"]
    assert f"at {workers} workers (busy.policy=native, busy.timeout_ms=5000)" in evidence
    assert "over 5 iterations" in evidence and "lower bound" not in evidence


def test_busy_errors_at_the_longest_timeout_make_it_a_lower_bound(tmp_path: Path) -> None:
    rec = _recommend(_sweep(tmp_path, busy_at_longest=True))
    assert "a lower bound" in rec["busy_timeout_evidence"]


def test_no_lock_waits_measured_gives_no_busy_timeout(tmp_path: Path) -> None:
    rec = _recommend(_sweep(tmp_path, lock_waits=False))
    assert pd.isna(rec["busy_timeout_recommended_ms"]) and pd.isna(rec["lock_wait_p999_ms"])
    assert "no lock-wait p99.9 was measured" in rec["busy_timeout_evidence"]


def test_report_states_never_up_to_and_the_lock_wait_evidence(tmp_path: Path) -> None:
    _sweep(tmp_path)
    aggregate([tmp_path])
    md = (tmp_path / "report.md").read_text()
    assert "never up to 16" in md  # the recommendations table
    assert "busy errors never above 0.1% up to 16 workers, the largest count tried" in md
    assert "busy.timeout_ms=0: from 2 workers" in md
    assert "busy timeout from the measured lock waits: lock-wait p99.9 up to" in md


def test_a_version_3_file_reads_with_one_ceiling_run_and_no_p999(tmp_path: Path) -> None:
    path = write_job(tmp_path, config_columns(workers=2), [1000.0, 1010.0])
    table = pq.read_table(path)
    table = table.drop_columns(["lock_wait_p999_ms", "ceiling_repeats", "ceiling_tps_spread"])
    meta = dict(table.schema.metadata or {})
    meta[META_SCHEMA_VERSION.encode()] = b"3"
    path.unlink()
    pq.write_table(table.replace_schema_metadata(meta), path)
    upgraded, _ = read_table(path)
    assert upgraded.column("ceiling_repeats").to_pylist() == [1, 1, 1]
    assert upgraded.column("lock_wait_p999_ms").null_count == 3
    assert upgraded.schema.field("ceiling_tps_spread").type == pa.float64()
    assert load_results([tmp_path]).skipped == []
