"""Plans: checking, dry runs, adaptive references, caching, resume after a kill, --force."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from qbench.errors import PlanError
from qbench.plan.cli import main
from qbench.plan.runner import check_overrides
from qbench.plan.spec import load_plan

from .conftest import ROOT

QUICK = ROOT / "experiments" / "quick.yaml"
RESEARCH = ROOT / "experiments" / "research.yaml"
SMALL = "[tasks=60, iterations=2, warmup=0, history_rows=10, ceiling.enabled=false]"


def run_plan(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def write_plan(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("plan", [QUICK, RESEARCH], ids=["quick", "research"])
def test_shipped_plans_dry_run(tmp_path: Path, plan: Path) -> None:
    code, out = run_plan(str(plan), "--dry-run", "--outputs", str(tmp_path / "outputs"))
    assert code == 0
    spec = load_plan(plan)
    for name in spec.stages:
        assert f" {name}" in out
    assert "resolved when 'scaling' has finished" in out
    assert not (tmp_path / "outputs").exists(), "a dry run writes nothing"
    if plan == QUICK:
        assert "journal = wal, delete\n    jobs: 2" in out
        assert "workers = 1, 2, 4, 8\n    jobs: 4" in out
        assert "jobs: up to 6" in out
    else:
        assert "jobs: 8" in out and "jobs: 14" in out and "jobs: 18" in out


INVALID = {
    "top-key": ("stages: {a: {sweep: {grid: {workers: [1]}}}}\nextra: 1\n", "top level: unknown key 'extra'"),
    "stage-key": (
        "stages: {a: {sweep: {grid: {workers: [1]}}, nedds: [b]}}\n",
        "stage 'a': unknown key 'nedds'",
    ),
    "sweep-key": ("stages: {a: {sweep: {gird: {workers: [1]}}}}\n", "stage 'a': unknown key 'sweep.gird'"),
    "unknown-need": (
        "stages: {a: {needs: [nope], sweep: {grid: {workers: [1]}}}}\n",
        "stage 'a': needs unknown stage 'nope'",
    ),
    "cycle": (
        "stages: {a: {needs: [b], sweep: {grid: {workers: [1]}}}, b: {needs: [a], sweep: {grid: {workers: [2]}}}}\n",
        "cycle:",
    ),
    "not-upstream": (
        "stages: {a: {sweep: {grid: {workers: [1]}}}, b: {sweep: {overrides: ['workers=${a.best_workers}']}}}\n",
        "stage 'b': ${a.best_workers} refers to 'a', which is not upstream",
    ),
    "bad-field": (
        "stages: {a: {sweep: {grid: {workers: [1]}}}, b: {needs: [a], sweep: {grid: {workers: '${a.fastest}'}}}}\n",
        "stage 'b': ${a.fastest}: unknown field 'fastest'",
    ),
    "both": ("stages: {a: {sweep: {grid: {workers: [1]}}, analysis: report}}\n", "give exactly one of"),
    "analysis": (
        "stages: {a: {sweep: {}}, b: {needs: [a], analysis: magic}}\n",
        "analysis 'magic' is not allowed",
    ),
    "around-text": (
        "stages: {a: {sweep: {grid: {workers: [1]}}}, b: {needs: [a], sweep: {grid: {journal: '${around:a.journal_mode}'}}}}\n",
        "around needs a numeric field",
    ),
    "empty-grid": (
        "stages: {a: {sweep: {grid: {workers: []}}}}\n",
        "grid key 'workers' needs a non-empty list",
    ),
    "not-yaml": ("stages: [a, b\n", "not readable YAML"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_plans_are_refused_in_one_line(tmp_path: Path, case: str) -> None:
    text, expected = INVALID[case]
    with pytest.raises(PlanError) as info:
        load_plan(write_plan(tmp_path, text))
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_invalid_override_is_composed_against_the_schema(tmp_path: Path) -> None:
    plan = load_plan(
        write_plan(tmp_path, "stages: {fast: {sweep: {overrides: [workers=0], grid: {journal: [wal]}}}}\n")
    )
    with pytest.raises(PlanError, match=r"stage 'fast': workers=0 is not allowed"):
        check_overrides(plan)
    plan = load_plan(
        write_plan(tmp_path, "stages: {fast: {sweep: {grid: {journal: [wal, bogus]}}}}\n", "q.yaml")
    )
    with pytest.raises(PlanError, match=r"stage 'fast': journal='bogus' is not allowed"):
        check_overrides(plan)


def test_cli_refuses_a_bad_plan_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "stages: {a: {needs: [zzz], sweep: {grid: {workers: [1]}}}}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "qbench.plan", str(path), "--outputs", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "qbench.plan: error: plan p.yaml: stage 'a': needs unknown stage 'zzz'"
    ]
    assert not (tmp_path / "out").exists()


def job_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("metrics.parquet")
        if "/0" in str(p) or True
    }


@pytest.mark.slow
def test_quick_plan_end_to_end_with_adaptive_references_and_cache(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    code, out = run_plan(str(QUICK), "--outputs", str(outputs))
    assert code == 0, out
    root = outputs / "plans" / "quick"
    stage_dir = {
        name: next(p for p in (root / name).iterdir() if p.is_dir())
        for name in ("scaling", "contention", "report")
    }
    scaling_rec = pd.read_parquet(stage_dir["scaling"] / "recommendations.parquet")
    best = int(scaling_rec["best_workers"].iloc[0])
    knee = int(scaling_rec["knee_workers"].iloc[0])
    pool_jobs = list((root / "pools").rglob("metrics.parquet")) if (root / "pools").exists() else []
    if best > 1:  # the pools stage runs only where more than one worker is best
        pools = pd.concat(pd.read_parquet(p) for p in pool_jobs)
        assert set(pools["workers"]) == {best}
        assert set(pools["pool_size"]) == {1, 2}
    else:
        assert pool_jobs == [] and "scaling.best_workers is 1" in out
    contention = pd.concat(pd.read_parquet(p) for p in stage_dir["contention"].rglob("metrics.parquet"))
    grid = [1, 2, 4, 8]
    i = grid.index(knee)
    assert set(contention["workers"]) == set(grid[max(0, i - 1) : i + 2])
    assert (stage_dir["report"] / "report.md").exists()
    summary = pd.read_parquet(stage_dir["report"] / "summary.parquet")
    assert summary["journal_mode"].nunique() == 2  # the report spans every stage

    before = job_files(root)
    code, out = run_plan(str(QUICK), "--outputs", str(outputs))
    assert code == 0
    assert out.count("done, cached") == (5 if best > 1 else 4)
    assert job_files(root) == before


def tiny_plan(tmp_path: Path, sizes: str = "[1, 2]") -> Path:
    return write_plan(
        tmp_path,
        f"""name: tiny
stages:
  base:
    sweep:
      overrides: {SMALL}
      grid: {{workers: [1, 2]}}
  side:
    sweep:
      overrides: {SMALL}
      grid: {{claim.batch: [1, 4]}}
  pools:
    needs: [base]
    sweep:
      overrides: ["workers=${{base.best_workers}}", pool=fixed, tasks=60, iterations=2, warmup=0, ceiling.enabled=false]
      grid: {{pool.size: {sizes}}}
  report:
    needs: [base, pools]
    analysis: aggregate
""",
        "tiny.yaml",
    )


@pytest.mark.slow
def test_changed_stage_reruns_with_its_downstream_only_and_force(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    code, _ = run_plan(str(tiny_plan(tmp_path)), "--outputs", str(outputs))
    assert code == 0
    code, out = run_plan(str(tiny_plan(tmp_path, "[1, 3]")), "--outputs", str(outputs))
    assert code == 0
    lines = dict(
        line.split(": ", 1)
        for line in out.splitlines()
        if line.startswith("[plan tiny]") and "running" in line
    )
    ran = {key.split()[-1] for key in lines}
    assert ran == {"pools", "report"}
    assert "base: done, cached" in out and "side: done, cached" in out
    # the earlier pools results are kept, not overwritten
    assert len([p for p in (outputs / "plans" / "tiny" / "pools").iterdir() if p.is_dir()]) == 2

    code, out = run_plan(str(tiny_plan(tmp_path, "[1, 3]")), "--outputs", str(outputs), "--force", "base")
    assert code == 0
    ran = {line.split(": ")[0].split()[-1] for line in out.splitlines() if "running" in line}
    assert ran == {"base", "pools", "report"}
    assert any(
        p.name.endswith(tuple("0123456789")) and ".forced-" in p.name
        for p in (outputs / "plans" / "tiny" / "base").iterdir()
    )


@pytest.mark.slow
def test_failed_stage_stops_downstream_not_siblings(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        f"""stages:
  bad:
    sweep:
      overrides: [tasks=50, iterations=1, warmup=0, ceiling.enabled=false, iteration_timeout_s=0.000001]
      grid: {{workers: [1]}}
  good:
    sweep:
      overrides: {SMALL}
      grid: {{workers: [1]}}
  after:
    needs: [bad]
    analysis: aggregate
""",
    )
    code, out = run_plan(str(path), "--outputs", str(tmp_path / "outputs"))
    assert code == 1
    assert "bad: FAILED" in out and "good: done" in out
    assert "after: skipped, blocked: upstream stage 'bad'" in out
    code, status = run_plan(str(path), "--outputs", str(tmp_path / "outputs"), "--status")
    assert "bad: failed:" in status and "good: done (" in status and "after: pending" in status


@pytest.mark.slow
def test_killed_plan_resumes_without_repeating_finished_jobs(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """name: slow
stages:
  grid:
    sweep:
      overrides: [tasks=200, iterations=3, warmup=0, history_rows=10, ceiling.enabled=false, service.kind=sleep, service.ms=1]
      grid: {claim.batch: [1, 2, 3, 4, 5, 6]}
""",
        "slow.yaml",
    )
    outputs = tmp_path / "outputs"
    env = dict(os.environ, PYTHONPATH=str(ROOT), QBENCH_NO_PROGRESS="1")
    cmd = [sys.executable, "-m", "qbench.plan", str(path), "--outputs", str(outputs)]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    root = outputs / "plans" / "slow" / "grid"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(root.glob("*/*/job_status.json"))) < 2:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {
        p.parent.name: p.parent.joinpath("metrics.parquet").read_bytes()
        for p in root.glob("*/*/job_status.json")
    }
    assert 2 <= len(finished) < 6, "killed mid-sweep"
    code, status = run_plan(str(path), "--outputs", str(outputs), "--status")
    assert "grid: interrupted" in status

    code, out = run_plan(str(path), "--outputs", str(outputs))
    assert code == 0, out
    done = list(root.glob("*/*/metrics.parquet"))
    assert len(done) == 6
    for name, content in finished.items():
        assert next(root.glob(f"*/{name}/metrics.parquet")).read_bytes() == content, (
            "a finished job ran again"
        )
    log = next(root.glob("stage.log")).read_text()
    assert log.count("already done with this config, kept") == len(finished)


@pytest.mark.slow
def test_unresolvable_reference_fails_its_stage_not_its_siblings(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        f"""stages:
  base:
    sweep:
      overrides: {SMALL}
      grid: {{workers: [1]}}
  onset:
    needs: [base]
    sweep:
      overrides: ["workers=${{base.busy_onset_workers}}", tasks=20, iterations=1, warmup=0]
  sibling:
    needs: [base]
    sweep:
      overrides: {SMALL}
      grid: {{claim.batch: [2]}}
""",
    )
    code, out = run_plan(str(path), "--outputs", str(tmp_path / "outputs"))
    assert code == 1
    assert "onset: FAILED:" in out and "found no value for busy_onset_workers" in out
    assert "sibling: done" in out
