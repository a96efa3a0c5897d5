"""The search stage: the noise-aware golden-section search on synthetic curves, plan files that hold
a search (bad input refused in one line), and a tiny search stage run end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qbench.analysis.knee import FloatArray, significantly_slower
from qbench.analysis.search import SearchResult, SearchStatus, golden_search, most_jobs
from qbench.errors import PlanError
from qbench.plan.cli import main as plan_main
from qbench.plan.runner import Runner
from qbench.plan.search import Search, read_search_best, run_search
from qbench.plan.spec import find_references, load_plan

WORKERS = list(range(1, 21))


def curve(shape: Callable[[int], float], noise: float, seed: int) -> Callable[[int], FloatArray]:
    """``measure`` over WORKERS: 6 iterations around ``shape(workers)`` with relative noise."""
    rng = np.random.default_rng(seed)
    return lambda i: shape(WORKERS[i]) * (1.0 + noise * rng.standard_normal(6))


def search(
    shape: Callable[[int], float], noise: float = 0.01, seed: int = 0, **kw: int | None
) -> tuple[int, SearchResult]:
    result = golden_search(len(WORKERS), curve(shape, noise, seed), alpha=0.05, **kw)
    return WORKERS[result.best], result


@pytest.mark.parametrize("peak", [1, 5, 8, 13, 20])
def test_a_peaked_curve_is_found_and_separated_in_few_jobs(peak: int) -> None:
    answer, result = search(lambda w: 1000.0 - 40.0 * abs(w - peak))
    assert answer == peak
    assert result.status is SearchStatus.SEPARATED
    assert result.jobs <= most_jobs(len(WORKERS)) <= 0.4 * len(WORKERS)


@pytest.mark.parametrize("seed", range(8))
def test_a_flat_noisy_curve_is_never_separated(seed: int) -> None:
    _, result = search(lambda w: 1000.0, noise=0.05, seed=seed)
    assert result.status is not SearchStatus.SEPARATED
    assert result.jobs <= most_jobs(len(WORKERS))


def test_a_rising_curve_reaches_the_end_of_the_range() -> None:
    answer, _ = search(lambda w: 100.0 * w)
    assert answer == 20


def test_noise_does_not_steer_it_where_the_medians_alone_would() -> None:
    """Two close candidates that raw medians would order are a tie to the rank test: the smaller side."""
    measured: list[int] = []

    def measure(i: int) -> FloatArray:
        measured.append(WORKERS[i])
        # every value 1000 +- 1%, medians ordered by workers
        return np.array([990.0, 1000.0, 1010.0]) + 0.001 * WORKERS[i]

    result = golden_search(len(WORKERS), measure, alpha=0.05)
    assert result.status is not SearchStatus.SEPARATED
    assert measured[2] < measured[0], "a tie keeps the side of fewer workers"


def test_each_candidate_runs_once_and_within_the_bound() -> None:
    for n in range(1, 40):
        rng = np.random.default_rng(n)
        seen: list[int] = []

        def measure(i: int, rng: np.random.Generator = rng, seen: list[int] = seen) -> FloatArray:
            seen.append(i)
            return rng.uniform(900, 1100, size=5)

        result = golden_search(n, measure, alpha=0.05)
        assert len(seen) == len(set(seen)) == result.jobs <= most_jobs(n)
        assert all(0 <= i < n for i in seen)


def test_a_failed_candidate_never_wins() -> None:
    def measure(i: int) -> FloatArray:
        return np.empty(0) if WORKERS[i] == 8 else np.full(5, 1000.0 - 10.0 * abs(WORKERS[i] - 8))

    result = golden_search(len(WORKERS), measure, alpha=0.05)
    assert WORKERS[result.best] != 8
    assert significantly_slower(np.empty(0), np.ones(3), alpha=0.05)
    assert not significantly_slower(np.ones(3), np.empty(0), alpha=0.05)
    assert not significantly_slower(np.empty(0), np.empty(0), alpha=0.05)


def test_max_jobs_stops_the_search() -> None:
    _, result = search(lambda w: 1000.0 - 40.0 * abs(w - 13), max_jobs=3)
    assert result.jobs == 3
    assert result.status is SearchStatus.BUDGET


# ---------------------------------------------------------------- plan files

TINY = "journal=wal, tasks=40, iterations=2, warmup=0, history_rows=0, ceiling.enabled=false"
AFTER = (
    "  after:\n    needs: [find]\n"
    "    sweep: {overrides: ['workers=${find.best_workers}'], grid: {pool.size: [1]}}\n"
)


def write_plan(tmp_path: Path, search: str, extra: str = "") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"stages:\n  find:\n    search: {search}\n{extra}", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        (
            "{key: workers, range: [5, 1]}",
            "search.range [5, 1] is empty: expected [low, high] with low <= high",
        ),
        ("{key: journal, range: [1, 4]}", "search.key 'journal' is not numeric (allowed: workers,"),
        ("{key: claim.tx, range: [1, 4]}", "search.key 'claim.tx' is not numeric"),
        ("{key: bogus, range: [1, 4]}", "search.key 'bogus' is not a qbench key"),
        ("{key: workers, range: [1]}", "search.range [1] is not allowed: expected [low, high], two numbers"),
        ("{key: workers, range: [1, x]}", "search.range [1, 'x'] is not allowed"),
        ("{key: workers, range: [1.5, 4]}", "workers is an integer, expected integer ends"),
        ("{key: workers, range: [1, 4], step: 0}", "search.step 0 is not allowed"),
        ("{key: workers, range: [1, 4], max_jobs: 0}", "search.max_jobs 0 is not allowed"),
        ("{key: workers, range: [1, 4], grid: {}}", "unknown key 'search.grid'"),
        (
            "{key: workers, range: [1, 4], overrides: [workers=2]}",
            "workers is set in both overrides and grid",
        ),
        ("{key: workers, range: [1, 4], overrides: [db.dir=/tmp]}", "db.dir is not allowed in a plan"),
    ],
)
def test_a_bad_search_is_one_line_naming_the_key(tmp_path: Path, search: str, expected: str) -> None:
    with pytest.raises(PlanError) as exc:
        load_plan(write_plan(tmp_path, search))
    assert expected in str(exc.value)
    assert str(exc.value).startswith("plan p.yaml: stage 'find': ")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "search",
    ["{key: workers, range: [4, 1]}", "{key: journal, range: [1, 4]}", "{key: workers, range: [0, 4]}"],
)
def test_the_plan_command_refuses_a_bad_search_with_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], search: str
) -> None:
    outputs = tmp_path / "out"
    assert plan_main([str(write_plan(tmp_path, search)), "--outputs", str(outputs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qbench.plan: error: plan p.yaml: stage 'find': ")
    assert len(err.splitlines()) == 1
    assert not outputs.exists()


def test_a_search_and_a_sweep_in_one_stage_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("stages:\n  s: {search: {key: workers, range: [1, 2]}, sweep: {grid: {workers: [1]}}}\n")
    with pytest.raises(PlanError, match="give exactly one of `sweep:`, `search:` and `analysis:`"):
        load_plan(path)


def test_the_dry_run_shows_the_search_and_its_job_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_plan(
        tmp_path,
        f"{{overrides: [{TINY}], key: workers, range: [1, 20]}}",
        AFTER,
    )
    assert plan_main([str(path), "--outputs", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"search workers over 1..20 (20 candidates)\n    jobs: up to {most_jobs(20)}" in out
    assert "workers = ${find.best_workers}   (resolved when 'find' has finished)" in out
    assert "\n    pool.size = 1\n" in out


@pytest.mark.slow
def test_a_search_stage_runs_end_to_end_and_feeds_a_later_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "out"
    path = write_plan(tmp_path, f"{{overrides: [{TINY}], key: workers, range: [1, 2]}}")
    assert plan_main([str(path), "--outputs", str(outputs)]) == 0
    run_dir = Path(json.loads((outputs / "plans" / "p" / "find" / "stage.json").read_text())["run_dir"])
    record = json.loads((run_dir / "search.json").read_text())
    assert record["key"] == "workers" and record["range"] == [1, 2]
    assert 1 <= record["jobs"] <= most_jobs(2)
    medians = {e["value"]: e["median_tps"] for e in record["evaluated"]}
    assert record["best"] == max(medians, key=lambda v: medians[v])
    # aggregated like a sweep: the recommendations a later stage's reference reads
    recs = pd.read_parquet(run_dir / "recommendations.parquet")
    assert int(recs["best_workers"].iloc[0]) == record["best"]
    jobs = sorted(run_dir.glob("workers-*/0/metrics.parquet"))
    assert len(jobs) == record["jobs"]
    written = {p: p.stat().st_mtime_ns for p in jobs}

    # a later stage resolves ${find.best_workers}; the search itself is cached
    path.write_text(path.read_text() + AFTER)
    capsys.readouterr()
    assert plan_main([str(path), "--outputs", str(outputs), "--dry-run"]) == 0
    assert f"    workers={record['best']}\n" in capsys.readouterr().out
    # ${find.search_best}: the search's own answer, whatever key it searched
    path.write_text(path.read_text().replace("${find.best_workers}", "${find.search_best}"))
    assert plan_main([str(path), "--outputs", str(outputs), "--dry-run"]) == 0
    assert f"    workers={record['best']}\n" in capsys.readouterr().out

    # resumable: with its record gone, a re-run replays the search from the jobs on disk
    (outputs / "plans" / "p" / "find" / "stage.json").unlink()
    (run_dir / "search.json").unlink()
    path.write_text(f"stages:\n  find:\n    search: {{overrides: [{TINY}], key: workers, range: [1, 2]}}\n")
    assert plan_main([str(path), "--outputs", str(outputs)]) == 0
    assert json.loads((run_dir / "search.json").read_text()) == record
    assert {p: p.stat().st_mtime_ns for p in jobs} == written, "finished jobs are kept, not run again"


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("${base.search_best}", "stage 'base' is no search"),
        ("${around:find.search_best}", "search_best is a search stage's one answer, taken as it is"),
        ("${find.search_best@journal_mode=wal}", "no @column=value, around or beyond"),
    ],
)
def test_search_best_is_taken_only_from_a_search_as_is(tmp_path: Path, reference: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "stages:\n  base: {sweep: {grid: {workers: [1, 2]}}}\n"
        f"  find: {{needs: [base], search: {{overrides: [{TINY}], key: workers, range: [1, 4]}}}}\n"
        f"  after: {{needs: [find], sweep: {{overrides: ['workers={reference}']}}}}\n",
        encoding="utf-8",
    )
    with pytest.raises(PlanError) as exc:
        load_plan(path)
    assert expected in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "stage 'find' left no search record"),
        ("{not json", "is not readable"),
        ('{"best": null}', "recorded no numeric answer (None)"),
        ('{"best": 2.5e3}', 2500.0),
    ],
)
def test_search_best_reads_the_search_record(tmp_path: Path, content: str | None, expected: object) -> None:
    ref = find_references("${find.search_best}")[0]
    record = tmp_path / "search.json"
    if content is not None:
        record.write_text(content, encoding="utf-8")
    if isinstance(expected, float):
        assert read_search_best(record, ref) == expected
        return
    with pytest.raises(PlanError) as exc:
        read_search_best(record, ref)
    assert str(expected) in str(exc.value)


def test_a_later_stage_must_fit_every_answer_the_search_can_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    search = f"{{overrides: [{TINY}, service.kind=sleep], key: service.ms, range: [1, 3], step: 0.5}}"
    taker = "  after:\n    needs: [find]\n    sweep: {overrides: ['workers=${find.search_best}']}\n"
    outputs = tmp_path / "out"
    assert plan_main([str(write_plan(tmp_path, search, taker)), "--outputs", str(outputs), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    expected = "stage 'after': workers=${find.search_best}: search 'find' may answer 1.5, which can never fit"
    assert expected in err
    assert len(err.splitlines()) == 1 and not outputs.exists()
    # the same answers taken by a key they fit
    fits = taker.replace("workers=", "service.ms=")
    assert plan_main([str(write_plan(tmp_path, search, fits)), "--outputs", str(outputs), "--dry-run"]) == 0


def test_search_best_is_read_where_a_search_with_its_own_sweep_dir_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "stages:\n  find:\n    search: {overrides: ['journal=wal', 'hydra.sweep.dir=sub'],"
        " key: workers, range: [1, 4]}\n"
        "  after:\n    needs: [find]\n"
        "    sweep: {overrides: ['workers=${find.search_best}'], grid: {pool.size: [1]}}\n",
        encoding="utf-8",
    )
    plan = load_plan(path)
    runner = Runner(plan, tmp_path / "out")
    find = plan.stages["find"]
    runner.resolved["find"] = runner.resolve(find)
    runner.keys["find"] = runner.key(find, runner.resolved["find"])
    assert runner.sweep_dir("find") != runner.run_dir("find")
    # what the search writes (into its sweep dir) and the record of a finished stage
    runner.sweep_dir("find").mkdir(parents=True)
    (runner.sweep_dir("find") / "search.json").write_text(json.dumps({"best": 3}), encoding="utf-8")
    runner._write_record(
        "find", key=runner.keys["find"], status="done", run_dir=str(runner.sweep_dir("find"))
    )
    assert runner.resolve(plan.stages["after"]).overrides[0] == "workers=3"


def test_the_search_example_covers_research_yaml_worker_range() -> None:
    root = Path(__file__).resolve().parents[1]
    research = load_plan(root / "experiments" / "research.yaml").stages["scaling"].grid["workers"]
    found = load_plan(root / "experiments" / "search.yaml").stages["workers"].search
    assert found is not None and found.key == "workers"
    assert (found.low, found.high) == (min(research), max(research))


def test_a_search_whose_jobs_all_fail_fails_in_one_line(tmp_path: Path) -> None:
    ran: list[str] = []

    def refused(value: str, sweep_dir: Path) -> str:
        ran.append(value)
        return "sweep exited with status 2: qbench: error: refused"

    reason = run_search(Search("workers", 1, 3, 1), tmp_path, refused, alpha=0.05)
    assert reason is not None and reason.startswith("search: every job failed (workers=")
    assert reason.endswith(": sweep exited with status 2: qbench: error: refused)")
    assert sorted(ran) == ["1", "2", "3"]
    assert not (tmp_path / "search.json").exists()
