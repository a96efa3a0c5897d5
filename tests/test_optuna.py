"""``hydra/sweeper=optuna`` with qbench's objective: the score each job returns, the search space
checked by preflight like a grid, and a tiny optuna sweep aggregated like a grid."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import yaml

from qbench.app.objective import NEVER_WINS, objective, slo_of
from qbench.app.preflight import preflight
from qbench.app.schema import register_configs
from qbench.errors import QbenchError
from tests.conftest import QbenchRunner

needs_optuna = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason="hydra-optuna-sweeper is not installed (pip install 'qbench[optuna]')",
)
TINY = ["tasks=2000", "iterations=2", "warmup=0", "history_rows=0", "ceiling.enabled=false"]


def rows(tps: list[float], p99: list[float | None], warmup: float = 1e9) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [{"phase": "warmup", "throughput_tps": warmup, "e2e_latency_p99_ms": 0.1}]
    out += [
        {"phase": "measure", "throughput_tps": t, "e2e_latency_p99_ms": p}
        for t, p in zip(tps, p99, strict=True)
    ]
    return out


def test_the_objective_is_the_median_measured_throughput() -> None:
    assert objective(rows([100.0, 300.0, 200.0], [5.0, 5.0, 5.0]), ok=True, slo_p99_ms=0.0) == 200.0


def test_under_an_slo_a_job_over_it_never_beats_one_within_it() -> None:
    within = objective(rows([100.0, 100.0, 100.0], [9.0, 10.0, 11.0]), ok=True, slo_p99_ms=10.0)
    over = objective(rows([900.0, 900.0, 900.0], [19.0, 20.0, 21.0]), ok=True, slo_p99_ms=10.0)
    further = objective(rows([900.0, 900.0, 900.0], [39.0, 40.0, 41.0]), ok=True, slo_p99_ms=10.0)
    assert within == 100.0
    assert over == -2.0  # -(p99 / SLO): below -1, and nearer the SLO is better
    assert further < over < -1.0 < 0.0 < within


def test_a_failed_job_can_never_win() -> None:
    assert objective(rows([500.0, 500.0], [1.0, 1.0]), ok=False, slo_p99_ms=0.0) == NEVER_WINS == -math.inf
    assert objective(rows([], []), ok=True, slo_p99_ms=0.0) == NEVER_WINS
    # an SLO with no p99 measured cannot be met
    assert objective(rows([500.0], [None]), ok=True, slo_p99_ms=10.0) == NEVER_WINS
    assert slo_of(None) == slo_of(0) == slo_of(True) == 0.0 and slo_of(2.5) == 2.5


@pytest.fixture(autouse=True)
def _schema() -> None:
    register_configs()


def refusal(args: list[str]) -> str:
    with pytest.raises(QbenchError) as info:
        preflight(["-m", "hydra/sweeper=optuna", *args])
    message = str(info.value)
    assert "\n" not in message and message.strip()
    return message


@needs_optuna
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["workers=range(0,4)"], "workers=0 is not allowed: expected an integer in [1, 10000]"),
        (["+hydra.sweeper.params.workers='range(0,3)'"], "workers=0 is not allowed"),
        (["workers=range(5,1)"], "workers='range(5,1)' is not allowed: an empty range"),
        (
            ["journal=choice(wal,bogus)"],
            "journal='bogus' is not allowed: allowed: delete, persist, truncate, wal",
        ),
        (
            ["workers=interval(1,4)"],
            "workers='interval(1,4)' is not allowed: interval() draws floats and workers takes integers: "
            "write int(interval(1,4))",
        ),
        (["workers=int(interval(0,4))"], "workers=0 is not allowed"),
        (["pool.ratio=interval(0.5,2.0)"], "pool.ratio=1.25 is not allowed: expected a number > 0 and <= 1"),
        (
            ["workers=range(1,4)", "hydra.sweeper.direction=minimize"],
            "hydra.sweeper.direction='minimize' is not allowed: qbench's objective is one throughput "
            "figure to maximise: expected maximize",
        ),
        (["workers=range(1,4)", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is not allowed"),
        (["workers=range(1,4)", "hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs=0 is not allowed"),
        (
            ["hydra.sweeper.search_space.workers=1"],
            "hydra.sweeper.search_space.workers='1' is not allowed: give the search space as sweep values",
        ),
    ],
)
def test_the_search_space_is_checked_like_a_sweep(args: list[str], expected: str) -> None:
    assert expected in refusal(args)


@needs_optuna
def test_a_search_space_override_is_not_blamed_for_another_error() -> None:
    line = refusal(["hydra.sweeper.search_space=null", "nosuchkey=1"])
    assert line.startswith("nosuchkey='1' is not allowed: unknown key")


@needs_optuna
def test_a_valid_search_space_counts_n_trials(tmp_path: Path) -> None:
    args = ["workers=int(interval(1,16))", "journal=choice(wal,delete)", "hydra.sweeper.n_trials=7"]
    assert preflight(["-m", "hydra/sweeper=optuna", *args, f"hydra.sweep.dir={tmp_path / 's'}"]) == 7
    assert not (tmp_path / "s").exists()


@needs_optuna
@pytest.mark.slow
def test_a_tiny_optuna_sweep_maximises_qbench_objective_and_is_aggregated(
    tmp_path: Path, qbench_cli: QbenchRunner
) -> None:
    """Four trials over a grid of two values each: the jobs with an impossible time limit fail
    (score -inf) and never win; the best is the best median throughput of the others."""
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=1",
        "workers=choice(1,2)",
        "iteration_timeout_s=choice(0.001,600)",
        *TINY,
        f"hydra.sweep.dir={sweep}",
    ]
    done = qbench_cli(args, tmp_path)
    assert done.returncode == 1, done.stderr  # the jobs that timed out failed, and say so
    assert "2 job(s) failed" in done.stderr
    statuses = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/job_status.json"))]
    assert len(statuses) == 4
    medians = [s["throughput_tps_median"] for s in statuses if s["status"] == "ok"]
    assert len(medians) == 2
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"]["iteration_timeout_s"] == 600
    assert best["best_value"] == pytest.approx(max(medians))
    assert (sweep / "recommendations.parquet").is_file() and (sweep / "report.md").is_file()


@needs_optuna
@pytest.mark.slow
def test_an_slo_no_job_meets_scores_below_zero(tmp_path: Path, qbench_cli: QbenchRunner) -> None:
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=1",
        "workers=choice(1,2)",
        "hydra.callbacks.aggregate.slo_p99_ms=0.000001",
        *TINY,
        f"hydra.sweep.dir={sweep}",
    ]
    done = qbench_cli(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"] < -1.0
