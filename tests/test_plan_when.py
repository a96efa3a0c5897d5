"""``when:``: a stage runs only if an upstream recommendation passes; otherwise it is skipped
(not failed), what takes a value from it is skipped too, and the plan's report says why."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from qbench.errors import PlanError
from qbench.plan.cli import main
from qbench.plan.spec import load_plan
from qbench.plan.when import parse_condition

from .conftest import ROOT

SMALL = "[tasks=40, iterations=2, warmup=0, history_rows=10, ceiling.enabled=false]"


def run_plan(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def test_a_condition_compares_one_reference_with_a_number() -> None:
    condition = parse_condition("${scaling.best_workers@journal_mode=wal} > 1")
    assert not isinstance(condition, str)
    assert condition.ref.stage == "scaling" and condition.ref.where == ("journal_mode", "wal")
    assert condition.holds(2) and not condition.holds(1)
    assert condition.why_not(1.0) == (
        "scaling.best_workers is 1; the stage runs only when ${scaling.best_workers@journal_mode=wal} > 1"
    )


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("'${a.best_workers} >> 1'", "is not a condition"),
        ("'${a.best_workers}'", "is not a condition"),
        ("3", "`when` must be a string"),
        ("'${a.journal_mode} == 1'", "is not a numeric field"),
        ("'${beyond:a.best_workers} > 1'", "stands for a list"),
        ("'${zz.best_workers} > 1'", "refers to 'zz', which is not upstream"),
    ],
)
def test_a_bad_condition_is_refused_in_one_line(tmp_path: Path, when: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"stages:\n  a: {{sweep: {{grid: {{workers: [1]}}}}}}\n"
        f"  b: {{needs: [a], when: {when}, sweep: {{grid: {{workers: [2]}}}}}}\n"
    )
    with pytest.raises(PlanError, match="stage 'b'") as info:
        load_plan(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_shipped_plans_sweep_pools_only_above_one_worker() -> None:
    for name in ("quick", "research"):
        pools = load_plan(ROOT / "experiments" / f"{name}.yaml").stages["pools"]
        assert pools.when is not None and pools.when.ref.field == "best_workers"
        assert pools.when.op == ">" and pools.when.number == 1


def test_a_stage_whose_condition_fails_is_skipped_and_the_report_says_why(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"""name: tiny
stages:
  scaling:
    sweep:
      overrides: {SMALL}
      grid: {{workers: [1]}}
  pools:
    needs: [scaling]
    when: "${{scaling.best_workers}} > 1"
    sweep:
      overrides: ["workers=${{scaling.best_workers}}", pool=fixed, tasks=40, iterations=2, warmup=0,
                  ceiling.enabled=false]
      grid: {{pool.size: [1, 2]}}
  after:
    needs: [pools]
    sweep:
      overrides: ["workers=${{pools.best_workers}}", tasks=40, iterations=2, warmup=0, ceiling.enabled=false]
  report:
    needs: [scaling, pools]
    analysis: report
"""
    )
    outputs = tmp_path / "out"
    code, out = run_plan(str(path), "--outputs", str(outputs))
    assert code == 0, out
    why = "scaling.best_workers is 1; the stage runs only when ${scaling.best_workers} > 1"
    assert f"stage 2/4 pools: skipped, {why}" in out
    assert "after: skipped, it takes a value from stage 'pools', which was skipped" in out
    assert not list((outputs / "plans" / "tiny" / "pools").glob("*/*/metrics.parquet"))
    [report] = (outputs / "plans" / "tiny" / "report").glob("*/report.md")
    assert f"Stage 'pools' was skipped: {why}." in report.read_text()
    status = io.StringIO()
    with redirect_stdout(status):
        main([str(path), "--outputs", str(outputs), "--status"])
    assert f"pools: skipped: {why}" in status.getvalue()
    # a re-run decides the same way and reuses the report
    code, out = run_plan(str(path), "--outputs", str(outputs))
    assert code == 0 and f"pools: skipped, {why}" in out and "report: done, cached" in out
