"""``python -m qbench.plan FILE [--dry-run | --status] [--force STAGE] [--outputs DIR]``.

The plan is checked first (the file, ``--force`` and every sweep stage's
overrides against the schema). A :class:`~qbench.errors.QbenchError` is one
line on stderr and exit 2; otherwise the exit status is the run's: 1 when a
stage failed or was blocked (a result, not an error), 0 when all completed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from qbench.errors import PlanError, QbenchError
from qbench.plan.runner import Runner, check_overrides
from qbench.plan.spec import load_plan


def plan_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qbench.plan", description="Run a qbench plan (a DAG of stages)."
    )
    parser.add_argument("plan", type=Path, help="a plan file, e.g. experiments/research.yaml")
    parser.add_argument("--dry-run", action="store_true", help="print the DAG and job counts; run nothing")
    parser.add_argument("--status", action="store_true", help="show each stage's state; run nothing")
    parser.add_argument(
        "--force", action="append", default=[], metavar="STAGE", help="re-run STAGE and its downstream"
    )
    parser.add_argument(
        "--outputs", type=Path, default=Path("outputs"), help="outputs root (default: outputs)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = plan_parser().parse_args(argv)
    try:
        plan = load_plan(args.plan)
        for name in args.force:
            if name not in plan.stages:
                raise PlanError(f"--force {name}: no such stage (stages: {', '.join(plan.order)})")
        check_overrides(plan)
        runner = Runner(plan, args.outputs)
        if args.status:
            runner.status()
            return 0
        return runner.run(force=set(args.force), dry_run=args.dry_run)
    except QbenchError as exc:
        print(f"qbench.plan: error: {exc}", file=sys.stderr)
        return 2
